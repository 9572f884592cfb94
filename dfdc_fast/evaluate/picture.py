"""``evaluation.png``: the ROC curve (with its EER point) and the calibration of the scores."""
from __future__ import annotations

import os

from dfdc_fast.files import atomic_write, verify_image


def draw(report: dict, path: str) -> str:
    """Two panels drawn with matplotlib's Agg canvas (no display); written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    roc, cal = fig.subplots(1, 2)
    if "roc" in report:
        roc.plot(report["roc"]["fpr"], report["roc"]["tpr"], color="tab:blue",
                 label=f"AUC {report['auc']:.3f}, AP {report['ap']:.3f}")
        eer = report["eer"]
        roc.plot([eer], [1 - eer], "o", color="tab:red", label=f"EER {eer:.3f}")
        roc.legend(loc="lower right")
    else:
        roc.text(0.5, 0.5, "one class only: no ROC", ha="center", va="center")
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set(xlabel="false positive rate (REAL called FAKE)", ylabel="true positive rate (FAKE found)",
            title=f"ROC, {report['videos']} videos ({report['fake']} fake, {report['real']} real)",
            xlim=(0, 1), ylim=(0, 1.01))
    bins = report["calibration"]
    cal.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    cal.plot([b["mean_score"] for b in bins], [b["fraction_fake"] for b in bins], "o-", color="tab:green",
             label="fraction fake per score bin")
    counts = cal.twinx()
    counts.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["videos"] for b in bins], width=0.09, alpha=0.25,
               color="tab:grey")
    counts.set_ylabel("videos per bin")
    balanced = report["balanced_log_loss"]
    cal.set(xlabel="submitted score", ylabel="fraction FAKE", xlim=(0, 1), ylim=(0, 1),
            title=f"log loss {report['log_loss']:.4f}" + (f", balanced {balanced:.4f}" if balanced is not None else ""))
    cal.legend(loc="upper left")
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(os.fspath(path), write, verify=verify_image)
    return os.fspath(path)
