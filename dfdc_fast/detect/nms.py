"""Non-maximum suppression by "intersection over minimum" (MTCNN's last stage), batched.

Greedy NMS keeps a box when no kept, higher-scoring box of its group overlaps it by more
than the threshold. Instead of a loop over boxes, ``keep`` is iterated as a whole:
``keep[i] = not any(keep[j] and j outranks i and overlap[j, i] > t)``. Starting from all
kept, after k rounds the k best boxes hold their final value, so the iteration reaches
the greedy answer, usually in two or three rounds.
"""
from __future__ import annotations

import torch


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the kept boxes, by decreasing score.

    Overlap is intersection over the smaller area, with the +1 pixel convention of the
    original MTCNN code (a box ``(x0, y0, x1, y1)`` covers ``x1 - x0 + 1`` columns).
    Boxes of different ``groups`` (frames) never suppress each other.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b, g = boxes[order], groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    overlap = iw * ih / torch.minimum(area[:, None], area[None, :])
    rank = torch.arange(n, device=boxes.device)
    # suppresses[j, i]: j outranks i, same group, overlap above threshold
    suppresses = (overlap > threshold) & (g[:, None] == g[None, :]) & (rank[:, None] < rank[None, :])
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for _ in range(n):
        new = ~(suppresses & keep[:, None]).any(0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def nms_padded_reference(boxes: torch.Tensor, valid: torch.Tensor, threshold: float, mode: str = "iou") -> torch.Tensor:
    """Pure-torch ``dfdc_fast.ops.nms_padded``: a loop over sets calling ``torchvision.ops.nms``
    ("iou") or :func:`nms_min` ("min") on each set's valid boxes.

    The detector uses it only when the native extension is missing (it reads every set's
    size on the host, so it is slow on a GPU); the tests use it as a second oracle.
    """
    from torchvision.ops import nms

    if mode not in ("iou", "min"):
        raise ValueError(f"mode must be one of ('iou', 'min'), got {mode!r}")
    keep = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    for b in range(boxes.shape[0]):
        idx = valid[b].nonzero().flatten()
        if idx.numel() == 0:
            continue
        sel = boxes[b, idx]
        sel = sel if sel.dtype in (torch.float32, torch.float64) else sel.float()
        rank = torch.arange(idx.numel(), 0, -1, device=boxes.device, dtype=sel.dtype)  # keeps the given order
        if mode == "iou":
            kept = nms(sel, rank, float(threshold))
        else:
            kept = nms_min(sel, rank, torch.zeros_like(idx), float(threshold))
        keep[b, idx[kept]] = True
    return keep
