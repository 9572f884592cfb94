"""CPU decoding with PyAV (FFmpeg bundled in the wheel): the reference backend.

Frames are decoded in order and only the selected ones are converted to RGB; long-GOP
H.264 has to be decoded frame by frame anyway, so there is no seeking.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from dfdc_fast.io.base import (DecodePlan, FrameCollector, SegmentCollector, VideoReader, assemble, normalize_rotation,
                               segment_video, with_count)
from dfdc_fast.io.errors import VideoDecodeError
from dfdc_fast.io.header import listed_frame_count, map_av_error, open_container, stream_facts, with_rotation
from dfdc_fast.io.selectors import SelectorLike
from dfdc_fast.io.color import matrix_for
from dfdc_fast.io.types import RawVideo, Video


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
        buffer, kept, result, info = self._decode(os.fspath(path), frames, raw=False)
        if buffer is None:  # the header misled a count-dependent selection: decode exactly those
            return self.read(path, result.indices.tolist())
        out, idx = assemble(buffer, kept, result.indices, info.rotation, self.device)
        return Video(out, idx, with_count(info, result.num_frames, result.exact), self.name)

    def read_raw(self, path: str | os.PathLike, frames: SelectorLike = None) -> RawVideo:
        """Like :meth:`read`, but frames stay YUV 4:2:0 (I420) in coded orientation: no RGB
        conversion on the CPU (see :class:`RawVideo`). Streams that are not 8-bit 4:2:0 of
        an even size come back as RGB."""
        buffer, kept, result, info = self._decode(os.fspath(path), frames, raw=True)
        if buffer is None:
            return self.read_raw(path, result.indices.tolist())
        layout = "i420" if buffer.dim() == 3 else "rgb"
        data, idx = assemble(buffer, kept, result.indices, 0, self.device)
        return RawVideo(data, layout, idx, with_count(info, result.num_frames, result.exact), self.name)

    def iter_raw(self, path: str | os.PathLike, frames: SelectorLike = None, segment: int = 600) -> Iterator[RawVideo]:
        """:meth:`read_raw` a segment at a time (see :meth:`VideoReader.iter_raw`)."""
        import av

        path = os.fspath(path)
        with open_container(path) as (container, stream):
            header, listed_frames, planar, shape = self._prepare(path, stream, raw=True)
            layout = "i420" if planar else "rgb"
            col = SegmentCollector(frames, segment, lambda n: torch.empty((n, *shape), dtype=torch.uint8),
                                   header.num_frames)
            info = None
            try:
                for frame in container.decode(stream):
                    if info is None:
                        info = _frame_facts(header, frame)
                    if col.full:  # handed on only now: the reader never holds two segments
                        yield segment_video(*col.take(), shape, layout, info, self.name, self.device, last=False)
                    (_to_i420 if planar else _to_rgb)(path, frame, col.slot().numpy())
                    if col.done:
                        break
            except av.FFmpegError as exc:
                raise map_av_error(path, exc, col.decoded) from exc
        count, exact = col.finish(path, listed_frames)
        yield segment_video(*col.take(), shape, layout, with_count(info, count, exact), self.name, self.device,
                            last=True)

    def _prepare(self, path: str, stream, raw: bool) -> tuple:
        """Set the stream's threads; its header, listed frame count, whether frames are kept
        as I420 planes (``raw`` and an even-sized 8-bit 4:2:0 stream), and a frame's shape."""
        stream.thread_type = "AUTO"
        stream.thread_count = self.threads
        header = stream_facts(path, stream, rotation=0)
        listed_frames = listed_frame_count(header, stream.frames or 0)
        h, w = header.coded_height, header.coded_width
        planar = raw and header.pix_fmt in YUV420 and h % 2 == 0 and w % 2 == 0
        return header, listed_frames, planar, (h * 3 // 2, w) if planar else (h, w, 3)

    def _decode(self, path: str, frames: SelectorLike, raw: bool):
        import av

        with open_container(path) as (container, stream):
            header, listed_frames, planar, shape = self._prepare(path, stream, raw)
            col = FrameCollector(DecodePlan.make(frames, header.num_frames), header.num_frames,
                                 lambda n: torch.empty((n, *shape), dtype=torch.uint8))
            rotation = colour = None
            try:
                for frame in container.decode(stream):
                    if rotation is None:
                        rotation = normalize_rotation(getattr(frame, "rotation", 0))
                        colour = (getattr(frame, "colorspace", None), getattr(frame, "color_range", 0))
                    row = col.slot()
                    if row is not None:
                        (_to_i420 if planar else _to_rgb)(path, frame, row.numpy())
                    if col.done:
                        break
            except av.FFmpegError as exc:
                raise map_av_error(path, exc, col.decoded) from exc
        result = col.finish(path, listed_frames)
        info = with_rotation(header, rotation or 0)
        if colour is not None:
            info = replace(info, color_matrix=matrix_for(colour[0]), full_range=int(colour[1] or 0) == 2)
        if result.incomplete:
            return None, None, result, info
        return col.buffer, col.kept, result, info


def _frame_facts(header, frame):
    """The header's facts with the display rotation and colour of the first decoded frame."""
    info = with_rotation(header, normalize_rotation(getattr(frame, "rotation", 0)))
    colour = (getattr(frame, "colorspace", None), getattr(frame, "color_range", 0))
    return replace(info, color_matrix=matrix_for(colour[0]), full_range=int(colour[1] or 0) == 2)


#: Pixel formats whose planes are copied as they are by ``read_raw`` (8-bit 4:2:0).
YUV420 = ("yuv420p", "yuvj420p")


def _to_i420(path: str, frame, out: np.ndarray) -> None:
    """Copy the Y, U and V planes of a yuv420p frame into ``out`` (H * 3 / 2, W), no conversion."""
    h, w = out.shape[0] // 3 * 2, out.shape[1]
    if frame.format.name not in YUV420 or frame.height != h or frame.width != w:
        raise VideoDecodeError(path, f"frame format changed mid-stream: {frame.format.name} {frame.height}x{frame.width}")
    flat = out.reshape(-1)
    pos = 0
    for plane, (ph, pw) in zip(frame.planes, ((h, w), (h // 2, w // 2), (h // 2, w // 2))):
        src = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
        flat[pos:pos + ph * pw].reshape(ph, pw)[...] = src
        pos += ph * pw


def _to_rgb(path: str, frame, out: np.ndarray) -> None:
    """Convert one decoded frame to packed RGB into ``out`` (H, W, 3)."""
    rgb = frame.to_ndarray(format="rgb24")
    if rgb.shape != out.shape:
        raise VideoDecodeError(path, f"frame size changed mid-stream: {rgb.shape[:2]} vs {out.shape[:2]}")
    out[...] = rgb
