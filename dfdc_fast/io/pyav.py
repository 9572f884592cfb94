"""CPU decoding with PyAV (FFmpeg bundled in the wheel): the reference backend.

Frames are decoded in order and only the selected ones are converted to RGB; long-GOP
H.264 has to be decoded frame by frame anyway, so there is no seeking.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dfdc_fast.io.base import DecodePlan, check_complete, VideoReader, assemble, final_indices, normalize_rotation, with_count
from dfdc_fast.io.errors import VideoDecodeError
from dfdc_fast.io.header import listed_frame_count, map_av_error, open_container, stream_facts
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
            plan = DecodePlan.make(frames, header.num_frames)
            buffer = torch.empty((plan.capacity(header.num_frames), header.coded_height, header.coded_width, 3), dtype=torch.uint8)
            kept: list[int] = []
            rotation = None
            index = -1
            reached_end = True
            try:
                for frame in container.decode(stream):
                    index += 1
                    if rotation is None:
                        rotation = normalize_rotation(getattr(frame, "rotation", 0))
                    if plan.wants(index):
                        if len(kept) == buffer.shape[0]:  # header under-reported the count
                            buffer = torch.cat([buffer, torch.empty_like(buffer)])
                        _to_rgb(path, frame, buffer[len(kept)].numpy())
                        kept.append(index)
                    if plan.stop is not None and index + 1 >= plan.stop:
                        reached_end = False
                        break
            except av.FFmpegError as exc:
                raise map_av_error(path, exc, index + 1) from exc
            decoded = index + 1
        if decoded == 0:
            raise VideoDecodeError(path, "video stream holds no decodable frame")
        if not reached_end and plan.stop is not None and decoded < plan.stop:
            reached_end = True
        if reached_end:
            check_complete(path, decoded, listed_frames)
        info = stream_facts_rotated(header, rotation or 0)
        indices, num_frames, exact = final_indices(plan, decoded, reached_end, header.num_frames)
        if not set(indices.tolist()) <= set(kept):
            # The header's frame count was wrong for a count-dependent selection: decode
            # again for exactly the frames that exist (rare; MP4 headers are exact).
            return self.read(path, indices.tolist())
        out, idx = assemble(buffer, kept, indices, info.rotation, self.device)
        return Video(out, idx, with_count(info, num_frames, exact), self.name)


def stream_facts_rotated(info, rotation: int):
    """Header info with the rotation found on the first decoded frame."""
    from dataclasses import replace

    if rotation in (90, 270):
        return replace(info, rotation=rotation, width=info.coded_height, height=info.coded_width)
    return replace(info, rotation=rotation)


def _to_rgb(path: str, frame, out: np.ndarray) -> None:
    """Convert one decoded frame to packed RGB into ``out`` (H, W, 3)."""
    rgb = frame.to_ndarray(format="rgb24")
    if rgb.shape != out.shape:
        raise VideoDecodeError(path, f"frame size changed mid-stream: {rgb.shape[:2]} vs {out.shape[:2]}")
    out[...] = rgb
