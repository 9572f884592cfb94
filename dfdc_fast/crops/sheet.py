"""Contact sheet: one thumbnail per video with its tracks' boxes, to judge extraction at a glance."""
from __future__ import annotations

import torch
import torch.nn.functional as F

COLOURS = ["#ff4040", "#40c0ff", "#ffd020", "#40ff80", "#ff60ff", "#ffffff"]


def thumbnail(frame: torch.Tensor, boxes: torch.Tensor, labels: list[str], width: int = 320) -> torch.Tensor:
    """uint8 ``(3, h, width)`` on the CPU: ``frame`` (H, W, 3) downscaled, ``boxes`` (n, 4) drawn and labelled."""
    from torchvision.utils import draw_bounding_boxes

    h, w = frame.shape[:2]
    height = max(1, round(h * width / w))
    x = F.interpolate(frame.permute(2, 0, 1)[None].float(), size=(height, width), mode="area")
    x = x[0].round().clamp(0, 255).to(torch.uint8).cpu()
    if boxes.numel():
        b = (boxes.float().cpu() * torch.tensor([width / w, height / h] * 2)).round()
        x = draw_bounding_boxes(x, b, labels=labels, colors=[COLOURS[i % len(COLOURS)] for i in range(len(b))], width=2)
    return x


def write_contact_sheet(path: str, thumbs: list[torch.Tensor], columns: int = 4) -> None:
    """Tile thumbnails (3, h_i, w) into one PNG, padding each to the tallest."""
    from torchvision.utils import make_grid

    from dfdc_fast.crops.encode import write_jpeg

    if not thumbs:
        return
    height = max(t.shape[1] for t in thumbs)
    padded = [F.pad(t, (0, 0, 0, height - t.shape[1]), value=32) for t in thumbs]
    grid = make_grid(padded, nrow=columns, padding=4, pad_value=32)
    write_jpeg(path, grid.permute(1, 2, 0))  # .png: written as PNG
