"""``track_faces``: from per-frame face detections to one ``FaceTrack`` per person.

The default method is the Medics' (seed ``000_…``): boxes of the sampled frames are drawn
into a 3D mask at 1/8 resolution, single missed detections are bridged, and the mask is
labelled with the native ``label3d`` op; every connected component is one person, and
because a component must persist over several samples, one-off false positives vanish.
``method="iou"`` is NTechLab's IoU tracker instead.

The mask and its labelling stay on the detections' device. The tracks themselves are a
few numbers per person, assembled on the host (numpy) after one small transfer; boxes
are returned on the detections' device unless ``device=`` says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch

from dfdc_fast.detect.types import Detections
from dfdc_fast.ops import CONNECTIVITIES, label3d
from dfdc_fast.runtime import fetch, to_device
from dfdc_fast.track.boxes import clip_box, interpolate_boxes_np, pad_box, square_box
from dfdc_fast.track.iou import IouSettings, box_iou_np, iou_tracks
from dfdc_fast.track.mask import GAP_FILLS, box_cells, draw_mask, fill_gaps
from dfdc_fast.track.types import FaceTrack

METHODS = ("mask", "iou")
ORDERS = ("time", "score")


@dataclass
class TrackConfig:
    """Settings of ``track_faces``; defaults are the Medics' training export."""

    #: "mask" (3D connected components, the Medics) or "iou" (NTechLab's IoU tracker).
    method: str = "mask"
    #: Mask resolution relative to the full frame (the Medics: 0.5 detection scale / 4).
    scale: float = 1 / 8
    #: Neighbourhood of label3d: 26 (skimage's default, what the Medics used), 18 or 6.
    connectivity: int = 26
    #: Bridging of single missed detections (mask method): "slice" fills a sampled frame
    #: with no face at all (the Medics), "pixel" also bridges one person's miss while
    #: others are on screen, "none" does not fill.
    fill_gaps: str = "slice"
    #: A track must span at least this many consecutive samples (the Medics: 4).
    min_detections: int = 4
    #: ...and at least this many frames (the Medics: 30).
    min_frames: int = 30
    #: Tracks longer than this are cut (300 for export, 100 at the Medics' inference).
    max_frames: int = 300
    #: Tracks with fewer frames are kept but flagged ``too_short`` for 3D training (64).
    min_clip_frames: int = 64
    #: Track each run of this many frames on its own, each with its own box (the
    #: Medics used 150: a smaller box, so a bigger face). None: the whole video at once.
    chunk_size: Optional[int] = None
    #: Grow the union box by this fraction of its size on each side.
    pad: float = 0.0
    #: Make the union box square (longer side, centred, kept inside the frame).
    square: bool = False
    #: "time" (first appearance, then top-left first) or "score" (best mean score first).
    order: str = "time"
    #: Keep at most this many tracks per chunk, after ordering. None keeps all.
    max_faces: Optional[int] = None
    #: Sampling step in frames; None infers it from the detections' frame indices.
    frame_step: Optional[int] = None
    #: Thresholds of the IoU tracker.
    iou: IouSettings = field(default_factory=IouSettings)
    #: A track continues an earlier track's person (``FaceTrack.person``) when its first
    #: detection overlaps that person's last detection by this IoU or more and the two do not
    #: overlap in time (a chunk boundary, or a gap the tracker did not bridge). None: every
    #: track is a person of its own.
    link_iou: Optional[float] = 0.3

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.fill_gaps not in GAP_FILLS:
            raise ValueError(f"fill_gaps must be one of {GAP_FILLS}, got {self.fill_gaps!r}")
        if self.connectivity not in CONNECTIVITIES:
            raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {self.connectivity!r}")
        if not 0 < self.scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {self.scale}")
        for name in ("min_detections", "min_frames", "max_frames", "min_clip_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunk_size", "max_faces", "frame_step"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if self.link_iou is not None and not 0 < self.link_iou <= 1:
            raise ValueError(f"link_iou must be in (0, 1] or None, got {self.link_iou}")
        if isinstance(self.iou, dict):
            self.iou = IouSettings(**self.iou)


def track_faces(
    detections: Detections,
    video_shape: Optional[Sequence[int]] = None,
    config: Optional[TrackConfig] = None,
    *,
    device: torch.device | str | None = None,
    **overrides,
) -> list[FaceTrack]:
    """Group the faces of one video into tracks, one per person (per chunk).

    Args:
        detections: faces on the sampled frames, on any device.
        video_shape: ``(num_frames, height, width[, 3])`` of the full video, as in
            ``Video.frames.shape`` (its size must match ``detections.frame_size``). None
            ends the video one sampling step after the last sampled frame.
        config: a :class:`TrackConfig`; keyword ``overrides`` replace its fields.
        device: where the tracks' ``box``/``boxes`` tensors are put (default: the
            detections' device).

    Returns:
        The kept tracks in the configured order, ``track_id`` numbering them 0..n-1 and
        ``person`` naming the person each shows (the same person across chunks, see
        :func:`link_persons`). An empty list means no face persisted long enough (status
        ``no_face``).

    The mask and its labelling run on the detections' device; what the host needs
    (each detection's component, boxes, scores) comes back in one transfer, so a call
    costs one host sync whatever the number of frames and faces.
    """
    cfg = replace(config or TrackConfig(), **overrides) if overrides else (config or TrackConfig())
    if len(detections) == 0:
        return []
    fi = detections.frame_indices.numpy()  # on the host by contract
    step = cfg.frame_step or _infer_step(fi)
    num_frames = _num_frames(video_shape, detections, fi, step)
    device = torch.device(device) if device is not None else detections.device

    chunk_of = fi // cfg.chunk_size if cfg.chunk_size else np.zeros_like(fi)
    chunks = sorted(set(chunk_of.tolist()))
    rows_of = {c: np.flatnonzero(chunk_of == c) for c in chunks}

    if cfg.method == "mask":
        groups, boxes, scores, landmarks = _mask_groups(detections, cfg, chunks, rows_of)
    else:
        extra = (detections.landmarks,) if detections.landmarks is not None else ()
        boxes, scores, counts, *rest = fetch(detections.boxes, detections.scores, detections.counts, *extra)
        landmarks = rest[0] if rest else None
        groups = {c: iou_tracks(boxes, scores, counts, rows_of[c].tolist(), cfg.iou, cfg.min_detections)
                  for c in chunks}

    tracks: list[FaceTrack] = []
    ends: dict[int, tuple] = {}  # id(track) -> its first and last detection box, on the host
    for c in chunks:
        chunk_end = (c + 1) * cfg.chunk_size if cfg.chunk_size else num_frames
        position = {int(row): i for i, row in enumerate(rows_of[c])}
        built = []
        for g in groups[c]:
            made = _build_track(g, c, fi, boxes, scores, position, step, min(chunk_end, num_frames), cfg,
                                detections.frame_size, device, landmarks)
            if made is not None:
                built.append(made[0])
                ends[id(made[0])] = made[1]
        if cfg.order == "score":
            built.sort(key=lambda t: -t.score)  # stable: ties keep time order
        tracks.extend(built[: cfg.max_faces] if cfg.max_faces else built)
    for i, t in enumerate(tracks):
        t.track_id = i
    link_persons(tracks, cfg.link_iou, ends=[ends[id(t)] for t in tracks])  # host boxes: no device sync
    return tracks


def link_persons(tracks: list[FaceTrack], min_iou: Optional[float] = 0.3, *,
                 ends: Optional[list] = None) -> list[FaceTrack]:
    """Set ``person`` on each track (in place; returns ``tracks``).

    A track continues a person when its first detection's box overlaps that person's last
    detection's box by ``min_iou`` or more, and the person's tracks all end before this one
    starts: with chunks, the track of chunk ``c + 1`` that starts where the person's track of
    chunk ``c`` left off. The boxes compared are detections (keyframe boxes), not the padded
    union boxes. Tracks starting at the same frame are matched one to one, best overlap
    first, so two people side by side stay two. Persons are numbered 0.. in order of their
    first track in ``tracks``. ``min_iou=None``: each track is its own person.
    ``ends``: each track's (first, last) detection box as host arrays, when the caller has
    them (``track_faces`` does); without it they are read from ``boxes``, a device-to-host
    copy per track when the tracks live on a GPU.
    """
    if min_iou is None:
        for i, t in enumerate(tracks):
            t.person = i
        return tracks
    if ends is None:
        ends = [(_box_at(t, int(t.keyframes[0])), _box_at(t, int(t.keyframes[-1]))) if t.num_detections
                else (t.boxes[0].cpu().numpy(), t.boxes[-1].cpu().numpy()) for t in tracks]
    first_box = [np.asarray(e[0], dtype=np.float32) for e in ends]
    last_box = [np.asarray(e[1], dtype=np.float32) for e in ends]
    label = [-1] * len(tracks)
    people: list[dict] = []  # {"box": last detection, "until": frame after its last track}
    order = sorted(range(len(tracks)), key=lambda i: (tracks[i].start, i))
    k = 0
    while k < len(order):  # tracks starting at one frame form a group, matched one to one
        group = [i for i in order[k:] if tracks[i].start == tracks[order[k]].start]
        k += len(group)
        pairs = []
        for i in group:
            for p, person in enumerate(people):
                if person["until"] <= tracks[i].start:
                    iou = float(box_iou_np(person["box"], first_box[i][None])[0])
                    if iou >= min_iou:
                        pairs.append((-iou, i, p))
        taken = set()
        for _, i, p in sorted(pairs):
            if label[i] < 0 and p not in taken:
                label[i] = p
                taken.add(p)
        for i in group:
            if label[i] < 0:
                label[i] = len(people)
                people.append({"box": None, "until": 0})
            people[label[i]].update(box=last_box[i], until=max(people[label[i]]["until"], tracks[i].stop))
    first_seen: dict[int, int] = {}
    for i, t in enumerate(tracks):  # number people by their first track in list order
        t.person = first_seen.setdefault(label[i], len(first_seen))
    return tracks


def _box_at(track: FaceTrack, frame: int) -> np.ndarray:
    return track.boxes[frame - track.start].detach().cpu().numpy().astype(np.float32)


def _infer_step(fi: np.ndarray) -> int:
    if fi.size < 2:
        return 1
    return int(np.diff(fi).min())


def _num_frames(video_shape, detections: Detections, fi: np.ndarray, step: int) -> int:
    last = int(fi[-1])
    if video_shape is None:
        return last + step
    n, h, w = (int(v) for v in tuple(video_shape)[:3])
    if (h, w) != tuple(detections.frame_size):
        raise ValueError(f"video_shape {tuple(video_shape)} does not match the detections' frame size {detections.frame_size}")
    if last >= n:
        raise ValueError(f"detections reach frame {last} but the video has {n} frames")
    return n


def _mask_groups(detections: Detections, cfg: TrackConfig, chunks: list[int], rows_of: dict):
    """Label the chunks' masks in one batched call; group detections by component."""
    dev = detections.device
    slices = draw_mask(detections, cfg.scale)  # (F, Hm, Wm)
    F = len(detections)
    batch_of = np.empty(F, dtype=np.int64)
    slot_of = np.empty(F, dtype=np.int64)
    for b, c in enumerate(chunks):
        rows = rows_of[c]
        batch_of[rows] = b
        slot_of[rows] = np.arange(len(rows))
    depth = max(len(rows_of[c]) for c in chunks)
    volume = torch.zeros((len(chunks), depth, *slices.shape[1:]), dtype=torch.bool, device=dev)
    b_dev, s_dev = to_device(batch_of, dev), to_device(slot_of, dev)
    volume[b_dev, s_dev] = slices
    volume = fill_gaps(volume, cfg.fill_gaps)
    labels, _ = label3d(volume, cfg.connectivity)

    # Every box is a filled rectangle, so one of its cells names its component.
    cells = box_cells(detections.boxes, cfg.scale, tuple(slices.shape[1:]))
    det_label = labels[b_dev[:, None], s_dev[:, None], cells[..., 0], cells[..., 2]]
    det_label = torch.where(detections.valid, det_label, torch.zeros_like(det_label))

    extra = (detections.landmarks,) if detections.landmarks is not None else ()
    det_label, boxes, scores, *rest = fetch(det_label, detections.boxes, detections.scores, *extra)  # the one sync
    landmarks = rest[0] if rest else None
    groups = {}
    for c in chunks:
        rows = rows_of[c]
        lab = det_label[rows]
        members: dict[int, list[tuple[int, int]]] = {}
        for r, k in zip(*np.nonzero(lab > 0)):  # row-major: time order within a component
            members.setdefault(int(lab[r, k]), []).append((int(rows[r]), int(k)))
        groups[c] = [members[l] for l in sorted(members)]  # label order = raster order of first voxel
    return groups, boxes, scores, landmarks


def _build_track(
    dets: list[tuple[int, int]],
    chunk: int,
    fi: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    position: dict[int, int],
    step: int,
    end: int,
    cfg: TrackConfig,
    frame_size: tuple[int, int],
    device: torch.device,
    landmarks: Optional[np.ndarray] = None,
) -> Optional[tuple[FaceTrack, tuple[np.ndarray, np.ndarray]]]:
    """The track of one group of detections and its first and last detection boxes (host),
    or None when it is too short to keep."""
    rows = sorted({r for r, _ in dets})
    if position[rows[-1]] - position[rows[0]] + 1 < cfg.min_detections:
        return None
    start = int(fi[rows[0]])
    stop = min(int(fi[rows[-1]]) + step, end, start + cfg.max_frames)
    if stop - start < max(cfg.min_frames, 1):
        return None
    dets = [(r, k) for r, k in dets if int(fi[r]) < stop]
    rows = [r for r in rows if int(fi[r]) < stop]

    # Per sampled frame the best-scoring face of the track is its keyframe box.
    best: dict[int, int] = {}
    for r, k in dets:
        if r not in best or scores[r, k] > scores[r, best[r]]:
            best[r] = k
    keyframes = fi[rows]
    key_boxes = np.stack([boxes[r, best[r]] for r in rows]).astype(np.float32)

    all_boxes = np.stack([boxes[r, k] for r, k in dets]).astype(np.float32)
    union = np.concatenate([all_boxes[:, :2].min(0), all_boxes[:, 2:].max(0)])
    union = pad_box(union, cfg.pad)
    if cfg.square:
        union = square_box(union, frame_size)
    union = clip_box(union, frame_size)

    track_landmarks = None
    if landmarks is not None:
        key_points = np.stack([landmarks[r, best[r]] for r in rows]).astype(np.float32).reshape(-1, 10)
        track_landmarks = to_device(interpolate_boxes_np(keyframes, key_points, start, stop, width=10).reshape(-1, 5, 2),
                                    device)
    track = FaceTrack(
        track_id=-1,
        chunk=chunk,
        start=start,
        stop=stop,
        box=to_device(union, device),
        boxes=to_device(interpolate_boxes_np(keyframes, key_boxes, start, stop), device),
        score=float(np.mean(np.array([scores[r, k] for r, k in dets], dtype=np.float32))),
        keyframes=torch.from_numpy(np.ascontiguousarray(keyframes, dtype=np.int64)),
        too_short=stop - start < cfg.min_clip_frames,
        landmarks=track_landmarks,
    )
    return track, (key_boxes[0], key_boxes[-1])
