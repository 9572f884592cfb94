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
from dfdc_fast.io.selectors import All, First, SelectorLike, as_selector
from dfdc_fast.io.types import VideoInfo
from dfdc_fast.track import FaceTrack, TrackConfig

PADS = ("top_left", "center")
CROP_MODES = ("evenly", "first", "every", "detections")
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
    first ``count`` frames of each track (the Medics' 2D inference). ``mode="every"``:
    every frame of each track whose number is a multiple of ``every`` (None: the request's
    detection step; Selim's training crops, frame % 10 == 0; ``count`` is ignored).
    ``mode="detections"``: one crop per detected face on every sampled frame, no tracks
    needed (Selim's inference). Crops keep their native size; tracks with landmarks give
    each crop its five points in crop pixels (:attr:`CropMeta.landmarks`). ``encode`` turns them into JPEG or PNG bytes inside the engine (JPEG on
    the GPU when there is one); ``None`` returns them as images padded into one
    ``(N, Hmax, Wmax, 3)`` tensor with each one's size in its :class:`CropMeta` (a model's
    letterbox is then one ``crop_resize`` call over that tensor).
    """

    count: int = 32
    mode: str = "evenly"
    margin: float = 1 / 3
    encode: Optional[str] = "jpg"
    quality: int = 95
    every: Optional[int] = None

    def __post_init__(self):
        if self.every is not None and self.every < 1:
            raise ValueError(f"crop every must be >= 1 or None, got {self.every}")
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop mode must be one of {CROP_MODES}, got {self.mode!r}")
        if self.encode not in ENCODINGS:
            raise ValueError(f"crop encode must be one of {ENCODINGS}, got {self.encode!r}")
        if self.count < 0 or self.margin < 0:
            raise ValueError(f"count and margin must be >= 0, got {self.count}, {self.margin}")


@dataclass
class DiffSpec:
    """Selim's SSIM difference masks: for a FAKE video whose task carries its original's
    crops (:attr:`VideoTask.original_crops`), each crop at the same track and frame gets
    ``(1 - SSIM map) * 255`` in grey (:func:`dfdc_fast.crops.ssim.ssim_diff`), on the
    device, returned in :attr:`VideoFaces.diff_data`."""

    dtype: str = "float64"

    def __post_init__(self):
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"diff dtype must be float64 or float32, got {self.dtype!r}")


@dataclass
class PairSpec:
    """NTechLab's aligned pair clips.

    A REAL video (task ``pair_count`` > 0) gets ``pair_count`` windows per track that has at
    least ``min_detections`` detections and ``length`` frames: each starts at a random
    detected frame of the track (drawn from the video's id, so reruns agree) and keeps one
    box, ``box_mult`` times the track's box ``length // every // 2`` detections later,
    for all its frames. A FAKE video (task ``pair_windows``) tracks its own faces, pairs
    them with its original's (:func:`dfdc_fast.track.pairs.align_tracks`: IoU >
    ``iou_threshold`` on every common detection) and cuts the windows it was given with
    the same boxes, where its paired track covers them. Clips keep the box's native
    size (trimmed to even sides for 4:2:0 video)."""

    length: int = 50
    box_mult: float = 1.5
    min_detections: int = 5
    iou_threshold: float = 0.5

    def __post_init__(self):
        if self.length < 1 or self.box_mult <= 0 or self.min_detections < 1:
            raise ValueError(f"bad pair spec: length {self.length}, box_mult {self.box_mult}, "
                             f"min_detections {self.min_detections}")


@dataclass
class WindowSpec:
    """NTechLab's inference samples: per track, windows of ``length`` consecutive sampled
    frames starting every ``stride`` sampled frames, each cut with the box of its middle
    frame grown ``box_mult`` times, resized so its shorter side is ``min_size`` and
    centre-cropped to ``crop`` (height, width) in the same kernel call. ``length`` 7 and
    ``stride`` 14 feed the sequence model; ``length`` 1 and ``stride`` 2 the frame models.
    A side shorter than the crop's is centred and its padding filled by ``pad``: ``"zero"``,
    or ``"reflect"`` (albumentations' PadIfNeeded: frame model A's shorter side of 192)."""

    length: int = 7
    stride: int = 14
    box_mult: float = 1.5
    min_size: int = 224
    crop: tuple = (224, 192)
    pad: str = "zero"

    def __post_init__(self):
        if self.length < 1 or self.stride < 1 or self.min_size < 1:
            raise ValueError(f"bad window spec: length {self.length}, stride {self.stride}, min_size {self.min_size}")
        if self.pad not in ("zero", "reflect"):
            raise ValueError(f"window padding must be 'zero' or 'reflect', got {self.pad!r}")
        self.crop = tuple(int(v) for v in self.crop)


@dataclass
class FacesRequest:
    """Everything the per-video path does, the same for every video of a job.

    The defaults detect and track faces and cut nothing: name the outputs wanted, e.g.
    ``FacesRequest(clips=ClipSpec(256), crops=CropSpec(count=32))`` for the Medics' clips and crops.
    """

    #: Frames to decode: None for all, or a selector such as First(100).
    frames: SelectorLike = None
    #: Keep only every round(fps / sample_fps)-th decoded frame (NTechLab's 15 fps); None: all.
    #: ``every`` and the windows then count in kept frames.
    sample_fps: Optional[float] = None
    #: Detect faces on every n-th decoded (or kept) frame.
    every: int = 10
    #: MTCNN preset name or config; its scale/long_side/size_rule sets the detector's input size.
    detector: Any = "medics_export"
    #: Videos with no face track are detected again with the detector's long side times
    #: this (the Medics' inference: 2, i.e. 960 px); None: no retry.
    retry_scale: Optional[float] = None
    #: None: no tracking (only ``CropSpec(mode="detections")`` can then cut anything).
    track: Optional[TrackConfig] = field(default_factory=TrackConfig)
    #: Relax the track's min_frames/min_detections for videos too short to meet them.
    relax_short: bool = False
    #: Square face clips per track and chunk (the Medics' 3D inputs); None: no clips.
    clips: Optional[ClipSpec] = None
    #: 2D face crops per track (Selim's, or one per detection with mode="detections"); None: none.
    crops: Optional[CropSpec] = None
    #: SSIM difference masks of a fake's crops against its original's (Selim's); None: none.
    diffs: Optional[DiffSpec] = None
    #: Aligned REAL/FAKE pair clips (NTechLab's training pairs); None: none.
    pairs: Optional[PairSpec] = None
    #: Inference windows per track (NTechLab's 7-frame sequences), each cut into VideoFaces.windows.
    windows: list = field(default_factory=list)
    #: A fake given its original's tracks uses them for: nothing, its 2D crops, or everything.
    reuse: str = "none"
    #: Copy clips and crops to host memory (one copy per video), or leave them on the device.
    to_host: bool = True
    #: Decoding is refused (status decode_error, before anything is allocated) for a video
    #: whose header declares frames of more pixels, or more frames to decode, than these:
    #: a decompression bomb must not take the job down. Defaults: 4096x4096 (8K is refused)
    #: and an hour at 30 fps, far above DFDC's 1920x1080x300.
    max_frame_pixels: Optional[int] = 4096 * 4096
    max_frames: Optional[int] = 108_000
    #: A video of more frames than this is decoded and worked on this many frames at a time
    #: (tracks never cross a segment, so the outputs equal the whole video's), and only one
    #: segment of decoded frames is ever in memory: a 20-minute video needs no more than a
    #: 20-second one. Requests whose tracks or windows span the whole video cannot stream
    #: (see :attr:`stream_blocker`); their videos are decoded whole, up to ``max_frames``.
    #: None: always whole. The default, 600, is twice a DFDC clip, which is never cut.
    segment_frames: Optional[int] = 600

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
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {self.sample_fps}")
        if self.track is None and (self.clips is not None or self.pairs is not None or self.windows or (
                self.crops is not None and self.crops.mode != "detections")):
            raise ValueError("clips, pairs, windows and crops other than mode='detections' need tracks (track=None)")
        if self.segment_frames is not None and self.segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1 or None, got {self.segment_frames}")
        if self.diffs is not None and (self.crops is None or self.crops.mode == "detections"):
            raise ValueError("diffs compare a fake's crops with its original's: they need track crops")

    @property
    def stream_blocker(self) -> Optional[str]:
        """Why this request's long videos are decoded whole instead of by segments (None:
        they stream). Streaming needs tracks cut into chunks that a segment holds whole,
        and outputs that never look across chunks."""
        seg = self.segment_frames
        if seg is None:
            return "segment_frames is None"
        if self.frames is not None and not isinstance(as_selector(self.frames), (All, First)):
            return f"frames {self.frames!r} depend on the whole video's length"
        if self.sample_fps is not None:
            return "sample_fps keeps frames by the whole video's rate"
        if self.track is None or self.track.chunk_size is None:
            return "tracks span the whole video (no chunk_size)"
        if seg % self.track.chunk_size or seg % self.every or seg < 2 * self.every:
            return (f"segment_frames {seg} is not a multiple of the chunk size {self.track.chunk_size} "
                    f"and of every {self.every} (twice or more)")
        if self.pairs is not None or self.windows or self.diffs is not None:
            return "pair clips, windows and SSIM diffs look across a whole track"
        if self.retry_scale is not None or self.relax_short:
            return "the detection retry and the relaxed thresholds are decided on the whole video"
        return None

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
    #: The original's crops, for ``FacesRequest.diffs``: ``(images, keys)`` with images
    #: uint8 ``(N, H, W, 3)`` (crop i in the top-left ``keys[i][2:]``) and keys
    #: ``(track, frame, height, width)``.
    original_crops: Optional[tuple] = None
    #: REAL video: windows to cut per eligible track for ``FacesRequest.pairs`` (its fakes).
    pair_count: int = 0
    #: FAKE video: its original's windows (``PairMeta.to_window()`` dicts) to cut from it.
    pair_windows: Optional[list] = None
    #: Text the REAL's window draws are seeded from (its output id): reruns draw the same.
    seed_text: str = ""


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
    #: The five detector points (x, y) in crop pixels, when the track has them.
    landmarks: Optional[list] = None
    #: Row of this crop's SSIM difference mask in ``VideoFaces.diff_data`` (-1: none).
    diff: int = -1
    #: The detection's score (mode "detections"), else the track's mean score.
    score: float = 0.0
    person: Optional[int] = None  # FaceTrack.person


@dataclass
class PairMeta:
    """One pair clip of a video: ``VideoFaces.pair_data[offset:offset + frames*h*w*3]`` as
    ``(frames, h, w, 3)``. ``track`` is the REAL video's track the window was drawn from;
    on a FAKE, ``fake_track`` is its own aligned track."""

    track: int
    window: int
    start: int
    stop: int
    box: list  # integer x0, y0, x1, y1 (exclusive) in full-resolution pixels
    offset: int = 0
    fake_track: Optional[int] = None
    span: Optional[list] = None  # the aligned span [start, stop) of the two tracks (FAKE)

    @property
    def size(self) -> tuple:
        return self.box[3] - self.box[1], self.box[2] - self.box[0]

    def to_window(self) -> dict:
        return {"track": self.track, "window": self.window, "start": self.start, "stop": self.stop,
                "box": list(self.box)}


@dataclass
class WindowMeta:
    """One inference window: rows ``[offset, offset + length)`` of ``VideoFaces.windows[spec]``."""

    track: int
    index: int  # its place among the track's windows (NTechLab flipped even ones)
    frames: list
    offset: int


#: ``VideoFaces.error`` of a video whose status is ``no_face``.
NO_TRACK = "no face track persisted long enough"


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
    diff_data: Optional[torch.Tensor] = None  # uint8 (M, Hmax, Wmax) SSIM difference masks (FacesRequest.diffs)
    diff_error: Optional[str] = None  # why some crops of a fake got no difference mask
    pairs: list = field(default_factory=list)  # PairMeta
    pair_data: Optional[torch.Tensor] = None  # uint8, the pair clips packed flat
    windows: list = field(default_factory=list)  # per WindowSpec: (metas, uint8 (rows, H, W, 3))
    timings: dict = field(default_factory=dict)
    worker: Optional[int] = None
    #: Peak device memory of the process that made it so far, in MiB (CUDA only).
    peak_memory_mb: Optional[float] = None

    def clip(self, meta: ClipMeta) -> torch.Tensor:
        """uint8 ``(frames, S, S, 3)`` of one clip (a view)."""
        return self.clip_frames[meta.offset:meta.offset + meta.frames]

    def crop_bytes(self, meta: CropMeta) -> bytes:
        return self.crop_data[meta.offset:meta.offset + meta.length].numpy().tobytes()

    def crop_image(self, meta: CropMeta) -> torch.Tensor:
        """uint8 ``(h, w, 3)`` of a crop returned as an image (``CropSpec.encode=None``)."""
        return self.crop_data[meta.offset, :meta.size[0], :meta.size[1]]

    def diff_image(self, meta: CropMeta) -> Optional[torch.Tensor]:
        """uint8 ``(h, w)`` SSIM difference mask of a crop, or None."""
        if meta.diff < 0 or self.diff_data is None:
            return None
        return self.diff_data[meta.diff, :meta.size[0], :meta.size[1]]

    def pair_clip(self, meta: PairMeta) -> torch.Tensor:
        """uint8 ``(frames, h, w, 3)`` of a pair clip (a view)."""
        h, w = meta.size
        n = (meta.stop - meta.start) * h * w * 3
        return self.pair_data[meta.offset:meta.offset + n].view(meta.stop - meta.start, h, w, 3)

    def __repr__(self) -> str:
        clips = "" if self.clip_frames is None else f", clip_frames=uint8{tuple(self.clip_frames.shape)}"
        return (f"VideoFaces({self.path!r}, status={self.status!r}, tracks={len(self.tracks)}, "
                f"clips={len(self.clips)}, crops={len(self.crops)}{clips})")


def track_json(t: FaceTrack, landmarks: bool = False) -> dict:
    """A track as JSON (with its keyframe boxes at full float32 precision, so a fake that
    reuses them gets identical boxes; with ``landmarks``, its keyframe landmarks too)."""
    key_boxes = t.boxes[(t.keyframes - t.start)].tolist() if t.boxes.device.type == "cpu" else None
    if key_boxes is None:
        raise ValueError("track_json needs tracks with host boxes (the engine returns those)")
    out = {**t.to_dict(), "keyframes": t.keyframes.tolist(), "key_boxes": key_boxes}
    if landmarks and t.landmarks is not None:
        out["key_landmarks"] = t.landmarks[(t.keyframes - t.start)].reshape(-1, 10).tolist()
    return out


def tracks_from_json(items: list[dict]) -> list[FaceTrack]:
    """Tracks written by :func:`track_json`, with host boxes interpolated as the tracker does."""
    import numpy as np

    from dfdc_fast.track.boxes import interpolate_boxes_np

    tracks = []
    for d in items:
        kf = np.asarray(d["keyframes"], dtype=np.int64)
        boxes = interpolate_boxes_np(kf, np.asarray(d["key_boxes"], dtype=np.float32), d["start"], d["stop"])
        landmarks = None
        if d.get("key_landmarks") is not None:
            points = interpolate_boxes_np(kf, np.asarray(d["key_landmarks"], dtype=np.float32), d["start"], d["stop"],
                                          width=10)
            landmarks = torch.from_numpy(points.reshape(-1, 5, 2))
        tracks.append(FaceTrack(track_id=d["track_id"], chunk=d["chunk"], start=d["start"], stop=d["stop"],
                                box=torch.tensor(d["box"], dtype=torch.float32), boxes=torch.from_numpy(boxes),
                                score=d["score"], keyframes=torch.from_numpy(kf), too_short=d["too_short"],
                                landmarks=landmarks, person=d.get("person")))
    return tracks
