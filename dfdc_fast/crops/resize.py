"""Resizing face crops to a model's input on the device (shared by training and inference)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dfdc_fast.crops.boxes import letterbox_placement


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
