"""The DFDC metric: binary log loss per video, plain and class-balanced; and the ranking
figures DeepfakeBench users read (AUC, AP, EER).

Shared by training (validation), inference and ``evaluate`` (scoring a submission against
labels), so it lives in no job.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["average_precision", "balanced_log_loss", "dfdc_log_loss", "equal_error_rate", "roc_auc", "roc_curve"]


def _label(value) -> float:
    """1.0 for FAKE, 0.0 for REAL; accepts 0/1, bools and metadata.json's 'FAKE'/'REAL'."""
    if isinstance(value, str):
        key = value.strip().upper()
        if key in ("FAKE", "REAL"):
            return 1.0 if key == "FAKE" else 0.0
        value = float(value)
    y = float(value)
    if y not in (0.0, 1.0):
        raise ValueError(f"labels must be 0/1 or 'FAKE'/'REAL', got {value!r}")
    return y


def _to_list(x) -> list:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().reshape(-1).tolist()
    elif hasattr(x, "tolist") and not isinstance(x, (list, tuple)):  # numpy array
        x = x.reshape(-1).tolist()
    return list(x)


def _pairs(y_true, y_pred) -> tuple[list[float], list[float]]:
    """Align labels and predictions: by filename for a mapping, by position otherwise."""
    if isinstance(y_true, Mapping):
        if not isinstance(y_pred, Mapping):
            raise TypeError("y_true is a mapping, so y_pred must map the same filenames")
        missing = [n for n in y_true if n not in y_pred]
        if missing:
            raise ValueError(f"{len(missing)} labelled videos have no prediction: {missing[:20]}")
        names = list(y_true)
        ys, ps = [y_true[n] for n in names], [y_pred[n] for n in names]
    else:
        ys, ps = _to_list(y_true), _to_list(y_pred)
        if len(ys) != len(ps):
            raise ValueError(f"{len(ys)} labels but {len(ps)} predictions")
    if not ys:
        raise ValueError("no videos to score")
    labels = [_label(y) for y in ys]
    preds = []
    for p in ps:
        p = float(p)
        if not math.isfinite(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"predictions must be finite and within [0, 1], got {p!r}")
        preds.append(p)
    return labels, preds


def _mean_log_loss(labels: list[float], preds: list[float], eps: float) -> float:
    terms = []
    for y, p in zip(labels, preds):
        p = min(max(p, eps), 1.0 - eps)
        terms.append(-math.log(p) if y == 1.0 else -math.log(1.0 - p))
    return math.fsum(terms) / len(terms)


def dfdc_log_loss(y_true, y_pred, eps: float = 1e-15) -> float:
    """The competition metric: mean binary log loss over videos (FAKE = 1), predictions
    clipped to [eps, 1 - eps].

    With a mapping ``y_true`` the videos are its keys (``y_pred`` may hold more, e.g.
    unlabelled ones; a labelled video without a prediction raises); sequences pair by position.
    """
    labels, preds = _pairs(y_true, y_pred)
    return _mean_log_loss(labels, preds, eps)


def balanced_log_loss(y_true, y_pred, eps: float = 1e-15) -> float:
    """Mean of the log loss on fakes and the log loss on reals (Selim's validation metric).

    DFDC's public training set is ~5:1 fake:real, so the plain mean rewards leaning fake;
    weighting the classes equally tracks the balanced test set better. Needs both classes.
    """
    labels, preds = _pairs(y_true, y_pred)
    fake = [(y, p) for y, p in zip(labels, preds) if y == 1.0]
    real = [(y, p) for y, p in zip(labels, preds) if y == 0.0]
    if not fake or not real:
        raise ValueError(f"balanced log loss needs both classes, got {len(fake)} fake and {len(real)} real")
    fake_loss = _mean_log_loss([y for y, _ in fake], [p for _, p in fake], eps)
    real_loss = _mean_log_loss([y for y, _ in real], [p for _, p in real], eps)
    return (fake_loss + real_loss) / 2.0


def _both_classes(labels: list[float], what: str) -> None:
    fakes = sum(1 for y in labels if y == 1.0)
    if fakes == 0 or fakes == len(labels):
        raise ValueError(f"{what} needs both classes, got {fakes} fake and {len(labels) - fakes} real")


def roc_curve(y_true, y_pred) -> tuple[list[float], list[float], list[float]]:
    """(false positive rates, true positive rates, thresholds), FAKE positive; one point per
    distinct score, from (0, 0) (threshold +inf) to (1, 1)."""
    labels, preds = _pairs(y_true, y_pred)
    _both_classes(labels, "a ROC curve")
    order = sorted(range(len(preds)), key=lambda i: -preds[i])
    pos = sum(labels)
    neg = len(labels) - pos
    fpr, tpr, thresholds = [0.0], [0.0], [math.inf]
    tp = fp = 0.0
    for k, i in enumerate(order):
        tp += labels[i]
        fp += 1.0 - labels[i]
        if k + 1 < len(order) and preds[order[k + 1]] == preds[i]:
            continue  # ties make one point
        fpr.append(fp / neg)
        tpr.append(tp / pos)
        thresholds.append(preds[i])
    return fpr, tpr, thresholds


def roc_auc(y_true, y_pred) -> float:
    """Area under the ROC curve: the chance a random fake scores above a random real (ties
    count half)."""
    fpr, tpr, _ = roc_curve(y_true, y_pred)
    return math.fsum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr)))


def average_precision(y_true, y_pred) -> float:
    """Average precision, FAKE positive: sum over thresholds of (recall step) x precision."""
    labels, preds = _pairs(y_true, y_pred)
    _both_classes(labels, "average precision")
    fpr, tpr, _ = roc_curve(labels, preds)
    pos, neg = sum(labels), len(labels) - sum(labels)
    ap = 0.0
    for i in range(1, len(tpr)):
        tp, fp = tpr[i] * pos, fpr[i] * neg
        ap += (tpr[i] - tpr[i - 1]) * (tp / (tp + fp))
    return ap


def equal_error_rate(y_true, y_pred) -> float:
    """The error rate where false positives and false negatives are equally frequent,
    interpolated linearly between the two ROC points around it."""
    fpr, tpr, _ = roc_curve(y_true, y_pred)
    fnr = [1.0 - t for t in tpr]
    for i in range(1, len(fpr)):
        if fpr[i] >= fnr[i]:
            d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
            w = d0 / (d0 - d1) if d0 != d1 else 0.0
            return fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    return 1.0
