"""Cropping on the frames' device: tensors in, tensors out."""
from __future__ import annotations

import torch
import torch.nn.functional as F

PAD_MODES = ("top_left", "center")


def _int_box(box: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box.tolist())
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(width, max(x0 + 1, int(round(x1)))), min(height, max(y0 + 1, int(round(y1))))
    return x0, y0, x1, y1


def clip(frames: torch.Tensor, box: torch.Tensor, size: int = 256, pad: str = "top_left") -> torch.Tensor:
    """A square face clip: ``box`` cropped from every frame, zero-padded to a square, resized.

    Args:
        frames: uint8 ``(T, H, W, 3)`` on any device.
        box: ``(x0, y0, x1, y1)`` in pixels of the frames.
        size: side of the output (the Medics: 256).
        pad: where the crop sits in its square: "top_left" (the Medics, padding right and
            bottom) or "center".
    Returns:
        uint8 ``(T, size, size, 3)`` on the frames' device.
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    t, h, w, _ = frames.shape
    x0, y0, x1, y1 = _int_box(box, h, w)
    crop = frames[:, y0:y1, x0:x1]
    ch, cw = crop.shape[1], crop.shape[2]
    side = max(ch, cw)
    square = torch.zeros((t, side, side, 3), dtype=frames.dtype, device=frames.device)
    oy, ox = ((side - ch) // 2, (side - cw) // 2) if pad == "center" else (0, 0)
    square[:, oy:oy + ch, ox:ox + cw] = crop
    if side == size:
        return square
    x = square.permute(0, 3, 1, 2).float()
    mode = "area" if side > size else "bilinear"
    x = F.interpolate(x, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def margin_box(box: torch.Tensor, margin: float, height: int, width: int) -> torch.Tensor:
    """Grow a box by ``margin`` times its width/height on each side, clamped to the frame (Selim: 1/3)."""
    x0, y0, x1, y1 = box.unbind(-1)
    dw, dh = (x1 - x0) * margin, (y1 - y0) * margin
    return torch.stack([(x0 - dw).clamp(min=0), (y0 - dh).clamp(min=0),
                        (x1 + dw).clamp(max=width), (y1 + dh).clamp(max=height)], -1)


def faces(frames: torch.Tensor, boxes: torch.Tensor, margin: float = 1 / 3) -> list[torch.Tensor]:
    """2D face crops: ``frames[i]`` cut at ``boxes[i]`` grown by ``margin`` on each side.

    Returns a list of uint8 ``(h_i, w_i, 3)`` views of the frames (sizes differ per face).
    """
    if frames.shape[0] != boxes.shape[0]:
        raise ValueError(f"{frames.shape[0]} frames but {boxes.shape[0]} boxes")
    h, w = frames.shape[1], frames.shape[2]
    grown = margin_box(boxes.to(torch.float32), margin, h, w)
    out = []
    for f, b in zip(frames, grown.cpu()):
        x0, y0, x1, y1 = _int_box(b, h, w)
        out.append(f[y0:y1, x0:x1])
    return out
