"""Crop-and-resize of many boxes at once with area averaging, from a summed-area table.

facenet-pytorch crops every candidate box with a Python loop and resizes it with
``F.interpolate(mode="area")``. Area resampling of a crop is a mean over rectangular
bins, and any rectangle's sum is four lookups in the image's summed-area table, so all
crops of a batch come out of one gather. Sums are integers (the frames are uint8), so
they are exact; the only difference from the loop is float rounding of the division.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def summed_area_table(images: torch.Tensor) -> torch.Tensor:
    """``(N, C, H+1, W+1)`` integer table with ``S[..., y, x] = images[..., :y, :x].sum()``.

    ``images`` holds integer values 0..255 (uint8 or float); int32 sums suffice up to about
    8 megapixels, larger frames use int64.
    """
    n, c, h, w = images.shape
    dtype = torch.int32 if h * w * 255 < 2**31 else torch.int64
    table = torch.zeros((n, c, h + 1, w + 1), dtype=dtype, device=images.device)
    table[:, :, 1:, 1:] = images.to(dtype).cumsum(2, dtype=dtype).cumsum(3, dtype=dtype)
    return table


def _bins(start: torch.Tensor, stop: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges of adaptive average pooling of ``[start, stop)`` into ``size`` bins: ``(M, size)`` each."""
    length = (stop - start)[:, None]
    i = torch.arange(size, device=start.device)[None, :]
    lo = start[:, None] + (i * length) // size
    hi = start[:, None] + ((i + 1) * length + size - 1) // size
    return lo, hi


def crop_resize_area(
    table: torch.Tensor,
    image_ids: torch.Tensor,
    y0: torch.Tensor,
    y1: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Crops ``[y0, y1) x [x0, x1)`` of images ``image_ids``, each area-resized to ``size x size``.

    Equivalent to ``F.interpolate(image[:, y0:y1, x0:x1][None], (size, size), mode="area")``
    per box. Crops must be non-empty and inside the image.

    Returns:
        float32 ``(M, C, size, size)``.
    """
    if image_ids.numel() == 0:
        return torch.zeros((0, table.shape[1], size, size), device=table.device)
    r0, r1 = _bins(y0, y1, size)
    c0, c1 = _bins(x0, x1, size)
    img = image_ids[:, None, None]

    def at(r, c):  # (M, size, size, C)
        return table[img, :, r[:, :, None], c[:, None, :]]

    sums = at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)
    area = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :]).to(torch.float32)
    return (sums.to(torch.float32) / area[..., None]).permute(0, 3, 1, 2).contiguous()


# ---- channels-last tables: the detector's path ----------------------------------------
#
# The detector keeps frames as uint8 (N, H, W, C) and builds one int32 table per frame
# with the channels last, so every lookup fetches the C values of a pixel together and
# the crops come out channels-last, the layout the nets run fastest in on a CPU. Means
# are ``sum / rows / cols``, the same two divisions as PyTorch's adaptive average pooling
# (``F.interpolate(mode="area")``), so the crops are bit-identical to it.


def integral_image(frames: torch.Tensor) -> torch.Tensor:
    """int32 ``(N, H+1, W+1, C)`` table of uint8 ``(N, H, W, C)`` frames: ``S[n, y, x] = frames[n, :y, :x].sum()``."""
    n, h, w, c = frames.shape
    if h * w * 255 >= 2**31:
        raise ValueError(f"frames of {h}x{w} are too large for an int32 table")
    padded = F.pad(frames, (0, 0, 1, 0, 1, 0))  # a zero row and column first: uint8, cheap
    return padded.cumsum(2, dtype=torch.int32).cumsum(1, dtype=torch.int32)


def crop_resize_area_nhwc(
    table: torch.Tensor,
    image_ids: torch.Tensor,
    y0: torch.Tensor,
    y1: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Crops ``[y0, y1) x [x0, x1)`` of frames ``image_ids`` of a channels-last ``table``, each
    area-resized to ``size x size``: float32 ``(M, size, size, C)``, bit-identical to
    ``F.interpolate(crop, (size, size), mode="area")`` per box. Crops must be non-empty
    and inside the frame. Four gathers of ``M * size * size`` pixels, no loop over boxes.
    """
    n, hp, wp, c = table.shape
    m = image_ids.shape[0]
    if m == 0:
        return torch.zeros((0, size, size, c), device=table.device)
    r0, r1 = _bins(y0, y1, size)
    c0, c1 = _bins(x0, x1, size)
    base = image_ids[:, None] * hp
    row0, row1 = (base + r0) * wp, (base + r1) * wp  # (M, size): first pixel of each bin edge's row
    flat = table.view(-1, c)

    def at(row, col):
        return flat.index_select(0, (row[:, :, None] + col[:, None, :]).reshape(-1)).view(m, size, size, c)

    sums = at(row1, c1) - at(row0, c1) - at(row1, c0) + at(row0, c0)
    kh = (r1 - r0).to(torch.float32)[:, :, None, None]
    kw = (c1 - c0).to(torch.float32)[:, None, :, None]
    return sums.to(torch.float32) / kh / kw
