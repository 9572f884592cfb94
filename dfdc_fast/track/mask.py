"""The face-presence volume of the Medics' tracker: boxes drawn into a (time, y, x) mask.

Each sampled frame is one time slice; every face box is a filled rectangle at reduced
resolution (1/8 of full resolution by default, as the Medics used). Faces that touch
from one slice to the next become one connected component, that is one person.
"""
from __future__ import annotations

import math

import torch

from dfdc_fast.detect.types import Detections


def grid_size(frame_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Height and width of the mask for a full-resolution ``(height, width)``."""
    h, w = frame_size
    return max(1, math.ceil(h * scale)), max(1, math.ceil(w * scale))


def box_cells(boxes: torch.Tensor, scale: float, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Mask cells ``(y0, y1, x0, x1)``, half-open, covered by full-resolution boxes ``(..., 4)``.

    Coordinates are rounded to the nearest cell edge; every box covers at least one cell,
    so a small face is never lost (the Medics' integer truncation could drop it).
    """
    gh, gw = grid_hw
    c = torch.round(boxes * scale).to(torch.int64)
    x0 = c[..., 0].clamp(0, gw - 1)
    y0 = c[..., 1].clamp(0, gh - 1)
    x1 = torch.maximum(c[..., 2].clamp(max=gw), x0 + 1)
    y1 = torch.maximum(c[..., 3].clamp(max=gh), y0 + 1)
    return torch.stack([y0, y1, x0, x1], dim=-1)


def draw_mask(detections: Detections, scale: float) -> torch.Tensor:
    """bool ``(F, Hm, Wm)`` on the detections' device, one slice per sampled frame.

    Rectangles are painted for all frames and faces at once as a product of row and
    column indicator vectors (a batched matmul), so there is no loop over boxes.
    """
    grid = grid_size(detections.frame_size, scale)
    dev = detections.device
    cells = box_cells(detections.boxes, scale, grid)  # (F, K, 4)
    valid = detections.valid
    rows = torch.arange(grid[0], device=dev)
    cols = torch.arange(grid[1], device=dev)
    in_rows = (rows >= cells[..., 0:1]) & (rows < cells[..., 1:2]) & valid[..., None]  # (F, K, Hm)
    in_cols = (cols >= cells[..., 2:3]) & (cols < cells[..., 3:4])  # (F, K, Wm)
    covered = torch.bmm(in_rows.transpose(1, 2).float(), in_cols.float())  # (F, Hm, Wm)
    return covered > 0


GAP_FILLS = ("slice", "pixel", "none")


def fill_gaps(mask: torch.Tensor, mode: str = "slice") -> torch.Tensor:
    """Bridge single missed detections with the overlap of the neighbouring slices.

    ``mask`` is ``(..., S, Hm, Wm)``; the first and last slices are never filled.

    * ``"slice"``: the Medics' rule. Only a slice with no face at all is filled, so with two
      people on screen a missed detection of one of them still splits that person's
      track. Using the unfilled neighbours gives the same result as their in-order loop,
      because a slice filled next to an empty one stays empty.
    * ``"pixel"``: every slice gains the overlap of its neighbours, so a single missed
      detection is bridged whatever else is on screen.
    * ``"none"``: no filling.
    """
    if mode not in GAP_FILLS:
        raise ValueError(f"gap fill must be one of {GAP_FILLS}, got {mode!r}")
    if mode == "none" or mask.shape[-3] < 3:
        return mask
    overlap = mask[..., :-2, :, :] & mask[..., 2:, :, :]
    out = mask.clone()
    if mode == "pixel":
        out[..., 1:-1, :, :] |= overlap
        return out
    empty = ~mask.flatten(-2).any(-1)  # (..., S)
    out[..., 1:-1, :, :] = torch.where(empty[..., 1:-1, None, None], overlap, mask[..., 1:-1, :, :])
    return out
