"""numba kernels of the host-side tracking loops (compiled on first use, cached on disk).

Only loops that must stay on the CPU and cannot be vectorised live here: the IoU tracker
(each frame's matches depend on the tracks the frames before left open) and the pairing
of a REAL video's tracks with a FAKE video's. Their pure-Python references are
``dfdc_fast.track.iou.iou_tracks_python`` and ``dfdc_fast.track.pairs.align_tracks_python``;
the tests check both give the same result and ``benchmarks/recipes.py`` times them.
Arithmetic stays in float32 where the references use float32 numpy arrays, so
threshold comparisons agree exactly.
"""
from __future__ import annotations

try:
    import numba
except ImportError as exc:  # pragma: no cover - numba is pinned in requirements.txt
    raise ImportError("the IoU tracker and track pairing need numba: pip install numba (pinned in requirements.txt)") from exc
import numpy as np

njit = numba.njit(cache=True, nogil=True, error_model="numpy")  # numpy: x / 0 is inf, as the references


@njit
def _iou1(a, b):
    zero = np.float32(0.0)
    ix0 = max(a[0], b[0])
    iy0 = max(a[1], b[1])
    ix1 = min(a[2], b[2])
    iy1 = min(a[3], b[3])
    inter = max(ix1 - ix0, zero) * max(iy1 - iy0, zero)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union

@njit
def iou_kernel(boxes, scores, counts, positions, sigma_l, sigma_h, sigma_iou, min_detections):
    """Returns (det_track (F, K) int64: the track of each detection or -1; kept (T,) bool;
    number of tracks T)."""
    F, K = scores.shape
    det_track = np.full((F, K), -1, np.int64)
    cap = F * K + 1
    length = np.zeros(cap, np.int64)
    best = np.zeros(cap, np.float64)
    last_row = np.zeros(cap, np.int64)
    last_k = np.zeros(cap, np.int64)
    kept = np.zeros(cap, np.bool_)
    open_ids = np.empty(K + 1, np.int64)
    next_open = np.empty(2 * K + 2, np.int64)
    free = np.empty(K + 1, np.int64)
    n_open = 0
    n_tracks = 0
    for p in range(positions.shape[0]):
        f = positions[p]
        n = counts[f]
        n_free = 0
        for k in range(n):
            if scores[f, k] >= sigma_l:
                free[n_free] = k
                n_free += 1
        n_next = 0
        for o in range(n_open):
            t = open_ids[o]
            matched = False
            if n_free > 0:
                j_best = 0
                v_best = _iou1(boxes[last_row[t], last_k[t]], boxes[f, free[0]])
                for j in range(1, n_free):
                    v = _iou1(boxes[last_row[t], last_k[t]], boxes[f, free[j]])
                    if v > v_best:  # first maximum, as np.argmax
                        v_best, j_best = v, j
                if v_best >= sigma_iou:
                    k = free[j_best]
                    for j in range(j_best, n_free - 1):  # list.pop(j): order kept
                        free[j] = free[j + 1]
                    n_free -= 1
                    det_track[f, k] = t
                    length[t] += 1
                    last_row[t], last_k[t] = f, k
                    if scores[f, k] > best[t]:
                        best[t] = scores[f, k]
                    next_open[n_next] = t
                    n_next += 1
                    matched = True
            if not matched:
                kept[t] = best[t] >= sigma_h and length[t] >= min_detections
        for j in range(n_free):
            k = free[j]
            t = n_tracks
            n_tracks += 1
            det_track[f, k] = t
            length[t] = 1
            best[t] = scores[f, k]
            last_row[t], last_k[t] = f, k
            next_open[n_next] = t
            n_next += 1
        n_open = n_next
        for o in range(n_open):
            open_ids[o] = next_open[o]
    for o in range(n_open):
        t = open_ids[o]
        kept[t] = best[t] >= sigma_h and length[t] >= min_detections
    return det_track, kept[:n_tracks], n_tracks




@njit
def align_kernel(r_frames, r_boxes, r_off, f_frames, f_boxes, f_off, min_detections, threshold):
    """For each REAL track, the first FAKE track (each with >= min_detections detections)
    whose IoU exceeds ``threshold`` on every common frame (at least one). Tracks are
    slices ``[off[i], off[i+1])`` of the flat frame/box arrays, frames sorted.
    Returns (fake index or -1, span start, span stop) per real track."""
    nr = r_off.shape[0] - 1
    nf = f_off.shape[0] - 1
    match = np.full(nr, -1, np.int64)
    start = np.zeros(nr, np.int64)
    stop = np.zeros(nr, np.int64)
    for i in range(nr):
        a0, a1 = r_off[i], r_off[i + 1]
        if a1 - a0 < min_detections:
            continue
        for j in range(nf):
            b0, b1 = f_off[j], f_off[j + 1]
            if b1 - b0 < min_detections:
                continue
            p, q = a0, b0
            common = 0
            ok = True
            while p < a1 and q < b1:
                if r_frames[p] < f_frames[q]:
                    p += 1
                elif r_frames[p] > f_frames[q]:
                    q += 1
                else:
                    if not _iou1(r_boxes[p], f_boxes[q]) > threshold:
                        ok = False
                        break
                    common += 1
                    p += 1
                    q += 1
            if ok and common > 0:
                match[i] = j
                start[i] = max(r_frames[a0], f_frames[b0])
                stop[i] = min(r_frames[a1 - 1], f_frames[b1 - 1]) + 1
                break
    return match, start, stop
