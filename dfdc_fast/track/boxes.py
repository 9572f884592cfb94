"""Box geometry for tracks: interpolation over frames, padding and squaring.

Tracks are assembled on the host after the detections' one transfer, so these work on
numpy float32 arrays (``interpolate_boxes`` also on tensors of any device): the same
arithmetic everywhere, so a fake that reuses its original's keyframes gets bit-identical
boxes.
"""
from __future__ import annotations

import numpy as np
import torch


def interpolate_boxes_np(keyframes, key_boxes, start: int, stop: int, width: int = 4) -> np.ndarray:
    """float32 ``(stop - start, width)`` boxes for every frame of ``[start, stop)`` from boxes at
    sorted ``keyframes`` (numpy): linear between keyframes, held before the first and after
    the last. ``width`` 10 interpolates five landmarks the same way."""
    kf = np.asarray(keyframes, dtype=np.float32).reshape(-1)
    kb = np.asarray(key_boxes, dtype=np.float32).reshape(-1, width)
    frames = np.arange(start, stop, dtype=np.float32)
    if kf.size == 1:
        return np.repeat(kb, frames.size, axis=0)
    right = np.clip(np.searchsorted(kf, frames, side="right"), 1, kf.size - 1)
    left = right - 1
    w = np.clip((frames - kf[left]) / (kf[right] - kf[left]), 0, 1)[:, None].astype(np.float32)
    return (kb[left] * (1 - w) + kb[right] * w).astype(np.float32)


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


def pad_box(box: np.ndarray, pad: float) -> np.ndarray:
    """Grow ``(x0, y0, x1, y1)`` by ``pad`` times its width/height on each side."""
    box = np.asarray(box, dtype=np.float32)
    if pad == 0:
        return box
    w, h = box[2] - box[0], box[3] - box[1]
    return (box + np.array([-w, -h, w, h], dtype=np.float32) * np.float32(pad)).astype(np.float32)


def square_box(box: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Expand to a square of the longer side around the centre, shifted to stay in the frame.

    When the side exceeds a frame dimension the box spans that dimension and is no
    longer square (the cropper pads it instead).
    """
    box = np.asarray(box, dtype=np.float32)
    h_img, w_img = frame_size
    side = max(box[2] - box[0], box[3] - box[1])
    out = []
    for lo, hi, size in ((box[0], box[2], w_img), (box[1], box[3], h_img)):
        centre = (lo + hi) / np.float32(2)
        s = min(side, np.float32(size))
        start = min(max(centre - s / np.float32(2), np.float32(0)), np.float32(size) - s)
        out.append((start, start + s))
    (x0, x1), (y0, y1) = out
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def clip_box(box: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    h, w = frame_size
    box = np.asarray(box, dtype=np.float32)
    return np.minimum(np.maximum(box, 0), np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)
