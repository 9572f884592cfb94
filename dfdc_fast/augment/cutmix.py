"""CutMix for clips (the Medics' 3D variant), plus the 2D CutMix / MixUp they share a result
type with, and the losses that weigh each sample's two labels by its mixing fraction."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dfdc_fast.augment._common import Sampler


@dataclass
class CutMixResult:
    """A mixed batch and what is needed to score it.

    Attributes:
        clips: the mixed batch (clips, or images for the 2D functions; ``images`` aliases it).
        targets: each sample's own labels.
        partner_targets: the labels of the sample mixed in (``targets[perm]``).
        lam: ``(B,)`` fraction of each sample that is still its own (1 = untouched).
        perm: ``(B,)`` index of each sample's partner.
        boxes: ``(B, 2 * ndim)`` long ``[lo, hi)`` per axis of the pasted box, axes in tensor
            order (``t0, t1, y0, y1, x0, x1`` for clips, ``y0, y1, x0, x1`` for images);
            None for MixUp.
        kind: "cutmix3d", "cutmix2d" or "mixup".
        lam_drawn: ``(B,)`` lam as drawn, before the box was rounded and clipped (for
            CutMix the effective ``lam`` is larger: edge boxes shrink); None where not drawn.
    """

    clips: torch.Tensor
    targets: torch.Tensor
    partner_targets: torch.Tensor
    lam: torch.Tensor
    perm: torch.Tensor
    boxes: torch.Tensor | None
    kind: str = "cutmix3d"
    lam_drawn: torch.Tensor | None = None

    @property
    def images(self) -> torch.Tensor:
        return self.clips

    def mixed_targets(self) -> torch.Tensor:
        """Soft labels ``lam * y + (1 - lam) * y_partner`` (for float/one-hot targets)."""
        y = self.targets.to(self.lam.dtype)
        yp = self.partner_targets.to(self.lam.dtype)
        lam = self.lam.view(-1, *([1] * (y.dim() - 1)))
        return lam * y + (1.0 - lam) * yp


def _box_mask(lo: torch.Tensor, hi: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Boolean ``(B, *dims)`` mask of the boxes ``[lo, hi)``: an outer AND of per-axis ranges."""
    b, nd = lo.shape
    mask = None
    for i, n in enumerate(dims):
        ar = torch.arange(n, device=lo.device)
        m = (ar >= lo[:, i:i + 1]) & (ar < hi[:, i:i + 1])  # (B, n)
        shape = [b] + [1] * nd
        shape[1 + i] = n
        m = m.view(shape)
        mask = m if mask is None else mask & m
    return mask


def _cutmix(x: torch.Tensor, targets: torch.Tensor, nd: int, alpha: float, symmetric: bool,
            generator: torch.Generator | None, kind: str) -> CutMixResult:
    if x.dim() < nd + 1:
        raise ValueError(f"expected (B, C, {nd} spatial axes), got shape {tuple(x.shape)}")
    if targets.shape[0] != x.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for a batch of {x.shape[0]}")
    b = x.shape[0]
    dims = tuple(x.shape[-nd:])
    s = Sampler(generator, x.device)
    lam = s.beta(alpha, alpha, b)
    if symmetric:
        lam = torch.maximum(lam, 1.0 - lam)
    perm = s.randperm(b)
    centres_u = s.rand(b, nd)

    dim_t = torch.tensor(dims, dtype=torch.float32).to(x.device, non_blocking=True)  # no blocking copy
    r = (1.0 - lam).clamp_min(0.0) ** (1.0 / nd)
    size = torch.floor(dim_t * r[:, None]).long()  # int(D * r)
    dim_l = dim_t.long()
    centre = torch.floor(centres_u * dim_t).long().clamp_max(dim_l - 1)
    half = size // 2
    lo = torch.minimum(torch.maximum(centre - half, torch.zeros_like(centre)), dim_l)
    hi = torch.minimum(torch.maximum(centre + half, torch.zeros_like(centre)), dim_l)

    mask = _box_mask(lo, hi, dims).unsqueeze(1)  # broadcast over channels
    out = torch.where(mask, x[perm], x)
    volume = (hi - lo).prod(dim=1).to(torch.float32)
    total = float(math.prod(dims))
    boxes = torch.stack([lo, hi], dim=2).reshape(b, 2 * nd)
    return CutMixResult(out, targets, targets[perm], 1.0 - volume / total, perm, boxes, kind, lam)


def cutmix3d(clips: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0,
             generator: torch.Generator | None = None) -> CutMixResult:
    """3D CutMix as the Medics used it: a (t, h, w) box of every clip is replaced, in all
    channels, by the same box of a partner clip (``randperm``).

    ``lam ~ Beta(alpha, alpha)`` per clip, folded to ``max(lam, 1 - lam)`` so each clip keeps
    at least half of itself; the box side ratio is ``(1 - lam) ** (1/3)``, sizes
    ``int(D * r)`` per axis, centres uniform integers, box ``centre +- size // 2`` clipped to the
    clip (so edge boxes shrink), and ``lam`` is recomputed from the clipped box volume.
    """
    return _cutmix(clips, targets, 3, alpha, True, generator, "cutmix3d")


def cutmix2d(images: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0, symmetric: bool = False,
             generator: torch.Generator | None = None) -> CutMixResult:
    """Standard (Yun et al.) CutMix on ``(B, C, H, W)``; ``symmetric`` folds lam like ``cutmix3d``."""
    return _cutmix(images, targets, 2, alpha, symmetric, generator, "cutmix2d")


def mixup(x: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.4,
          generator: torch.Generator | None = None) -> CutMixResult:
    """MixUp: ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)`` per sample."""
    b = x.shape[0]
    s = Sampler(generator, x.device)
    lam = s.beta(alpha, alpha, b)
    perm = s.randperm(b)
    w = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    out = w * x + (1.0 - w) * x[perm]
    return CutMixResult(out, targets, targets[perm], lam, perm, None, "mixup", lam)


def mixed_bce_loss(logits: torch.Tensor, result: CutMixResult) -> torch.Tensor:
    """``mean(lam * BCE(logit, y) + (1 - lam) * BCE(logit, y_partner))`` for one-logit models
    (``logits`` of shape (B,) or (B, 1))."""
    z = logits.reshape(logits.shape[0], -1)
    if z.shape[1] != 1:
        raise ValueError(f"expected one logit per sample, got shape {tuple(logits.shape)}")
    z = z[:, 0]
    y = result.targets.reshape(-1).to(z.dtype)
    yp = result.partner_targets.reshape(-1).to(z.dtype)
    lam = result.lam.to(z.dtype)
    own = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    other = F.binary_cross_entropy_with_logits(z, yp, reduction="none")
    return (lam * own + (1.0 - lam) * other).mean()


def mixed_ce_loss(logits: torch.Tensor, result: CutMixResult, **kwargs) -> torch.Tensor:
    """The same for class logits ``(B, K)`` (K = 2 for real/fake) and integer targets;
    ``kwargs`` go to ``F.cross_entropy`` (e.g. ``label_smoothing``)."""
    y = result.targets.reshape(-1).long()
    yp = result.partner_targets.reshape(-1).long()
    lam = result.lam.to(logits.dtype)
    own = F.cross_entropy(logits, y, reduction="none", **kwargs)
    other = F.cross_entropy(logits, yp, reduction="none", **kwargs)
    return (lam * own + (1.0 - lam) * other).mean()


class CutMix3d(nn.Module):
    """``cutmix3d`` as a module; with probability ``p`` per batch the batch is mixed.

    A batch left alone is still returned as a ``CutMixResult`` (lam = 1, empty boxes), so
    the training step and loss need no branch.
    """

    def __init__(self, alpha: float = 1.0, p: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)
        self.p = float(p)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, p={self.p}"

    def forward(self, clips: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator | None = None) -> CutMixResult:
        if self.p >= 1.0:
            return cutmix3d(clips, targets, alpha=self.alpha, generator=generator)
        # per-batch decision drawn on the generator's device (CPU by default: no device sync)
        draw_device = generator.device if generator is not None else torch.device("cpu")
        if float(torch.rand(1, generator=generator, device=draw_device)) < self.p:
            return cutmix3d(clips, targets, alpha=self.alpha, generator=generator)
        b = clips.shape[0]
        ones = torch.ones(b, device=clips.device)
        perm = torch.arange(b, device=clips.device)
        boxes = torch.zeros(b, 6, dtype=torch.long, device=clips.device)
        return CutMixResult(clips, targets, targets, ones, perm, boxes, "cutmix3d", ones)
