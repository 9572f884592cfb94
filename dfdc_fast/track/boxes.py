"""Box geometry for tracks: interpolation over frames, padding and squaring."""
from __future__ import annotations

import torch


def interpolate_boxes(keyframes: torch.Tensor, key_boxes: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Boxes for every frame of ``[start, stop)`` from boxes at sorted ``keyframes``.

    Each coordinate is interpolated linearly between the surrounding keyframes and held
    constant before the first and after the last one.

    Args:
        keyframes: int64 ``(n,)``, strictly increasing, ``n >= 1``.
        key_boxes: float ``(n, 4)`` on any device.
    Returns:
        float32 ``(stop - start, 4)`` on ``key_boxes.device``.
    """
    dev = key_boxes.device
    kf = keyframes.to(dev, torch.float32)
    kb = key_boxes.to(torch.float32)
    frames = torch.arange(start, stop, device=dev, dtype=torch.float32)
    if kf.numel() == 1:
        return kb.expand(frames.numel(), 4).clone()
    right = torch.searchsorted(kf, frames, right=True).clamp(1, kf.numel() - 1)
    left = right - 1
    w = ((frames - kf[left]) / (kf[right] - kf[left])).clamp(0, 1)[:, None]
    return kb[left] * (1 - w) + kb[right] * w


def pad_box(box: torch.Tensor, pad: float) -> torch.Tensor:
    """Grow ``(x0, y0, x1, y1)`` by ``pad`` times its width/height on each side."""
    if pad == 0:
        return box
    w, h = box[2] - box[0], box[3] - box[1]
    return box + torch.stack([-w, -h, w, h]) * pad


def square_box(box: torch.Tensor, frame_size: tuple[int, int]) -> torch.Tensor:
    """Expand to a square of the longer side around the centre, shifted to stay in the frame.

    When the side exceeds a frame dimension the box spans that dimension and is no
    longer square (the cropper pads it instead).
    """
    h_img, w_img = frame_size
    side = torch.maximum(box[2] - box[0], box[3] - box[1])
    out = []
    for lo, hi, size in ((box[0], box[2], w_img), (box[1], box[3], h_img)):
        centre = (lo + hi) / 2
        s = torch.clamp(side, max=float(size))
        start = torch.clamp(centre - s / 2, min=0.0, max=float(size) - s)
        out.append((start, start + s))
    (x0, x1), (y0, y1) = out
    return torch.stack([x0, y0, x1, y1])


def clip_box(box: torch.Tensor, frame_size: tuple[int, int]) -> torch.Tensor:
    h, w = frame_size
    lim = torch.tensor([w, h, w, h], dtype=box.dtype, device=box.device)
    return torch.minimum(box.clamp(min=0), lim)
