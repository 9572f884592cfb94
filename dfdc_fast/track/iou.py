"""NTechLab's alternative to the mask tracker: the IoU tracker of Bochinski et al. (2017).

Per sampled frame, each open track takes the remaining detection that overlaps its last
box most, if that IoU reaches ``sigma_iou``; a track that finds none is closed. Tracks are
kept when their best score reaches ``sigma_h`` and they have enough detections; faces
scoring under ``sigma_l`` are ignored. NTechLab used 0.3 / 0.9 / 0.3.

It runs on the host, on the few boxes per frame the detector returns (numpy arrays).
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


def iou_tracks(
    boxes: np.ndarray,
    scores: np.ndarray,
    counts: np.ndarray,
    positions: list[int],
    settings: IouSettings,
    min_detections: int,
) -> list[list[tuple[int, int]]]:
    """Group detections into tracks.

    Args:
        boxes, scores, counts: the padded ``Detections`` arrays, on the host.
        positions: the rows (sampled frames) to track over, in time order; consecutive
            entries are consecutive samples, so a face missing from one closes its track.
        min_detections: NTechLab's ``t_min``.
    Returns:
        For each kept track, its ``(row, face)`` pairs in time order.
    """
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
