"""CPU decoding with PyAV (FFmpeg bundled in the wheel): the reference backend.

Frames are decoded in order and only the selected ones are converted to RGB; long-GOP
H.264 has to be decoded frame by frame anyway, so there is no seeking.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dfdc_fast.io.base import DecodePlan, FrameCollector, VideoReader, assemble, normalize_rotation, with_count
from dfdc_fast.io.errors import VideoDecodeError
from dfdc_fast.io.header import listed_frame_count, map_av_error, open_container, stream_facts, with_rotation
from dfdc_fast.io.selectors import SelectorLike
from dfdc_fast.io.types import Video


class PyAVReader(VideoReader):
    """Decode on the CPU with FFmpeg, then move the frames to ``device``.

    Args:
        device: where the returned frames live.
        threads: FFmpeg decoding threads per video (0 = one per core).
    """

    name = "pyav"

    def __init__(self, device: torch.device | str = "cpu", threads: int = 0):
        super().__init__(device)
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.threads = threads

    def read(self, path: str | os.PathLike, frames: SelectorLike = None) -> Video:
        import av

        path = os.fspath(path)
        with open_container(path) as (container, stream):
            stream.thread_type = "AUTO"
            stream.thread_count = self.threads
            header = stream_facts(path, stream, rotation=0)
            listed_frames = listed_frame_count(header, stream.frames or 0)
            h, w = header.coded_height, header.coded_width
            col = FrameCollector(DecodePlan.make(frames, header.num_frames), header.num_frames,
                                 lambda n: torch.empty((n, h, w, 3), dtype=torch.uint8))
            rotation = None
            try:
                for frame in container.decode(stream):
                    if rotation is None:
                        rotation = normalize_rotation(getattr(frame, "rotation", 0))
                    row = col.slot()
                    if row is not None:
                        _to_rgb(path, frame, row.numpy())
                    if col.done:
                        break
            except av.FFmpegError as exc:
                raise map_av_error(path, exc, col.decoded) from exc
        result = col.finish(path, listed_frames)
        if result.incomplete:
            # The header's frame count was wrong for a count-dependent selection: decode
            # again for exactly the frames that exist (rare; MP4 headers are exact).
            return self.read(path, result.indices.tolist())
        info = with_rotation(header, rotation or 0)
        out, idx = assemble(col.buffer, col.kept, result.indices, info.rotation, self.device)
        return Video(out, idx, with_count(info, result.num_frames, result.exact), self.name)


def _to_rgb(path: str, frame, out: np.ndarray) -> None:
    """Convert one decoded frame to packed RGB into ``out`` (H, W, 3)."""
    rgb = frame.to_ndarray(format="rgb24")
    if rgb.shape != out.shape:
        raise VideoDecodeError(path, f"frame size changed mid-stream: {rgb.shape[:2]} vs {out.shape[:2]}")
    out[...] = rgb
