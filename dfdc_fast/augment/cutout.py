"""Selim Seferbekov's "hardcore" cut-outs, batched on the device.

Before his image augmentations Selim blacked out part of a face crop
(``training/datasets/classifier_dataset.py``), drawing, per image:

* with p 0.7, when the crop has landmarks: ``remove_landmark``: the eyes with p 0.5, else
  the mouth with p 0.5, else the nose with p 0.5 (else nothing). Each is a 2-px line (eye to
  eye; mouth corner to corner; nose tip to the eyes' midpoint) dilated ``d // 4`` times
  (``d // 3`` for the mouth) with SciPy's cross, ``d`` the eye (mouth) width;
* else with p 0.2: ``blackout_convex_hull``: dlib's 68-point face outline (jaw + brows),
  split at its centroid along a random axis, one half blacked out;
* else with p 0.1: one of six bit masks (top/bottom/left/right half, two diagonal quarter
  pairs, split at ``w // 2`` on both axes: his code uses the width for the row too), at most
  five draws, taking the first that keeps more than 20 non-zero SSIM-diff pixels of a fake
  (any draw for a real).

Here every image of a batch gets its parameters from one CPU generator (``sample_params``)
and the masks are drawn in closed form on the device (``apply``), no per-image loop and no
host sync:

* a line dilated ``k`` times by the cross is the set of pixels within Manhattan distance
  ``k`` of the line; the mask is ``L1 distance to the segment <= k + 1`` (the 2-px line
  adds about one pixel), computed from four candidate points per pixel;
* dlib's 68-point model is not available here (no dlib, no weights), so the face outline
  is an ellipse put on the five detector points with the proportions of dlib's mean face:
  centre 0.46 of the way from the eyes' to the mouth's midpoint, half-height 0.98 x that
  distance along it, half-width 1.14 x the eye distance across;
* the bit masks' choice uses per-mask counts of kept diff pixels that the loader computes
  at the crop's native size (:func:`bit_mask_counts`), so the > 20 rule is his exactly.

Images are ``(B, 3, S, S)`` letterboxed crops; landmarks, bit-mask split points and the
letterbox ``scale`` (letterbox pixels per native pixel) come with the batch.
"""
from __future__ import annotations

import numpy as np
import torch

from dfdc_fast.augment._common import Augment, Params, Sampler

#: The six bit masks: which part each blacks out (rows/cols split at the crop's w // 2).
BIT_MASKS = ("top", "bottom", "left", "right", "diag_tl_br", "diag_tr_bl")
#: Ellipse of dlib's mean face outline on the five points (see the module doc).
HULL_CENTRE, HULL_HALF_HEIGHT, HULL_HALF_WIDTH = 0.46, 0.98, 1.14


def bit_mask_keep(height: int, width: int) -> np.ndarray:
    """bool ``(6, h, w)``: the pixels each of Selim's bit masks keeps (True) at native size,
    with his split ``mid = width // 2`` on both axes."""
    mid = width // 2
    rows = np.arange(height)[:, None] < mid
    cols = np.arange(width)[None, :] < mid
    top, left = np.broadcast_to(rows, (height, width)), np.broadcast_to(cols, (height, width))
    return np.stack([~top, top, ~left, left, ~((top & left) | (~top & ~left)), ~((top & ~left) | (~top & left))])


def bit_mask_counts(diff: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """int64 ``(6,)``: non-zero SSIM-diff pixels each bit mask keeps (zeros without a diff)."""
    if diff is None:
        return np.zeros(len(BIT_MASKS), dtype=np.int64)
    keep = bit_mask_keep(height, width)
    return (keep & (np.asarray(diff)[None, :height, :width] > 0)).reshape(len(BIT_MASKS), -1).sum(1).astype(np.int64)


def segment_l1_distance(px: torch.Tensor, py: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Manhattan distance from points ``(px, py)`` (broadcast ``(B, H, W)``) to the segments
    ``a -> b`` (``(B, 2)``): the minimum of a convex piecewise-linear function of the segment
    parameter, found among its breakpoints (t = 0, 1 and where x or y lines up)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    eps = 1e-6
    tx = torch.where(dx.abs() > eps, (px - ax) / torch.where(dx.abs() > eps, dx, torch.ones_like(dx)),
                     torch.zeros_like(px))
    ty = torch.where(dy.abs() > eps, (py - ay) / torch.where(dy.abs() > eps, dy, torch.ones_like(dy)),
                     torch.zeros_like(py))
    best = None
    for t in (torch.zeros_like(px), torch.ones_like(px), tx.clamp(0, 1), ty.clamp(0, 1)):
        d = (px - ax - t * dx).abs() + (py - ay - t * dy).abs()
        best = d if best is None else torch.minimum(best, d)
    return best


class SelimCutout(Augment):
    """Selim's landmark / face-half / bit-mask cut-outs (see the module doc).

    Call ``forward(x, landmarks, has_landmarks, labels, diff_counts, bit_mid, scale,
    generator=)``: ``x`` float ``(B, C, H, W)``; ``landmarks`` ``(B, 5, 2)`` in ``x``'s
    pixels; ``has_landmarks`` bool ``(B,)``; ``labels`` ``(B,)`` (> 0.5 is FAKE);
    ``diff_counts`` ``(B, 6)`` from :func:`bit_mask_counts`; ``bit_mid`` ``(B, 2)`` the bit
    masks' split (x, y) in ``x``'s pixels; ``scale`` ``(B,)`` ``x`` pixels per native pixel.
    Returns ``(x, cut)`` with ``cut`` the bool ``(B, 1, H, W)`` mask of blacked-out pixels.
    """

    def __init__(self, landmark_p: float = 0.7, hull_p: float = 0.2, bitmask_p: float = 0.1, eyes_p: float = 0.5,
                 mouth_p: float = 0.5, nose_p: float = 0.5, bitmask_tries: int = 5, min_diff_pixels: int = 20):
        super().__init__()
        self.landmark_p, self.hull_p, self.bitmask_p = float(landmark_p), float(hull_p), float(bitmask_p)
        self.eyes_p, self.mouth_p, self.nose_p = float(eyes_p), float(mouth_p), float(nose_p)
        self.bitmask_tries, self.min_diff_pixels = int(bitmask_tries), int(min_diff_pixels)
        if self.bitmask_tries < 1:
            raise ValueError(f"bitmask_tries must be >= 1, got {bitmask_tries}")

    def extra_repr(self) -> str:
        return (f"landmark_p={self.landmark_p}, hull_p={self.hull_p}, bitmask_p={self.bitmask_p}, "
                f"tries={self.bitmask_tries}, min_diff_pixels={self.min_diff_pixels}")

    def sample_params(self, batch_shape, device=None, generator=None) -> Params:
        b = batch_shape[0]
        s = Sampler(generator, device)
        return {"u_landmark": s.rand(b), "u_part": s.rand(b, 3), "u_hull": s.rand(b), "hull_axis": s.rand(b, 2),
                "u_bitmask": s.rand(b), "bitmask_draws": torch.floor(s.rand(b, self.bitmask_tries) * 6).long().clamp_max(5)}

    def masks(self, shape, params: Params, landmarks, has_landmarks, labels, diff_counts, bit_mid, scale) -> torch.Tensor:
        """bool ``(B, 1, H, W)``: the pixels blacked out."""
        b, _, h, w = shape
        dev = landmarks.device
        f = torch.float32
        lm = landmarks.to(f)
        scale = scale.to(f).clamp_min(1e-6)
        py = (torch.arange(h, device=dev, dtype=f) + 0.5).view(1, h, 1).expand(b, h, w)
        px = (torch.arange(w, device=dev, dtype=f) + 0.5).view(1, 1, w).expand(b, h, w)
        has = has_landmarks.to(dev).bool()

        # branch choice, as his if / elif / elif chain
        use_lm = has & (params["u_landmark"] < self.landmark_p)
        use_hull = ~use_lm & has & (params["u_hull"] < self.hull_p)
        use_bits = ~use_lm & ~use_hull & (params["u_bitmask"] < self.bitmask_p)
        u = params["u_part"]
        eyes = use_lm & (u[:, 0] < self.eyes_p)
        mouth = use_lm & ~eyes & (u[:, 1] < self.mouth_p)
        nose = use_lm & ~eyes & ~mouth & (u[:, 2] < self.nose_p)

        # landmark lines, dilated by floor(width / 4) (mouth: / 3) native pixels, + 1 for the 2-px line
        le, re, nz, lm_, rm = lm.unbind(1)
        eye_w = (re - le).norm(dim=1) / scale
        mouth_w = (rm - lm_).norm(dim=1) / scale
        eye_mid = (le + re) / 2
        a = torch.where(eyes[:, None], le, torch.where(mouth[:, None], lm_, nz))
        bpt = torch.where(eyes[:, None], re, torch.where(mouth[:, None], rm, eye_mid))
        radius = torch.where(mouth, torch.floor(mouth_w / 3), torch.floor(eye_w / 4)) + 1.0
        line = segment_l1_distance(px, py, a, bpt) <= (radius * scale)[:, None, None]
        cut = line & (eyes | mouth | nose)[:, None, None]

        # face-outline ellipse on the five points, one half (rows or columns at its centre)
        mouth_mid = (lm_ + rm) / 2
        down = mouth_mid - eye_mid
        d_em = down.norm(dim=1).clamp_min(1e-6)
        u_axis = down / d_em[:, None]
        v_axis = torch.stack([-u_axis[:, 1], u_axis[:, 0]], dim=1)
        centre = eye_mid + HULL_CENTRE * down
        rx, ry = px - centre[:, 0, None, None], py - centre[:, 1, None, None]
        along = rx * u_axis[:, 0, None, None] + ry * u_axis[:, 1, None, None]
        across = rx * v_axis[:, 0, None, None] + ry * v_axis[:, 1, None, None]
        half_h = (HULL_HALF_HEIGHT * d_em)[:, None, None]
        half_w = (HULL_HALF_WIDTH * (re - le).norm(dim=1)).clamp_min(1e-6)[:, None, None]
        ellipse = (along / half_h) ** 2 + (across / half_w) ** 2 <= 1.0
        by_rows = (params["hull_axis"][:, 0] > 0.5)[:, None, None]
        first = (params["hull_axis"][:, 1] > 0.5)[:, None, None]
        cy, cx = centre[:, 1, None, None], centre[:, 0, None, None]
        # his code zeroes [:y] (first) or [y:] of the hull mask, then blacks out what is left
        kept_half = torch.where(by_rows, torch.where(first, py >= cy, py < cy), torch.where(first, px >= cx, px < cx))
        cut = cut | (ellipse & kept_half & use_hull[:, None, None])

        # bit masks: the first of the draws that keeps > min_diff_pixels diff pixels of a fake
        draws = params["bitmask_draws"]
        counts = diff_counts.to(dev).gather(1, draws)  # (B, tries)
        fake = labels.to(dev) > 0.5
        ok = ~fake[:, None] | (counts > self.min_diff_pixels)
        any_ok = ok.any(dim=1)
        chosen = draws.gather(1, ok.to(torch.int8).argmax(dim=1, keepdim=True))[:, 0]
        mx, my = bit_mid[:, 0, None, None].to(f), bit_mid[:, 1, None, None].to(f)
        top, left = py < my, px < mx
        blacked = torch.stack([top, ~top, left, ~left, (top & left) | (~top & ~left), (top & ~left) | (~top & left)], 1)
        bits = blacked.gather(1, chosen.view(b, 1, 1, 1).expand(b, 1, h, w))[:, 0]
        cut = cut | (bits & (use_bits & any_ok)[:, None, None])
        return cut[:, None]

    def forward(self, x, landmarks, has_landmarks, labels, diff_counts, bit_mid, scale, generator=None):
        params = self.sample_params(x.shape, x.device, generator)
        cut = self.masks(x.shape, params, landmarks.to(x.device), has_landmarks, labels, diff_counts, bit_mid,
                         scale.to(x.device))
        return x.masked_fill(cut, 0.0), cut


__all__ = ["SelimCutout", "BIT_MASKS", "bit_mask_keep", "bit_mask_counts", "segment_l1_distance"]
