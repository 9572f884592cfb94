"""Container-level facts of a video, read with PyAV (always installed) for every backend.

Hardware decoders do not report display rotation, so every backend takes the header
from here: one container open; the rotation comes from the MP4/MOV track header
(:mod:`dfdc_fast.io.mp4`), and only for other containers from one decoded frame.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import Iterator

from dfdc_fast.io.color import matrix_for
from dfdc_fast.io.errors import VideoDecodeError, check_readable
from dfdc_fast.io.types import VideoInfo, normalize_rotation

#: FFmpeg's log level while we decode: errors surface as exceptions, not console noise.
_AV_LOG_LEVEL = "ERROR"


def _av():
    import av

    return av


@contextlib.contextmanager
def open_container(path: str | os.PathLike) -> Iterator[tuple[object, object]]:
    """Open ``path`` and yield ``(container, first video stream)``; every failure becomes a
    :class:`VideoDecodeError` naming the cause."""
    path = check_readable(path)
    av = _av()
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"not a readable video container ({_ffmpeg_reason(exc)})") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(path, f"cannot open: {exc}") from exc
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            what = "audio-only file" if kinds == ["audio"] else f"streams: {', '.join(kinds) or 'none'}"
            raise VideoDecodeError(path, f"no video stream ({what})")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() or type(exc).__name__


def map_av_error(path: str, exc: Exception, decoded: int) -> VideoDecodeError:
    """A decode-time FFmpeg error, with how far decoding got (truncated files fail mid-way)."""
    where = f"after {decoded} frame(s)" if decoded else "at the first frame"
    return VideoDecodeError(path, f"decoding failed {where}: {_ffmpeg_reason(exc)} (truncated or corrupt file?)")


def stream_facts(path: str, stream, rotation: int) -> VideoInfo:
    """VideoInfo from an open PyAV stream (frame count from the header)."""
    cc = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif stream.container.duration is not None:
        duration = stream.container.duration / 1_000_000
    num_frames = int(stream.frames or 0)
    if num_frames <= 0 and duration and fps:
        num_frames = int(round(duration * fps))
    w, h = int(cc.width), int(cc.height)
    if w <= 0 or h <= 0:
        raise VideoDecodeError(path, f"video stream has no size ({w}x{h})")
    info = VideoInfo(
        path=path,
        num_frames=num_frames,
        num_frames_exact=False,
        width=w,
        height=h,
        fps=fps,
        duration=duration,
        codec=cc.name,
        pix_fmt=cc.format.name if cc.format is not None else None,
        rotation=rotation,
        coded_width=w,
        coded_height=h,
        container=stream.container.format.name if stream.container.format is not None else "",
    )
    return with_rotation(info, rotation)


def with_rotation(info: VideoInfo, rotation: int) -> VideoInfo:
    """``info`` with a display rotation: width and height swap for quarter turns."""
    w, h = info.coded_width, info.coded_height
    return replace(info, rotation=rotation, width=h if rotation in (90, 270) else w,
                   height=w if rotation in (90, 270) else h)


def listed_frame_count(info: VideoInfo, stream_frames: int) -> int:
    """The frame count of the container's sample index when it is exact (MP4/MOV), else 0.

    Other containers' counts are estimates (AVI's is in time-base units), so they do not
    prove a file truncated.
    """
    return int(stream_frames) if "mp4" in info.container or "mov" in info.container else 0


def read_header(path: str | os.PathLike, count_frames: bool = False, decode_first: bool = False) -> VideoInfo:
    """Header facts of ``path``, without decoding for MP4/MOV files.

    The display rotation is read from the track header of MP4/MOV files; other
    containers (and ``decode_first=True``, which also proves a frame decodes) decode one
    frame for it. With ``count_frames=True`` it also demuxes every packet (no decoding)
    to count the frames exactly and to tell variable frame rate (uneven timestamps) apart.
    """
    from dfdc_fast.io.mp4 import display_rotation

    path = os.fspath(path)
    av = _av()
    with open_container(path) as (container, stream):
        cc = stream.codec_context
        colorspace, color_range = getattr(cc, "colorspace", None), getattr(cc, "color_range", 0)
        iso = container.format is not None and ("mp4" in container.format.name or "mov" in container.format.name)
        rotation = display_rotation(path) if iso and not decode_first else None
        if rotation is None:
            try:
                first = next(container.decode(stream), None)
            except av.FFmpegError as exc:
                raise map_av_error(path, exc, 0) from exc
            if first is None:
                raise VideoDecodeError(path, "video stream holds no decodable frame")
            rotation = normalize_rotation(getattr(first, "rotation", 0))
            colorspace, color_range = getattr(first, "colorspace", None), getattr(first, "color_range", 0)
            container.seek(0)
        info = stream_facts(path, stream, rotation)
        info = replace(info, color_matrix=matrix_for(colorspace), full_range=int(color_range or 0) == 2)
        if not count_frames:
            return info
        count, vfr = _count_packets(path, container, stream)
    return replace(info, num_frames=count, num_frames_exact=True, variable_frame_rate=vfr)


def _count_packets(path, container, stream) -> tuple[int, bool]:
    av = _av()
    pts = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # flush packet at the end
                continue
            pts.append(packet.pts if packet.pts is not None else packet.dts)
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"demuxing failed after {len(pts)} packet(s): {_ffmpeg_reason(exc)}") from exc
    ts = sorted(p for p in pts if p is not None)
    steps = {b - a for a, b in zip(ts, ts[1:])}
    # Constant frame rate when every step is the same up to the timestamp rounding (±1 tick).
    vfr = bool(steps) and (max(steps) - min(steps) > 1)
    return len(pts), vfr
