"""Resizing face crops to a model's input on the device (shared by training and inference)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dfdc_fast.crops.boxes import letterbox_placement, reflect_rows
from dfdc_fast.runtime import to_device


def letterbox(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` resized so its longer side is ``size`` and zero-padded to a centred
    square (Selim's isotropic resize + pad), area filter down, bicubic up."""
    h, w = image.shape[:2]
    nw, nh, left, top = (int(v) for v in letterbox_placement(h, w, size))
    shrink = size < max(h, w)
    x = image.permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(nh, nw), mode="area" if shrink else "bicubic", align_corners=None if shrink else False)
    out = torch.zeros((3, size, size), dtype=torch.uint8, device=image.device)
    out[:, top:top + nh, left:left + nw] = x[0].round().clamp(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0)


def reflect_pad(images: torch.Tensor, placed: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` images whose picture was placed at ``placed[i] = (dx, out_w, dy,
    out_h)`` (``crop_resize``'s ``at`` and ``out``; the rest zero) with that rest filled by
    reflection without repeating the edge, as albumentations' PadIfNeeded fills it
    (NTechLab's frame model A). Two gathers on the images' device; the indices are made on
    the host from the placements, which the host chose, so nothing is read back."""
    n, h, w = images.shape[:3]
    placed = np.asarray(placed, dtype=np.int64).reshape(n, 4)
    dx, nw, dy, nh = placed.T
    x0, y0 = np.clip(dx, 0, w), np.clip(dy, 0, h)
    cols = reflect_rows(x0, np.minimum(dx + nw, w) - x0, w)
    rows = reflect_rows(y0, np.minimum(dy + nh, h) - y0, h)
    rows, cols = to_device(rows, images.device), to_device(cols, images.device)
    out = images.gather(1, rows[:, :, None, None].expand(n, h, w, 3))
    return out.gather(2, cols[:, None, :, None].expand(n, h, w, 3))
