"""Every scale of a frame's image pyramid packed into one canvas, so P-Net runs once per
batch of frames instead of once per scale (a dozen forwards of ~11 kernels each).

P-Net is fully convolutional: its output cell ``(i, j)`` sees the input pixels
``[2i, 2i + 12) x [2j, 2j + 12)`` (3x3 conv, 2x2 max-pool of stride 2, two 3x3 convs).
An image pasted at an even offset ``(y, x)`` of a larger canvas therefore has its cells
at ``(y / 2 + i, x / 2 + j)`` with exactly the values it has alone, except where
facenet-pytorch's pool (``ceil_mode=True``) has a partial window: when the first conv's
output has an odd number of rows (columns), the last window alone covers one row, and
in the canvas it would also cover a row computed from pixels outside the image. Those
"spill" positions of the first conv's output are set to ``-inf`` before pooling
(:attr:`PyramidLayout.spill`), which makes the window's max that of the real row alone.
Cells whose window crosses out of their image are never read: candidates are gathered
from each scale's own cells (:attr:`PyramidLayout.cells`).

Images are placed by a bottom-left skyline packer at even offsets; the canvas width is
the one, of a few tried, with the smallest area (about 1.1-1.3x the pyramid's own area).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


def pyramid_scales(h: int, w: int, min_face_size: float, factor: float) -> list[float]:
    """facenet-pytorch's pyramid: from ``12 / min_face_size`` down by ``factor`` while the
    shorter side stays at least 12 pixels."""
    m = 12.0 / min_face_size
    side = min(h, w) * m
    scales, s = [], m
    while side >= 12:
        scales.append(s)
        s *= factor
        side *= factor
    return scales


def pnet_output_size(n: int) -> int:
    """P-Net's output cells along a side of ``n`` input pixels (conv 3, ceil pool 2, conv 3, conv 3)."""
    return max(0, -(-(n - 2) // 2) - 4)


@dataclass(frozen=True)
class PyramidLayout:
    """Where each scale of an ``h x w`` frame sits in the canvas P-Net sees."""

    scales: tuple[float, ...]
    #: per scale, the size facenet-pytorch resizes to: ``(int(h * s + 1), int(w * s + 1))``
    sizes: tuple[tuple[int, int], ...]
    #: per scale, the top-left corner in the canvas (even)
    offsets: tuple[tuple[int, int], ...]
    canvas: tuple[int, int]
    #: per scale, P-Net's output cells ``(rows, cols)``
    cells_shape: tuple[tuple[int, int], ...]

    @property
    def out_shape(self) -> tuple[int, int]:
        """P-Net's output map on the canvas."""
        return pnet_output_size(self.canvas[0]), pnet_output_size(self.canvas[1])

    @property
    def width(self) -> int:
        """Cells of the largest scale: the padded width of the per-scale candidate rows."""
        return max(r * c for r, c in self.cells_shape)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """``(S, width)`` flat index of each scale's cells in the canvas output map, in
        raster order (facenet-pytorch's candidate order), and which entries are cells (the
        rest is padding, index 0)."""
        _, ow = self.out_shape
        index = np.zeros((len(self.scales), self.width), dtype=np.int64)
        live = np.zeros(index.shape, dtype=bool)
        for s, ((y, x), (rows, cols)) in enumerate(zip(self.offsets, self.cells_shape)):
            r, c = np.divmod(np.arange(rows * cols), cols)
            index[s, :rows * cols] = (y // 2 + r) * ow + x // 2 + c
            live[s, :rows * cols] = True
        return index, live

    def spill(self) -> np.ndarray:
        """``(H - 2, W - 2)`` positions of the first conv's output to set to ``-inf`` before
        the pool: the row (column) after an image's last one when that image's first-conv
        output is odd, so the canvas's full window equals the image's partial one."""
        ch, cw = self.canvas[0] - 2, self.canvas[1] - 2
        mask = np.zeros((ch, cw), dtype=bool)
        for (y, x), (hs, ws) in zip(self.offsets, self.sizes):
            if (hs - 2) % 2 and y + hs - 2 < ch:
                mask[y + hs - 2, x:min(x + ws - 1, cw)] = True
            if (ws - 2) % 2 and x + ws - 2 < cw:
                mask[y:min(y + hs - 1, ch), x + ws - 2] = True
        return mask


def _even(n: int) -> int:
    return n + (n & 1)


def _skyline_pack(rects: list[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], int]:
    """Bottom-left placement of ``(h, w)`` rectangles (in the given order) in a strip of
    ``width``: their ``(y, x)`` and the strip's height. Rectangles sizes are even, so
    every offset is."""
    sky = [(0, width, 0)]  # segments (x, w, top)
    places = []
    for h, w in rects:
        best = None
        for i, (x, _, _) in enumerate(sky):
            if x + w > width:
                break
            top, j = 0, i
            while sky[j][0] < x + w:  # the segments under [x, x + w)
                top = max(top, sky[j][2])
                j += 1
                if j == len(sky):
                    break
            if best is None or (top, x) < best[:2]:
                best = (top, x, i)
        top, x, _ = best
        places.append((top, x))
        new, end = [], x + w
        for sx, sw, st in sky:
            a, b = sx, sx + sw
            if b <= x or a >= end:
                new.append((sx, sw, st))
                continue
            if a < x:
                new.append((a, x - a, st))
            if b > end:
                new.append((end, b - end, st))
        new.append((x, w, top + h))
        new.sort()
        merged = []
        for seg in new:
            if merged and merged[-1][2] == seg[2] and merged[-1][0] + merged[-1][1] == seg[0]:
                merged[-1] = (merged[-1][0], merged[-1][1] + seg[1], seg[2])
            else:
                merged.append(seg)
        sky = merged
    return places, max(t for _, _, t in sky)


@functools.lru_cache(maxsize=64)
def pyramid_layout(h: int, w: int, min_face_size: float, factor: float) -> PyramidLayout | None:
    """The packed pyramid of an ``h x w`` frame, or None when it has no scale (too small)."""
    scales = pyramid_scales(h, w, min_face_size, factor)
    if not scales:
        return None
    sizes = [(int(h * s + 1), int(w * s + 1)) for s in scales]
    rects = [(_even(a), _even(b)) for a, b in sizes]
    best = None
    widest = rects[0][1]
    for extra in [0] + [r[1] for r in rects[1:4]]:
        places, height = _skyline_pack(rects, widest + extra)
        # the canvas ends where the images do (no padding after them, so an image at the
        # edge keeps its own ceil-mode window)
        ch = max(y + a for (y, _), (a, _) in zip(places, sizes))
        cw = max(x + b for (_, x), (_, b) in zip(places, sizes))
        if best is None or ch * cw < best[0]:
            best = (ch * cw, places, (ch, cw))
    _, places, canvas = best
    shapes = tuple((pnet_output_size(a), pnet_output_size(b)) for a, b in sizes)
    return PyramidLayout(scales=tuple(scales), sizes=tuple(sizes), offsets=tuple(places), canvas=canvas,
                         cells_shape=shapes)


__all__ = ["PyramidLayout", "pnet_output_size", "pyramid_layout", "pyramid_scales"]
