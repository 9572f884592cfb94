"""Every window rule of the face crops, and the ``crop_resize`` rows that cut them.

A float box from the tracker or the detector becomes an integer window of the frame by
one of the seeds' rules, each ending in the one clamping rule, :func:`clamp_window`:

* :func:`int_box` -- truncate the origin, round the far edge (the Medics' and Selim's slicing);
* :func:`margin_box` -- grow by a fraction of the box on each side (Selim's third);
* :func:`grown_box` -- scale about the centre and truncate (NTechLab's 1.5x);
* :func:`square_window` -- where a window sits in its zero-padded square (the Medics' clips);
* :func:`letterbox_placement` -- isotropic resize to a side and centred zero padding (Selim's input);
* :func:`smallest_side_crop` -- shorter side to a size, centre crop or pad (NTechLab's input);
* :func:`reflect_rows` -- the reflected padding of NTechLab's frame model A (PadIfNeeded).

:func:`dfdc_fast.ops.roi_rows` writes the windows as ``crop_resize`` rows by the names of
:data:`dfdc_fast.ops.ROI_FIELDS`, so no caller places a column by its position.
"""
from __future__ import annotations

import numpy as np

from dfdc_fast.ops import out_extent, roi_rows  # noqa: F401 (the rows these windows become)



def clamp_window(x0: int, y0: int, x1: int, y1: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The one clamping rule: an integer window inside the frame and never empty (the origin
    at most one pixel before the far border, the far edge at least one pixel past it)."""
    x0, y0 = min(max(0, x0), width - 1), min(max(0, y0), height - 1)
    x1, y1 = min(width, max(x0 + 1, x1)), min(height, max(y0 + 1, y1))
    return x0, y0, x1, y1


def int_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer window ``[x0, x1) x [y0, y1)`` of a float box: truncate the origin, round the
    far edge (the seeds' slicing), clamped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return clamp_window(int(x0), int(y0), int(round(x1)), int(round(y1)), height, width)


def margin_box(box, margin: float, height: int, width: int) -> np.ndarray:
    """Float ``box`` (or ``(..., 4)`` boxes) grown by ``margin`` times its width/height on
    each side, held inside the frame; float32, so a crop's window is the same everywhere."""
    b = np.asarray(box, dtype=np.float32)
    dw, dh = (b[..., 2] - b[..., 0]) * np.float32(margin), (b[..., 3] - b[..., 1]) * np.float32(margin)
    return np.stack([np.maximum(b[..., 0] - dw, 0), np.maximum(b[..., 1] - dh, 0),
                     np.minimum(b[..., 2] + dw, np.float32(width)), np.minimum(b[..., 3] + dh, np.float32(height))],
                    -1).astype(np.float32)


def grown_box(box, mult: float, height: int, width: int) -> tuple[int, int, int, int]:
    """NTechLab's crop window: ``box`` scaled ``mult`` times about its centre, both edges
    truncated to integers (their ``int()``), clamped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = (x1 - x0) * mult, (y1 - y0) * mult
    gx0, gy0 = x0 + (x1 - x0) / 2 - w / 2, y0 + (y1 - y0) / 2 - h / 2
    return clamp_window(int(gx0), int(gy0), int(gx0 + w), int(gy0 + h), height, width)


def square_window(window: tuple, center: bool) -> tuple[int, int, int]:
    """``(side, ox, oy)``: the square a window is zero-padded to, and where the window sits
    in it (top left, the Medics' clips, or centred)."""
    x0, y0, x1, y1 = window
    cw, ch = x1 - x0, y1 - y0
    side = max(cw, ch)
    return (side, (side - cw) // 2, (side - ch) // 2) if center else (side, 0, 0)


def letterbox_placement(height, width, side: int):
    """``(out_w, out_h, dx, dy)`` of an image (or arrays of them) resized so its longer side
    is ``side`` and centred in a ``side`` square (Selim's isotropic resize and zero pad)."""
    h, w = np.asarray(height, dtype=np.int64), np.asarray(width, dtype=np.int64)
    scale = side / np.maximum(h, w)
    nh = np.maximum(1, np.round(h * scale)).astype(np.int64)
    nw = np.maximum(1, np.round(w * scale)).astype(np.int64)
    return nw, nh, (side - nw) // 2, (side - nh) // 2


def smallest_side_crop(window: tuple, min_size: int, crop: tuple) -> tuple[int, int, int, int]:
    """``(out_w, out_h, dx, dy)`` so that ``crop_resize`` resizes ``window`` to a shorter side
    of ``min_size`` (albumentations' SmallestMaxSize) and keeps its centre ``crop`` (height,
    width) (CenterCrop), in one call: the resized image is placed at a negative offset. A side
    shorter than the crop's is centred as PadIfNeeded centres it (the padding's top/left half
    rounded down); what fills that padding is the caller's (:func:`reflect_rows`)."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    scale = min_size / min(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    ch, cw = crop
    dx = (cw - nw) // 2 if nw < cw else -((nw - cw) // 2)
    dy = (ch - nh) // 2 if nh < ch else -((nh - ch) // 2)
    return nw, nh, dx, dy


def reflect_rows(start, length, size: int) -> np.ndarray:
    """``(n, size)`` source indices that fill a side of ``size`` pixels around the image that
    covers ``[start[i], start[i] + length[i])`` of it, by reflection without repeating the edge
    (OpenCV's BORDER_REFLECT_101, albumentations' PadIfNeeded default; numpy's "reflect").
    Inside the image each index is itself."""
    start = np.asarray(start, dtype=np.int64).reshape(-1, 1)
    length = np.asarray(length, dtype=np.int64).reshape(-1, 1)
    if (length < 1).any() or (start < 0).any() or (start + length > size).any():
        raise ValueError(f"images must lie inside the {size} pixels they are padded to")
    offset = np.arange(size, dtype=np.int64)[None, :] - start
    period = np.maximum(2 * (length - 1), 1)
    folded = np.abs(offset) % period
    folded = np.where(folded < length, folded, period - folded)
    return start + np.where(length == 1, 0, folded)


__all__ = ["clamp_window", "grown_box", "int_box", "letterbox_placement", "margin_box", "reflect_rows", "smallest_side_crop",
           "square_window"]
