"""``FaceTrack``: one person's face through a stretch of a video."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class FaceTrack:
    """One face over the frames ``[start, stop)`` of a video (or of one chunk of it).

    Attributes:
        track_id: position of the track in the list ``track_faces`` returned (0-based).
        chunk: index of the chunk the track belongs to (0 when the video is not chunked).
        start, stop: half-open range of absolute frame indices.
        box: float32 ``(4,)`` ``(x0, y0, x1, y1)`` in full-resolution pixels: the union of
            the track's boxes over time, padded and squared as configured, inside the frame.
        boxes: float32 ``(stop - start, 4)``: a box for every frame, linearly interpolated
            between the sampled frames where the face was detected (unpadded).
        score: mean detector score over the track's detections.
        keyframes: int64 ``(n,)`` on CPU: the sampled frames where the face was detected.
        too_short: True when the track has fewer frames than a 3D model trains on.
        landmarks: float32 ``(stop - start, 5, 2)`` or None: the detector's five points
            (eyes, nose, mouth corners as x, y in full-resolution pixels) of the keyframe
            faces, interpolated between keyframes like ``boxes`` (exact on keyframes).
        person: the person this track shows, the same across chunks (0-based, in order of
            first appearance in the list ``track_faces`` returned); None when not linked.
            Chunking makes one person several tracks: count people with this.
    """

    track_id: int
    chunk: int
    start: int
    stop: int
    box: torch.Tensor
    boxes: torch.Tensor
    score: float
    keyframes: torch.Tensor
    too_short: bool = False
    landmarks: Optional[torch.Tensor] = None
    person: Optional[int] = None

    def __post_init__(self):
        if not 0 <= self.start < self.stop:
            raise ValueError(f"need 0 <= start < stop, got [{self.start}, {self.stop})")
        if self.box.shape != (4,):
            raise ValueError(f"box must be (4,), got {tuple(self.box.shape)}")
        if self.boxes.shape != (self.stop - self.start, 4):
            raise ValueError(f"boxes must be ({self.stop - self.start}, 4), got {tuple(self.boxes.shape)}")
        if self.landmarks is not None and self.landmarks.shape != (self.stop - self.start, 5, 2):
            raise ValueError(f"landmarks must be ({self.stop - self.start}, 5, 2), got {tuple(self.landmarks.shape)}")

    @property
    def num_frames(self) -> int:
        return self.stop - self.start

    @property
    def num_detections(self) -> int:
        return int(self.keyframes.numel())

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-frame boxes)."""
        return {
            "track_id": self.track_id,
            "person": self.person,
            "chunk": self.chunk,
            "start": self.start,
            "stop": self.stop,
            "box": [round(float(v), 2) for v in self.box.tolist()],
            "score": round(float(self.score), 5),
            "num_detections": self.num_detections,
            "too_short": self.too_short,
        }

    def __repr__(self) -> str:
        x0, y0, x1, y1 = (round(float(v)) for v in self.box.tolist())
        short = ", too_short" if self.too_short else ""
        return (
            f"FaceTrack(id={self.track_id}, person={self.person}, chunk={self.chunk}, frames=[{self.start}, {self.stop}), "
            f"box=({x0}, {y0}, {x1}, {y1}), score={self.score:.3f}, "
            f"detections={self.num_detections}, boxes=float32{tuple(self.boxes.shape)} on {self.boxes.device}{short})"
        )
