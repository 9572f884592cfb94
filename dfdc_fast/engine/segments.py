"""A streamed video's result, put together from the results of its segments
(``FacesRequest.segment_frames``)."""
from __future__ import annotations

from typing import Optional

import torch

from dfdc_fast.engine.request import NO_TRACK, VideoFaces
from dfdc_fast.io.selectors import First, as_selector


class MergedSegments:
    """A streamed video's result, gathered from its segments' results: their tracks, and
    their clips and crops renumbered into one packed tensor each."""

    def __init__(self, result: VideoFaces, images: bool):
        self.result, self.images = result, images
        self.parts = 0
        self.timings: dict = {}
        self.clip_parts: list = []
        self.crop_parts: list = []
        result.detections = {"sampled_frames": 0, "faces": 0, "retried": False}
        result.status = "no_face"

    def add(self, part: VideoFaces) -> None:
        res = self.result
        self.parts += 1
        res.tracks.extend(part.tracks)
        if part.boxes_from == "original":
            res.boxes_from = "original"
        for key, value in part.detections.items():
            res.detections[key] = res.detections.get(key, 0) + value if key in ("sampled_frames", "faces") else value
        for key, value in part.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + value
        _append(part.clips, part.clip_frames, res.clips, self.clip_parts)
        _append(part.crops, part.crop_data, res.crops, self.crop_parts)
        if part.status == "ok":
            res.status = "ok"

    def finish(self) -> None:
        res = self.result
        res.timings = self.timings
        res.error = None if res.status == "ok" else NO_TRACK
        res.clip_frames = _joined(self.clip_parts)
        if self.images and len(self.crop_parts) > 1:  # padded images of different maxima
            hm = max(p.shape[1] for p in self.crop_parts)
            wm = max(p.shape[2] for p in self.crop_parts)
            self.crop_parts = [torch.nn.functional.pad(p, (0, 0, 0, wm - p.shape[2], 0, hm - p.shape[1]))
                               for p in self.crop_parts]
        res.crop_data = _joined(self.crop_parts)


def _append(metas: list, data: Optional[torch.Tensor], into: list, parts: list) -> None:
    """A segment's clips or crops after those of the earlier ``parts``: their offsets (rows,
    or bytes of encoded crops) move past the earlier data."""
    offset = sum(p.shape[0] for p in parts)
    for m in metas:
        m.offset += offset
    into.extend(metas)
    if data is not None:
        parts.append(data)


def _joined(parts: list) -> Optional[torch.Tensor]:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def expected_frames(frames, header_frames: int) -> int:
    """Frames a streamed selection (all, or the first n) is expected to hold."""
    sel = as_selector(frames)
    return min(sel.n, header_frames) if isinstance(sel, First) else header_frames


__all__ = ["MergedSegments", "expected_frames"]
