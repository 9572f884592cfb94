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


def plot_metrics(csv_path: str, png_path: str, size: tuple[int, int] = (720, 420)) -> None:
    """Training loss and validation log loss against epoch, drawn with PIL (no matplotlib)."""
    from PIL import Image, ImageDraw

    rows = read_metrics(csv_path)
    series = {
        "train loss": ([int(r["epoch"]) for r in rows if r["train_loss"]], [float(r["train_loss"]) for r in rows if r["train_loss"]], (31, 119, 180)),
        "val log loss": ([int(r["epoch"]) for r in rows if r["val_log_loss"] not in ("", "nan")],
                         [float(r["val_log_loss"]) for r in rows if r["val_log_loss"] not in ("", "nan")], (214, 39, 40)),
    }
    w, h = size
    left, right, top, bottom = 60, 20, 30, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    xs = [x for s in series.values() for x in s[0]] or [0, 1]
    ys = [y for s in series.values() for y in s[1] if math.isfinite(y)] or [0, 1]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = 0.0, max(ys) * 1.1 or 1.0

    def px(x, y):
        return left + (x - x0) / (x1 - x0) * (w - left - right), h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)

    draw.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        _, yp = px(x0, yv)
        draw.line([left - 4, yp, left, yp], fill=(120, 120, 120))
        draw.text((4, yp - 6), f"{yv:.3f}", fill=(60, 60, 60))
    for e in sorted(set(xs)):
        xp, _ = px(e, y0)
        draw.text((xp - 4, h - bottom + 6), str(e), fill=(60, 60, 60))
    draw.text((w // 2 - 20, h - 18), "epoch", fill=(60, 60, 60))
    for k, (name, (ex, ey, colour)) in enumerate(series.items()):
        points = [px(x, y) for x, y in zip(ex, ey) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for p in points:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        draw.text((left + 10 + 140 * k, 8), f"— {name}", fill=colour)
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    img.save(tmp)
    os.replace(tmp, png_path)
