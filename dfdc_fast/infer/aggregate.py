"""Per-video aggregation of face-level fake probabilities (DFDC winning recipes).

A video gets one number from many face crops (frames x faces) scored by one or more
models. How those scores are pooled moved log loss more than most model changes in
the competition, so the three recipes of the top teams are kept side by side:

* :func:`medics`  -- 5th place: mean per model, mean over models, clipped.
* :func:`selim`   -- 1st place (Selim Seferbekov): :func:`confident_strategy` per model,
  mean over models, no clipping.
* :func:`ntech_sharpen` -- 3rd place (NTechLab): confidence-weighted mean of sharpened
  probabilities, all models pooled.

Inputs are torch tensors (any device) or plain sequences; results are Python floats.
Every aggregator raises ``ValueError`` on empty input: a video without faces is not a
0.5 by accident but by decision, so callers handle it explicitly with
:func:`fallback_score` (which is where ``NO_FACE_SCORE`` lives).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Number

import torch

__all__ = [
    "AGGREGATORS",
    "FALLBACK_SCORES",
    "NO_FACE_SCORE",
    "aggregate",
    "confident_strategy",
    "fallback_score",
    "medics",
    "ntech_sharpen",
    "selim",
]

NO_FACE_SCORE = 0.5
"""Score for a video with no usable face: 0.5 is the log-loss-minimising guess with no evidence."""

FALLBACK_SCORES: dict[str, float] = {
    "no_face": NO_FACE_SCORE,
    "no_frames": NO_FACE_SCORE,
    "decode_error": NO_FACE_SCORE,
    "timeout": NO_FACE_SCORE,
    "error": NO_FACE_SCORE,
}
"""Score per failure status; one table so a tuned prior (e.g. 0.6) is changed in one place."""


def fallback_score(status: str) -> float:
    """The score for a video the models could not score, by why (a key of ``FALLBACK_SCORES``).

    Unknown statuses raise so that a typo or a new failure mode is not silently scored.
    """
    try:
        return float(FALLBACK_SCORES[status])
    except KeyError:
        raise ValueError(f"unknown fallback status {status!r}; known: {sorted(FALLBACK_SCORES)}") from None


def _flat(x, what: str = "probabilities") -> torch.Tensor:
    """Flatten ``x`` to a 1-D floating tensor on its own device (input float dtype kept),
    checked to be non-empty, finite and in [0, 1]."""
    if isinstance(x, torch.Tensor):
        t = x
    elif hasattr(x, "dtype"):  # NumPy array: keep its dtype (float32 model outputs compare as float32)
        t = torch.as_tensor(x)
    else:  # Python numbers: float64, not torch's float32 default, so 0.9 stays 0.9
        t = torch.as_tensor(x, dtype=torch.float64)
    t = t.detach().reshape(-1)
    if not t.is_floating_point():
        t = t.to(_compute_dtype(t))
    if t.numel() == 0:
        raise ValueError(f"no {what} (empty input): handle videos without faces with fallback_score()")
    # One sync for both checks; logits or NaNs passed by mistake must not become a score.
    bad = (~torch.isfinite(t) | (t < 0) | (t > 1)).any()
    if bool(bad):
        raise ValueError(f"{what} must be finite and within [0, 1] (logits passed instead of probabilities?)")
    return t


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # float64 where the device has it, so sums match the hand/NumPy arithmetic.
    return torch.float32 if t.device.type == "mps" else torch.float64


def _probs(x, what: str = "probabilities") -> torch.Tensor:
    """:func:`_flat`, in the compute dtype."""
    t = _flat(x, what)
    return t.to(_compute_dtype(t))


def _is_scalar(x) -> bool:
    return isinstance(x, Number) or (isinstance(x, torch.Tensor) and x.dim() == 0)


def _per_model(scores) -> list[tuple[str, torch.Tensor]]:
    """Normalise per-model input: a mapping name -> probs, a sequence of per-model probs,
    or a tensor (1-D: one model; 2-D: one row per model)."""
    if isinstance(scores, Mapping):
        items = list(scores.items())
    elif isinstance(scores, torch.Tensor):
        if scores.dim() == 1:
            items = [("0", scores)]
        elif scores.dim() == 2:
            items = [(str(i), row) for i, row in enumerate(scores)]
        else:
            raise ValueError(f"per-model scores tensor must be 1-D or 2-D (models, faces), got {tuple(scores.shape)}")
    elif isinstance(scores, Sequence) and not isinstance(scores, (str, bytes)):
        if any(_is_scalar(s) for s in scores):
            # A flat list is ambiguous (one model with N faces, or N models with one face).
            raise TypeError("per-model scores must be {model: probs} or [probs, ...]; wrap one model's probs as [probs]")
        items = [(str(i), s) for i, s in enumerate(scores)]
    else:
        raise TypeError(f"unsupported per-model scores type {type(scores).__name__}")
    if not items:
        raise ValueError("no models (empty input): handle videos without faces with fallback_score()")
    out = [(name, _probs(s, f"probabilities of model {name!r}")) for name, s in items]
    # Models may hand back scores on different devices (or as lists): combine on the first one's.
    device = out[0][1].device
    return [(name, p.to(device)) for name, p in out]


def medics(face_probs_per_model, clip: tuple[float, float] = (0.001, 0.999)) -> float:
    """5th place recipe: mean of each model's face scores, mean over models, clipped.

    The clip caps the log-loss penalty of a confidently wrong video at -log(0.001) ~ 6.9.
    """
    lo, hi = clip
    if not lo <= hi:
        raise ValueError(f"clip must be (low, high) with low <= high, got {clip}")
    means = torch.stack([p.mean() for _, p in _per_model(face_probs_per_model)])
    return float(means.mean().clamp(lo, hi).item())


def confident_strategy(pred, t: float = 0.8) -> float:
    """1st place per-model rule: trust the confident faces when there are enough of them.

    If more than ``sz // 2.5`` (and more than 11) faces score above ``t``, the video is the
    mean of those; else if over 90 % score below 0.2 it is the mean of those; else the mean
    of all. ``sz // 2.5`` is Python's float floor division (32 -> 12.0), kept as in the
    original. Thresholds compare in the input's own dtype, as NumPy did on the float32
    model outputs (a float32 0.8 is not > 0.8); means are taken in float64. Branch-free
    on the device so a CUDA input syncs once.
    """
    raw = _flat(pred)
    p = raw.to(_compute_dtype(raw))
    sz = p.numel()
    hi_mask, lo_mask = raw > t, raw < 0.2
    n_hi, n_lo = hi_mask.sum(), lo_mask.sum()
    mean_hi = (p * hi_mask).sum() / n_hi.clamp_min(1)
    mean_lo = (p * lo_mask).sum() / n_lo.clamp_min(1)
    confident_fake = (n_hi > sz // 2.5) & (n_hi > 11)
    confident_real = n_lo > 0.9 * sz
    out = torch.where(confident_fake, mean_hi, torch.where(confident_real, mean_lo, p.mean()))
    return float(out.item())


def selim(preds_per_model, t: float = 0.8) -> float:
    """1st place recipe: :func:`confident_strategy` per model, mean over models, no clipping."""
    values = [confident_strategy(p, t) for _, p in _per_model(preds_per_model)]
    return sum(values) / len(values)


def ntech_sharpen(probs, power: float = 0.65, clip: tuple[float, float] = (0.01, 0.99)) -> float:
    """3rd place recipe: sharpen each probability away from 0.5, then weight it by its confidence.

    d = p - 0.5; p' = clip(0.5 + sign(d) |d|^power); w = |d| + 1e-4; video = sum(w p') / sum(w).
    Confident faces dominate, and near-0.5 faces (bad crops) barely count. All values are
    pooled (any shape); the 1e-4 keeps an all-0.5 video defined (it scores 0.5).
    """
    p = _probs(probs)
    d = p - 0.5
    sharp = (0.5 + torch.sign(d) * d.abs().pow(power)).clamp(*clip)
    w = d.abs() + 1e-4
    return float(((w * sharp).sum() / w.sum()).item())


def _ntech_pooled(scores, **kwargs) -> float:
    """NTech over all models' faces together, as the team pooled their ensemble."""
    pooled = torch.cat([p for _, p in _per_model(scores)])
    return ntech_sharpen(pooled, **kwargs)


AGGREGATORS = {
    "medics": medics,
    "selim": selim,
    "ntech": _ntech_pooled,
}
"""name -> fn(scores: {model: face probabilities}, **options) -> float; all raise ValueError on empty input."""


def aggregate(name: str, scores, **kwargs) -> float:
    """Score one video with the aggregator ``name`` (a key of ``AGGREGATORS``).

    ``scores`` maps model name -> face-level probabilities (tensor or sequence); extra
    keyword arguments go to the aggregator (``clip=``, ``t=``, ``power=``). Raises
    ``ValueError`` on an unknown name or on no faces -- use :func:`fallback_score` then.
    """
    try:
        fn = AGGREGATORS[name]
    except KeyError:
        raise ValueError(f"unknown aggregator {name!r}; known: {sorted(AGGREGATORS)}") from None
    return fn(scores, **kwargs)
