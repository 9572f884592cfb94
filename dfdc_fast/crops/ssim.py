"""SSIM maps of image pairs on the device, and Selim Seferbekov's difference masks.

``ssim_map`` computes what ``skimage.metrics.structural_similarity(x, y, channel_axis=-1,
full=True, data_range=255)`` returns as its full map for uint8 images (7x7 uniform window,
sample covariance, K1 = 0.01, K2 = 0.03, SciPy's "reflect" borders), for a whole batch of
crops of different sizes at once: crops sit in the top-left of one padded ``(N, H, W, C)``
tensor and each is filtered with its own borders (gathered reflection indices), so no
per-crop loop and no host sync.

The window sums are integer sums of uint8 values and their products, computed exactly in
int32, so they do not depend on summation order; only the SSIM formula runs in floating
point (``dtype``, float64 by default as skimage). SciPy divides while it sums, so the two
maps differ by a few ulps, which moves a value of ``(1 - S) * 255`` across an integer on
very few pixels: ``benchmarks/recipes.py`` and the tests measure it (at most 1 grey level).

``ssim_diff`` is Selim's ``generate_diffs.py``: ``(1 - S) * 255`` cast to uint8 as NumPy
casts (truncated, then wrapped modulo 256 for the rare S < 0), then OpenCV's RGB-to-grey
(its integer arithmetic: (9798 R + 19235 G + 3735 B + 2^14) >> 15 in the pinned OpenCV 5).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

GRAY_FIXED = (9798, 19235, 3735)  # OpenCV 5's RGB2GRAY coefficients, shift 15
GRAY_SHIFT = 15


def _reflect(p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """SciPy's "reflect" border (d c b a | a b c d | d c b a) of index ``p`` in a line of ``n``."""
    m = torch.remainder(p, 2 * n)
    return torch.where(m < n, m, 2 * n - 1 - m)


def _window_sums(x: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor, radius: int) -> torch.Tensor:
    """Sums over ``(2r+1)^2`` windows of int32 ``x`` ``(N, P, H, W)``, each item reflected at
    its own ``heights[i] x widths[i]`` borders (values outside an item are don't-cares)."""
    n, p, h, w = x.shape
    dev = x.device
    k = 2 * radius + 1
    cols = torch.arange(-radius, w + radius, device=dev)
    idx_w = _reflect(cols[None, :], widths[:, None])  # (N, W + 2r)
    padded = x.gather(3, idx_w[:, None, None, :].expand(n, p, h, w + 2 * radius))
    s = padded[..., 0:w].clone()
    for j in range(1, k):
        s += padded[..., j:j + w]
    rows = torch.arange(-radius, h + radius, device=dev)
    idx_h = _reflect(rows[None, :], heights[:, None])  # (N, H + 2r)
    padded = s.gather(2, idx_h[:, None, :, None].expand(n, p, h + 2 * radius, w))
    out = padded[:, :, 0:h].clone()
    for j in range(1, k):
        out += padded[:, :, j:j + h]
    return out


def _sizes(x: torch.Tensor, sizes) -> tuple[torch.Tensor, torch.Tensor]:
    n, h, w = x.shape[:3]
    if sizes is None:
        return (torch.full((n,), h, dtype=torch.int64, device=x.device),
                torch.full((n,), w, dtype=torch.int64, device=x.device))
    s = torch.from_numpy(np.ascontiguousarray(np.asarray(sizes, dtype=np.int64).reshape(n, 2))) \
        if not isinstance(sizes, torch.Tensor) else sizes.to(torch.int64).reshape(n, 2)
    s = s.to(x.device, non_blocking=True)
    return s[:, 0], s[:, 1]


def ssim_map(x: torch.Tensor, y: torch.Tensor, sizes=None, *, win_size: int = 7, data_range: float = 255.0,
             k1: float = 0.01, k2: float = 0.03, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The full SSIM map of each pair of images, per channel.

    Args:
        x, y: uint8 ``(N, H, W, C)`` on any device (or ``(H, W, C)`` for one pair).
        sizes: ``(N, 2)`` (height, width) of each item in the top-left of its padded slot;
            None: every item fills ``H x W``.
        dtype: of the SSIM formula (float64 as skimage; float32 is faster on GPUs).
    Returns:
        ``dtype`` ``(N, H, W, C)``; values outside an item's size are meaningless.
    """
    single = x.dim() == 3
    if single:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"x and y must both be (N, H, W, C), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != torch.uint8 or y.dtype != torch.uint8:
        raise ValueError(f"ssim_map takes uint8 images (data range 255), got {x.dtype} and {y.dtype}")
    if win_size % 2 != 1 or win_size < 3:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    n, h, w, c = x.shape
    heights, widths = _sizes(x, sizes)
    xi = x.permute(0, 3, 1, 2).to(torch.int32)
    yi = y.permute(0, 3, 1, 2).to(torch.int32)
    planes = torch.cat([xi, yi, xi * xi, yi * yi, xi * yi], dim=1)  # (N, 5C, H, W), exact in int32
    sums = _window_sums(planes, heights, widths, win_size // 2).to(dtype)
    np_ = float(win_size * win_size)
    ux, uy, uxx, uyy, uxy = (sums[:, i * c:(i + 1) * c] / np_ for i in range(5))
    cov_norm = np_ / (np_ - 1.0)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    s = s.permute(0, 2, 3, 1)
    return s[0] if single else s


def ssim_diff(x: torch.Tensor, y: torch.Tensor, sizes=None, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Selim's difference mask: uint8 grey ``(N, H, W)`` (or ``(H, W)``) of
    ``uint8((1 - SSIM map) * 255)`` of RGB images ``x``, ``y`` (see the module doc);
    zero outside each item's size."""
    s = ssim_map(x, y, sizes, dtype=dtype)
    single = s.dim() == 3
    if single:
        s = s[None]
    v = torch.trunc((1.0 - s) * 255.0).to(torch.int64) & 255  # NumPy's float -> uint8 cast
    r, g, b = v.unbind(-1)
    gray = (r * GRAY_FIXED[0] + g * GRAY_FIXED[1] + b * GRAY_FIXED[2] + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT
    heights, widths = _sizes(gray[..., None], sizes)
    n, h, w = gray.shape
    inside = (torch.arange(h, device=gray.device)[None, :, None] < heights[:, None, None]) & \
             (torch.arange(w, device=gray.device)[None, None, :] < widths[:, None, None])
    out = torch.where(inside, gray, torch.zeros_like(gray)).to(torch.uint8)
    return out[0] if single else out


def ssim_diff_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Selim's ``generate_diffs.py`` on one RGB pair with skimage and OpenCV (the oracle of
    the tests and the benchmark; needs scikit-image and opencv)."""
    import cv2
    from skimage.metrics import structural_similarity

    _, s = structural_similarity(x, y, channel_axis=-1, full=True, data_range=255)
    diff = ((1 - s) * 255).astype(np.uint8)
    return cv2.cvtColor(diff, cv2.COLOR_RGB2GRAY)


__all__ = ["ssim_map", "ssim_diff", "ssim_diff_reference"]
