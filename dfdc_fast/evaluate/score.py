"""Scoring one submission against labels (see the package docstring)."""
from __future__ import annotations

from dfdc_fast.evaluate.labels import Label
from dfdc_fast.submission import read_submission, validate_submission
from dfdc_fast.metrics import (average_precision, balanced_log_loss, dfdc_log_loss, equal_error_rate, roc_auc,
                               roc_curve)


def figures(labels: list[float], preds: list[float]) -> dict:
    """Every figure the labels allow (the ranking ones and the balanced log loss need both classes)."""
    fakes = int(sum(labels))
    out = {"videos": len(labels), "fake": fakes, "real": len(labels) - fakes,
           "log_loss": dfdc_log_loss(labels, preds),
           "accuracy_at_0.5": sum((p > 0.5) == (y == 1.0) for y, p in zip(labels, preds)) / len(labels)}
    if 0 < fakes < len(labels):
        out.update(balanced_log_loss=balanced_log_loss(labels, preds), auc=roc_auc(labels, preds),
                   ap=average_precision(labels, preds), eer=equal_error_rate(labels, preds))
    else:
        out.update(balanced_log_loss=None, auc=None, ap=None, eer=None)
    return out


def evaluate(submission: str, labels: dict[str, Label]) -> dict:
    """The report of ``submission`` (a DFDC ``submission.csv``) against ``labels``.

    Raises ``ValueError`` naming the rows when the file misses labelled videos or has bad
    rows. Rows for unlabelled videos are counted (``unlabelled_rows``) and not scored.
    """
    check = validate_submission(submission, expected=list(labels))
    bad = {k: check[k] for k in ("missing", "duplicates", "nonfinite", "out_of_range") if check[k]}
    if bad:
        said = "; ".join(f"{k.replace('_', ' ')}: {len(v)} ({', '.join(map(str, v[:5]))}"
                         f"{', ...' if len(v) > 5 else ''})" for k, v in bad.items())
        raise ValueError(f"{submission}: refused, {said}")

    scores = read_submission(submission)
    names = list(labels)
    ys = [labels[n].fake for n in names]
    ps = [scores[n] for n in names]
    report = {"submission": submission, "unlabelled_rows": len(check["extra"]), **figures(ys, ps)}
    parts = sorted({labels[n].part for n in names})
    if len(parts) > 1:
        report["parts"] = {}
        for part in parts:
            idx = [i for i, n in enumerate(names) if labels[n].part == part]
            report["parts"][part] = figures([ys[i] for i in idx], [ps[i] for i in idx])
    if report["auc"] is not None:
        fpr, tpr, _ = roc_curve(ys, ps)
        report["roc"] = {"fpr": fpr, "tpr": tpr}
    report["calibration"] = calibration(ys, ps)
    return report


def calibration(labels: list[float], preds: list[float], bins: int = 10) -> list[dict]:
    """Per score bin of width 1/bins: videos, mean score and fraction fake (empty bins left out)."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(preds) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            out.append({"low": lo, "high": hi, "videos": len(idx), "mean_score": sum(preds[i] for i in idx) / len(idx),
                        "fraction_fake": sum(labels[i] for i in idx) / len(idx)})
    return out
