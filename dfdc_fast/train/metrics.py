"""Per-epoch metrics: the DFDC log loss per video, a CSV log and a PNG plot of it."""
from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from typing import Sequence

from dfdc_fast.metrics import balanced_log_loss, dfdc_log_loss

METRIC_FIELDS = ["epoch", "steps", "train_loss", "val_log_loss", "val_balanced_log_loss", "val_videos", "lr",
                 "clips_per_s", "epoch_s", "first_step_s", "steady_s", "steady_clips_per_s",
                 "decoded_per_delivered"]


def video_log_loss(videos: Sequence[str], labels: Sequence[int], probs: Sequence[float],
                   eps: float = 1e-15) -> tuple[float, float, int]:
    """(DFDC log loss, class-balanced log loss, videos) with one prediction per video: the
    mean probability of its face clips, as the competition scored a submission row. The
    balanced loss is NaN when the hold-out has one class only."""
    per_video: dict[str, list[float]] = defaultdict(list)
    label_of: dict[str, int] = {}
    for v, y, p in zip(videos, labels, probs):
        per_video[v].append(float(p))
        label_of[v] = int(y)
    if not per_video:
        return float("nan"), float("nan"), 0
    pred = {v: sum(ps) / len(ps) for v, ps in per_video.items()}
    overall = dfdc_log_loss(label_of, pred, eps=eps)
    balanced = balanced_log_loss(label_of, pred, eps=eps) if len(set(label_of.values())) == 2 else float("nan")
    return overall, balanced, len(pred)


def append_metrics(path: str, row: dict) -> None:
    """Append one epoch's row; rows of epochs at or after ``row['epoch']`` (left by a run
    that was interrupted and resumed) are replaced, so the log matches the checkpoints."""
    rows = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < int(row["epoch"])]
    rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_metrics(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


CHANCE = math.log(2)  # the log loss of always answering 0.5


def validation_problem(videos: Sequence[str], labels: Sequence[int]) -> str | None:
    """Why the validation metrics will be degenerate (None when they will not): no videos,
    one video, or one class only (the balanced log loss is then undefined, NaN)."""
    label_of = {v: int(y) for v, y in zip(videos, labels)}
    n = len(label_of)
    if n == 0:
        return None
    classes = sorted({("REAL", "FAKE")[y] for y in label_of.values()})
    if len(classes) == 1:
        return (f"the validation set holds {n} video{'s' if n > 1 else ''}, all {classes[0]}: the balanced log loss "
                "needs both classes and will be nan, and the plain log loss rewards always answering "
                f"{classes[0]}. Hold out more (val_fraction) or DFDC parts with both classes (val_parts).")
    if n < 4:
        return (f"the validation set holds only {n} videos: its log loss is noise. Hold out more (val_fraction) or "
                "whole DFDC parts (val_parts).")
    return None


def _column(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key, "")
        if v in ("", None):
            continue
        y = float(v)
        if math.isfinite(y):
            xs.append(int(r["epoch"]))
            ys.append(y)
    return xs, ys


def plot_metrics(csv_path: str, png_path: str, title: str | None = None) -> None:
    """Draw ``metrics.csv`` to a PNG (replaced atomically); see :func:`render_metrics`."""
    fig = render_metrics(read_metrics(csv_path),
                         title or f"training metrics: {os.path.dirname(os.path.abspath(csv_path))}")
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, png_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def render_metrics(rows: list[dict], title: str = "training metrics"):
    """The rows of ``metrics.csv`` as a matplotlib ``Figure`` (Agg, no display needed): one
    panel each for the training loss, the validation log loss (plain and class-balanced,
    with the chance level ln 2), the learning rate and the throughput, all against epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2, sharex=True)
    epochs = [int(r["epoch"]) for r in rows] or [1]
    fig.suptitle(title, fontsize=12)

    def panel(ax, heading, ylabel):
        ax.set_title(heading, fontsize=11)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)

    def line(ax, key, label, **kw):
        xs, ys = _column(rows, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=4, label=label, **kw)
        return xs, ys

    ax = axes[0, 0]
    panel(ax, "Training loss", "BCE loss (mean per clip)")
    if not line(ax, "train_loss", "train loss", color="tab:blue")[0]:
        ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)

    ax = axes[0, 1]
    panel(ax, "Validation log loss (per video, as DFDC scored)", "log loss")
    plain = line(ax, "val_log_loss", "log loss", color="tab:red")
    balanced = line(ax, "val_balanced_log_loss", "balanced log loss (REAL and FAKE weighted equally)",
                    color="tab:purple", linestyle="--")
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1.5, label=f"chance: ln 2 = {CHANCE:.3f}")
    notes = []
    if not plain[0]:
        notes.append("no validation set")
    elif not balanced[0]:
        notes.append("balanced log loss undefined:\nthe validation set has one class")
    videos = [r.get("val_videos") for r in rows if r.get("val_videos") not in ("", None)]
    if videos:
        notes.append(f"{videos[-1]} validation videos")
    if notes:
        ax.text(0.02, 0.04, "\n".join(notes), transform=ax.transAxes, fontsize=9, va="bottom", color="dimgrey")
    top = max(plain[1] + balanced[1] + [CHANCE])
    ax.set_ylim(0, top * 1.4)  # room for the legend above the curves
    ax.legend(fontsize=8, loc="upper right")

    ax = axes[1, 0]
    panel(ax, "Learning rate (end of epoch)", "learning rate")
    xs, ys = line(ax, "lr", "lr", color="tab:green")
    if ys and min(ys) > 0 and max(ys) / min(ys) > 20:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_xlabel("epoch")

    ax = axes[1, 1]
    panel(ax, "Throughput", "clips / s")
    line(ax, "clips_per_s", "whole epoch", color="tab:orange")
    line(ax, "steady_clips_per_s", "after the first step (steady)", color="tab:brown", linestyle="--")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("epoch")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")

    return fig
