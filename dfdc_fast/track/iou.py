"""NTechLab's alternative to the mask tracker: the IoU tracker of Bochinski et al. (2017).

Per sampled frame, each open track takes the remaining detection that overlaps its last
box most, if that IoU reaches ``sigma_iou``; a track that finds none is closed. Tracks are
kept when their best score reaches ``sigma_h`` and they have enough detections; faces
scoring under ``sigma_l`` are ignored. NTechLab used 0.3 / 0.9 / 0.3.

It runs on the host, on the few boxes per frame the detector returns. The loop is
sequential (each frame's matches depend on the tracks the previous frames left open), so
it cannot be vectorised; it is compiled with numba (``iou_tracks``) and kept in pure
Python as the reference (``iou_tracks_python``). ``benchmarks/recipes.py`` times both:
numba is kept because it is faster at every size measured, from one video's 50 samples up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class IouSettings:
    sigma_l: float = 0.3
    sigma_h: float = 0.9
    sigma_iou: float = 0.3


def box_iou_np(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with each of ``(n, 4)`` boxes (torchvision's convention)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def iou_tracks_python(
    boxes: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    positions: list[int],
    settings: IouSettings,
    min_detections: int,
) -> list[list[tuple[int, int]]]:
    """The pure-Python reference of :func:`iou_tracks` (same arguments, same result)."""
    boxes, scores, counts = np.asarray(boxes), np.asarray(scores), np.asarray(counts)
    open_tracks: list[dict] = []
    done: list[dict] = []

    def close(track):
        if track["best"] >= settings.sigma_h and len(track["dets"]) >= min_detections:
            done.append(track)

    for f in positions:
        n = int(counts[f])
        free = [k for k in range(n) if float(scores[f, k]) >= settings.sigma_l]
        still_open = []
        for track in open_tracks:
            if free:
                ious = box_iou_np(track["last"], boxes[f, free])
                j = int(np.argmax(ious))
                if float(ious[j]) >= settings.sigma_iou:
                    k = free.pop(j)
                    track["dets"].append((f, k))
                    track["last"] = boxes[f, k]
                    track["best"] = max(track["best"], float(scores[f, k]))
                    still_open.append(track)
                    continue
            close(track)
        for k in free:
            still_open.append({"dets": [(f, k)], "last": boxes[f, k], "best": float(scores[f, k])})
        open_tracks = still_open
    for track in open_tracks:
        close(track)
    done.sort(key=lambda t: t["dets"][0])
    return [t["dets"] for t in done]


def iou_tracks(
    boxes: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    positions: list[int],
    settings: IouSettings,
    min_detections: int,
) -> list[list[tuple[int, int]]]:
    """Group detections into tracks (numba; :func:`iou_tracks_python` is the reference).

    Args:
        boxes, scores, counts: the padded ``Detections`` arrays, on the host.
        positions: the rows (sampled frames) to track over, in time order; consecutive
            entries are consecutive samples, so a face missing from one closes its track.
        min_detections: NTechLab's ``t_min``.
    Returns:
        For each kept track, its ``(row, face)`` pairs in time order, tracks ordered by
        their first detection.
    """
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    if pos.size == 0 or scores.shape[1] == 0:
        return []
    from dfdc_fast.track._jit import iou_kernel

    # numba compares float32 scores with float64 thresholds exactly as Python's float() does
    det_track, kept, _ = iou_kernel(boxes, scores, counts, pos, float(settings.sigma_l), float(settings.sigma_h),
                                     float(settings.sigma_iou), int(min_detections))
    order = {int(r): i for i, r in enumerate(pos)}
    rows, ks = np.nonzero(det_track >= 0)
    members: dict[int, list] = {}
    for r, k in sorted(zip(rows.tolist(), ks.tolist()), key=lambda rk: (order.get(rk[0], -1), rk[1])):
        t = int(det_track[r, k])
        if kept[t]:
            members.setdefault(t, []).append((r, k))
    out = [members[t] for t in members]
    out.sort(key=lambda dets: dets[0])
    return out


__all__ = ["IouSettings", "box_iou_np", "iou_tracks", "iou_tracks_python"]
