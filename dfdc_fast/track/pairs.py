"""NTechLab's aligned track pairs: which FAKE track shows the same face as a REAL track.

A REAL video and a FAKE made from it show the same footage, so a face tracked in both
gives two tracks whose boxes overlap frame by frame. NTechLab paired a REAL track with the
first FAKE track (both with at least ``min_detections`` detections) whose IoU exceeds
``iou_threshold`` (0.5) on every frame both were detected on, keeping the span both cover;
each REAL track gets at most one FAKE track (``generate_aligned_tracks.py``).

The search is a loop over track pairs with a merge of their frame lists; it runs on the
host in numba (:func:`align_tracks`), with the pure-Python reference kept beside it
(:func:`align_tracks_python`, a transcription of NTechLab's dictionaries).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_DETECTIONS = 5
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class TrackPair:
    """REAL track ``real`` and FAKE track ``fake`` (indices into the lists given) align over
    the frames ``[start, stop)``."""

    real: int
    fake: int
    start: int
    stop: int


def _iou(a, b) -> float:
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    zero = np.float32(0)
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), zero) * max(min(a[3], b[3]) - max(a[1], b[1]), zero)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def align_tracks_python(real: Sequence[tuple], fake: Sequence[tuple], min_detections: int = MIN_DETECTIONS,
                        iou_threshold: float = IOU_THRESHOLD) -> list[TrackPair]:
    """The pure-Python reference of :func:`align_tracks` (same arguments, same result)."""
    pairs = []
    real_tracks = [(i, dict(zip(np.asarray(f).tolist(), np.asarray(b, dtype=np.float32))))
                   for i, (f, b) in enumerate(real) if len(f) >= min_detections]
    fake_tracks = [(j, dict(zip(np.asarray(f).tolist(), np.asarray(b, dtype=np.float32))))
                   for j, (f, b) in enumerate(fake) if len(f) >= min_detections]
    for i, r in real_tracks:
        for j, fk in fake_tracks:
            ious = [_iou(r[frame], box) for frame, box in fk.items() if frame in r]
            if ious and min(ious) > iou_threshold:
                pairs.append(TrackPair(i, j, max(min(r), min(fk)), min(max(r), max(fk)) + 1))
                break
    return pairs


def _flat(tracks: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frames = [np.asarray(f, dtype=np.int64).reshape(-1) for f, _ in tracks]
    boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for _, b in tracks]
    for f, b in zip(frames, boxes):
        if f.shape[0] != b.shape[0]:
            raise ValueError(f"a track has {f.shape[0]} frames but {b.shape[0]} boxes")
        if f.size > 1 and not (np.diff(f) > 0).all():
            raise ValueError("a track's frames must be strictly increasing")
    off = np.zeros(len(tracks) + 1, dtype=np.int64)
    off[1:] = np.cumsum([f.size for f in frames])
    cat_f = np.concatenate(frames) if frames else np.zeros(0, np.int64)
    cat_b = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    return cat_f, np.ascontiguousarray(cat_b), off


def align_tracks(real: Sequence[tuple], fake: Sequence[tuple], min_detections: int = MIN_DETECTIONS,
                 iou_threshold: float = IOU_THRESHOLD) -> list[TrackPair]:
    """Pair REAL tracks with FAKE tracks (numba).

    Args:
        real, fake: per track ``(frames, boxes)``: the frames it was detected on (sorted)
            and its ``(n, 4)`` boxes there.
    Returns:
        One :class:`TrackPair` per REAL track that found a FAKE track, in REAL track order.
    """
    from dfdc_fast.track._jit import align_kernel

    if not real or not fake:
        return []
    rf, rb, ro = _flat(real)
    ff, fb, fo = _flat(fake)
    match, start, stop = align_kernel(rf, rb, ro, ff, fb, fo, int(min_detections), float(iou_threshold))
    return [TrackPair(i, int(match[i]), int(start[i]), int(stop[i])) for i in range(len(real)) if match[i] >= 0]


__all__ = ["TrackPair", "align_tracks", "align_tracks_python", "MIN_DETECTIONS", "IOU_THRESHOLD"]
