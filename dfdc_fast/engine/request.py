"""What the engine is asked to compute per video, and what it returns.

One :class:`FacesRequest` describes a job's needs (which frames to decode, how to detect
and track, which face clips and crops to cut); :class:`VideoTask` is one video of the
job; :class:`VideoFaces` is the result, small metadata plus a few packed tensors, so it
crosses process boundaries cheaply (shared memory on the CPU, CUDA IPC on a GPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from dfdc_fast.detect import PRESETS, MTCNNConfig
from dfdc_fast.io.selectors import SelectorLike
from dfdc_fast.io.types import VideoInfo
from dfdc_fast.track import FaceTrack, TrackConfig

PADS = ("top_left", "center")
CROP_MODES = ("evenly", "first")
ENCODINGS = ("jpg", "png", None)
REUSE = ("none", "2d", "all")


@dataclass
class ClipSpec:
    """One square face clip per track: the track's union box over its frames, placed in a
    zero square of its longer side (``pad``: top-left as the Medics did, or centred) and
    resized to ``size``."""

    size: int = 256
    pad: str = "top_left"

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"clip size must be >= 1, got {self.size}")
        if self.pad not in PADS:
            raise ValueError(f"pad must be one of {PADS}, got {self.pad!r}")


@dataclass
class CropSpec:
    """2D face crops: the per-frame (interpolated) box grown by ``margin`` on each side.

    ``mode="evenly"``: at ``count`` evenly spaced frames of the video (first and last
    included, as Selim sampled), one crop per track present there. ``mode="first"``: the
    first ``count`` frames of each track (the Medics' 2D inference). Crops keep their
    native size. ``encode`` turns them into JPEG or PNG bytes inside the engine (JPEG on
    the GPU when there is one); ``None`` returns them as images padded into one
    ``(N, Hmax, Wmax, 3)`` tensor with each one's size in its :class:`CropMeta` (a model's
    letterbox is then one ``crop_resize`` call over that tensor).
    """

    count: int = 32
    mode: str = "evenly"
    margin: float = 1 / 3
    encode: Optional[str] = "jpg"
    quality: int = 95

    def __post_init__(self):
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop mode must be one of {CROP_MODES}, got {self.mode!r}")
        if self.encode not in ENCODINGS:
            raise ValueError(f"crop encode must be one of {ENCODINGS}, got {self.encode!r}")
        if self.count < 0 or self.margin < 0:
            raise ValueError(f"count and margin must be >= 0, got {self.count}, {self.margin}")


@dataclass
class FacesRequest:
    """Everything the per-video path does, the same for every video of a job."""

    #: Frames to decode: None for all, or a selector such as First(100).
    frames: SelectorLike = None
    #: Detect faces on every n-th decoded frame.
    every: int = 10
    #: MTCNN preset name or config; its scale/long_side/size_rule sets the detector's input size.
    detector: Any = "medics_export"
    #: Videos with no face track are detected again with the detector's long side times
    #: this (the Medics' inference: 2, i.e. 960 px); None: no retry.
    retry_scale: Optional[float] = None
    track: TrackConfig = field(default_factory=TrackConfig)
    #: Relax the track's min_frames/min_detections for videos too short to meet them.
    relax_short: bool = False
    clips: Optional[ClipSpec] = None
    crops: Optional[CropSpec] = None
    #: A fake given its original's tracks uses them for: nothing, its 2D crops, or everything.
    reuse: str = "none"
    #: Copy clips and crops to host memory (one copy per video), or leave them on the device.
    to_host: bool = True
    #: Width of a thumbnail of the middle of the first track (for contact sheets); None: none.
    thumbnail_width: Optional[int] = None

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if isinstance(self.detector, str) and self.detector not in PRESETS:
            raise ValueError(f"detector must be one of {sorted(PRESETS)} or an MTCNNConfig, got {self.detector!r}")
        if not isinstance(self.detector, (str, MTCNNConfig)):
            raise ValueError(f"detector must be a preset name or an MTCNNConfig, got {type(self.detector).__name__}")
        if self.reuse not in REUSE:
            raise ValueError(f"reuse must be one of {REUSE}, got {self.reuse!r}")
        if self.retry_scale is not None and self.retry_scale <= 0:
            raise ValueError(f"retry_scale must be > 0, got {self.retry_scale}")

    @property
    def detector_config(self) -> MTCNNConfig:
        return PRESETS[self.detector] if isinstance(self.detector, str) else self.detector


@dataclass
class VideoTask:
    """One video for the engine. ``key`` is the caller's handle, returned with the result."""

    key: Any
    path: str
    #: Tracks of this video's original (``track_json`` dicts), for ``FacesRequest.reuse``.
    original_tracks: Optional[list] = None
    #: Decode only the first n frames (a time budget's cheaper level); None: the request's.
    max_frames: Optional[int] = None


@dataclass
class ClipMeta:
    """Where one face clip sits in ``VideoFaces.clip_frames`` and what it shows."""

    track: int
    chunk: int
    start: int
    stop: int
    box: list
    score: float
    too_short: bool
    offset: int  # first row in clip_frames
    person: Optional[int] = None  # FaceTrack.person: the same person across chunks

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass
class CropMeta:
    """One 2D crop: encoded bytes ``crop_data[offset:offset + length]``, or image
    ``crop_data[offset, :size[0], :size[1]]``."""

    track: int
    frame: int
    box: list
    offset: int
    length: int
    size: tuple  # (height, width) of the crop
    person: Optional[int] = None  # FaceTrack.person


@dataclass
class VideoFaces:
    """The engine's result for one video."""

    key: Any
    path: str
    status: str = "ok"  # ok | no_face | decode_error | error
    error: Optional[str] = None
    info: Optional[VideoInfo] = None
    decoder: Optional[str] = None
    frames_decoded: int = 0
    detections: dict = field(default_factory=dict)
    tracks: list = field(default_factory=list)  # FaceTrack, boxes on the host
    boxes_from: str = "self"
    clips: list = field(default_factory=list)  # ClipMeta
    clip_frames: Optional[torch.Tensor] = None  # uint8 (sum of clip lengths, S, S, 3)
    crops: list = field(default_factory=list)  # CropMeta
    crop_data: Optional[torch.Tensor] = None  # uint8 bytes (encoded) or (N, Hmax, Wmax, 3) images
    thumbnail: Optional[torch.Tensor] = None  # uint8 (3, h, w) on the host
    thumbnail_boxes: Optional[torch.Tensor] = None  # (n, 4) in thumbnail pixels
    timings: dict = field(default_factory=dict)
    worker: Optional[int] = None
    #: Peak device memory of the process that made it so far, in MiB (CUDA only).
    peak_memory_mb: Optional[float] = None

    def clip(self, meta: ClipMeta) -> torch.Tensor:
        """uint8 ``(frames, S, S, 3)`` of one clip (a view)."""
        return self.clip_frames[meta.offset:meta.offset + meta.frames]

    def crop_bytes(self, meta: CropMeta) -> bytes:
        return self.crop_data[meta.offset:meta.offset + meta.length].numpy().tobytes()

    def __repr__(self) -> str:
        clips = "" if self.clip_frames is None else f", clip_frames=uint8{tuple(self.clip_frames.shape)}"
        return (f"VideoFaces({self.path!r}, status={self.status!r}, tracks={len(self.tracks)}, "
                f"clips={len(self.clips)}, crops={len(self.crops)}{clips})")


def track_json(t: FaceTrack) -> dict:
    """A track as JSON (with its keyframe boxes at full float32 precision, so a fake that
    reuses them gets identical boxes)."""
    key_boxes = t.boxes[(t.keyframes - t.start)].tolist() if t.boxes.device.type == "cpu" else None
    if key_boxes is None:
        raise ValueError("track_json needs tracks with host boxes (the engine returns those)")
    return {**t.to_dict(), "keyframes": t.keyframes.tolist(), "key_boxes": key_boxes}


def tracks_from_json(items: list[dict]) -> list[FaceTrack]:
    """Tracks written by :func:`track_json`, with host boxes interpolated as the tracker does."""
    import numpy as np

    from dfdc_fast.track.boxes import interpolate_boxes_np

    tracks = []
    for d in items:
        kf = np.asarray(d["keyframes"], dtype=np.int64)
        boxes = interpolate_boxes_np(kf, np.asarray(d["key_boxes"], dtype=np.float32), d["start"], d["stop"])
        tracks.append(FaceTrack(track_id=d["track_id"], chunk=d["chunk"], start=d["start"], stop=d["stop"],
                                box=torch.tensor(d["box"], dtype=torch.float32), boxes=torch.from_numpy(boxes),
                                score=d["score"], keyframes=torch.from_numpy(kf), too_short=d["too_short"],
                                person=d.get("person")))
    return tracks
