"""Decode one training window of a face clip, starting at the keyframe before it.

Extraction writes short-GOP face clips (``--clip-keyint``, a keyframe at least every 16
frames by default). A window ``[s, s + T)`` then needs only the frames from the keyframe at
or before ``s``: seek there, decode forward, convert to RGB only the frames the window
uses, and stop at its last frame. With 64-frame windows and keyframes every 16 frames that
is on average 1.12 decoded frames per delivered frame, against ~1.7 when decoding from
frame 0 (the old loader) and ~2.3 for a window at the end of a 150-frame clip.

:class:`PacketIndex` is the clip's frame table, read once by demuxing (no decoding) and
cached per process: frame ``i`` is the ``i``-th presentation timestamp, keyframes are the
packets flagged as such. Frame numbering is the same as ``dfdc_fast.io.read_video``'s
(the ``i``-th frame decoded), and the test suite checks that a window decoded from its
keyframe equals the same frames decoded from the start.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dfdc_fast.io import VideoDecodeError

#: Clips whose packet index a process keeps (a 150-frame index is ~2 KB).
INDEX_CACHE_SIZE = 8192


@dataclass(frozen=True)
class PacketIndex:
    """The frame table of one clip.

    Attributes:
        pts: ``(N,)`` presentation timestamps in frame order (frame ``i`` has ``pts[i]``).
        keyframes: ``(K,)`` frame numbers of the keyframes, ascending.
        codec: the stream's codec name.
        width, height: coded frame size.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    codec: str
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return int(self.pts.shape[0])

    def keyframe_at_or_before(self, frame: int) -> int:
        """Position in ``keyframes`` of the last keyframe at or before ``frame``; -1 when
        ``frame`` precedes every keyframe (decode from the start of the file then)."""
        return int(np.searchsorted(self.keyframes, frame, side="right")) - 1

    def decode_start(self, frame: int) -> int:
        """The first frame a decoder must decode to deliver ``frame``."""
        k = self.keyframe_at_or_before(frame)
        return int(self.keyframes[k]) if k >= 0 else 0

    def max_gop(self) -> int:
        """Longest run of frames between keyframes (from frame 0, to the end)."""
        edges = np.concatenate([[0], self.keyframes, [self.num_frames]])
        return int(np.diff(edges).max()) if self.num_frames else 0


def _av():
    import av

    return av


def _open(path: str):
    av = _av()
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(path, f"not a readable video container ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container, container.streams.video[0]


def read_packet_index(path: str) -> PacketIndex:
    """Demux every packet of ``path``'s video stream (no decoding) into a :class:`PacketIndex`."""
    av = _av()
    path = os.fspath(path)
    container, stream = _open(path)
    pts, key = [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue
            p = packet.pts if packet.pts is not None else packet.dts
            if p is None:
                raise VideoDecodeError(path, f"packet {len(pts)} has no timestamp: cannot seek in this file")
            pts.append(p)
            key.append(bool(packet.is_keyframe))
        codec = stream.codec_context.name
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"demuxing failed after {len(pts)} packet(s): {exc}") from exc
    finally:
        container.close()
    if not pts:
        raise VideoDecodeError(path, "video stream holds no packets")
    pts_a, key_a = np.asarray(pts, np.int64), np.asarray(key, bool)
    order = np.argsort(pts_a, kind="stable")
    sorted_pts = pts_a[order]
    if np.any(np.diff(sorted_pts) == 0):
        raise VideoDecodeError(path, "two packets share a timestamp: frame numbers would be ambiguous")
    frame_of_packet = np.empty_like(order)
    frame_of_packet[order] = np.arange(order.size)
    kf_packets = np.flatnonzero(key_a)
    kf_frames = frame_of_packet[kf_packets]
    by_frame = np.argsort(kf_frames)
    return PacketIndex(sorted_pts, kf_frames[by_frame].astype(np.int64), codec, width, height)


class _IndexCache:
    """A per-process LRU of packet indices, keyed by path, size and mtime."""

    def __init__(self, size: int = INDEX_CACHE_SIZE):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> PacketIndex:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        index = read_packet_index(path)
        with self._lock:
            self._items[key] = index
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return index


_CACHE = _IndexCache()


def packet_index(path: str | os.PathLike) -> PacketIndex:
    """:func:`read_packet_index`, cached per process."""
    return _CACHE.get(os.fspath(path))


@dataclass
class DecodeStats:
    """Frames decoded against frames delivered, summed over windows.

    ``seek_misses`` counts windows whose seek landed after the window start, so they were
    decoded again from frame 0 (never seen on x264 MP4 or VP9 WebM clips; a non-zero count
    means the container's seeking does not do what the packet index says).
    """

    decoded: int = 0
    delivered: int = 0
    windows: int = 0
    seek_misses: int = 0
    expected_decoded: int = 0  # what a keyframe-seeking decoder needs (for decoders that do not report)
    by_backend: dict = field(default_factory=dict)

    def add(self, decoded: int | None, delivered: int, expected: int, seek_misses: int = 0) -> None:
        self.windows += 1
        self.delivered += delivered
        self.expected_decoded += expected
        self.seek_misses += seek_misses
        if decoded is not None:
            self.decoded += decoded

    @property
    def ratio(self) -> float | None:
        """Decoded frames per delivered frame (None when the decoder does not report decoded frames)."""
        return self.decoded / self.delivered if self.delivered and self.decoded else None

    @property
    def expected_ratio(self) -> float | None:
        return self.expected_decoded / self.delivered if self.delivered else None

    def to_dict(self) -> dict:
        return {"windows": self.windows, "delivered_frames": self.delivered, "decoded_frames": self.decoded or None,
                "decoded_per_delivered": round(self.ratio, 4) if self.ratio else None,
                "expected_decoded_per_delivered": round(self.expected_ratio, 4) if self.expected_ratio else None,
                "seek_misses": self.seek_misses}


def expected_decoded(index: PacketIndex, indices: Sequence[int]) -> int:
    """Frames a decoder that seeks to the keyframe before the window must decode."""
    lo, hi = int(min(indices)), int(max(indices))
    return hi - index.decode_start(lo) + 1


def decode_window(path: str | os.PathLike, indices: Sequence[int], *, threads: int = 1,
                  out: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """Frames ``indices`` (any order, repeats allowed) of ``path`` as uint8 RGB ``(T, H, W, 3)``.

    Decoding starts at the keyframe at or before ``min(indices)`` and stops after
    ``max(indices)``. ``out`` (``(T, H, W, 3)`` uint8, e.g. a slot of a shared batch) is
    filled in place when given. Returns ``(frames, decoded, seek_misses)``: ``decoded``
    counts every frame the decoder produced, converted or not.
    """
    av = _av()
    path = os.fspath(path)
    if len(indices) == 0:
        raise ValueError("decode_window needs at least one frame index")
    index = packet_index(path)
    idx = np.asarray(indices, dtype=np.int64)
    n = index.num_frames
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise ValueError(f"{path}: frame indices {sorted(set(bad.tolist()))[:8]} out of range [0, {n})")
    lo, hi = int(idx.min()), int(idx.max())
    h, w = index.height, index.width
    if out is None:
        out = np.empty((idx.size, h, w, 3), dtype=np.uint8)
    elif out.shape != (idx.size, h, w, 3) or out.dtype != np.uint8:
        raise ValueError(f"{path}: out is {out.dtype} {tuple(out.shape)}, expected uint8 {(idx.size, h, w, 3)}")
    # where each wanted frame goes: frame -> output rows (repeats of the last frame pad short clips)
    rows: dict[int, list[int]] = {}
    for r, f in enumerate(idx.tolist()):
        rows.setdefault(f, []).append(r)
    k = index.keyframe_at_or_before(lo)
    decoded = _decode_range(av, path, index, k, lo, rows, threads, out)
    misses = 0
    if decoded < 0:  # the seek landed after the window start: decode from the start instead
        decoded, misses = _decode_range(av, path, index, -1, lo, rows, threads, out), 1
    return out, decoded, misses


def _decode_range(av, path: str, index: PacketIndex, k: int, lo: int, rows: dict, threads: int,
                  out: np.ndarray) -> int:
    """Decode from keyframe ``k`` (-1: the file start) until every frame of ``rows`` is out.
    Returns the frames decoded, or -1 when the first frame decoded lies after ``lo`` (a
    seek that overshot; nothing is trusted then)."""
    container, stream = _open(path)
    todo = set(rows)
    decoded = 0
    try:
        stream.thread_count = threads
        if threads != 1:
            stream.thread_type = "SLICE"  # frame threading decodes ahead of what a window needs
        if k >= 0 and index.keyframes[k] > 0:
            # FFmpeg's demuxers (MP4 with B-frames included) find the keyframe at or before a
            # presentation timestamp; a seek that lands elsewhere is caught below
            container.seek(int(index.pts[index.keyframes[k]]), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            decoded += 1
            ts = frame.pts if frame.pts is not None else frame.dts
            if ts is None:
                raise VideoDecodeError(path, f"decoded frame {decoded} has no timestamp")
            f = int(np.searchsorted(index.pts, ts))
            if f >= index.num_frames or index.pts[f] != ts:
                raise VideoDecodeError(path, f"decoded a frame at pts {ts}, which the packet index does not list")
            if decoded == 1 and f > lo:
                return -1
            if f in todo:
                rgb = frame.to_ndarray(format="rgb24")
                if rgb.shape != out.shape[1:]:
                    raise VideoDecodeError(path, f"frame size {rgb.shape[:2]} differs from the stream's {out.shape[1:3]}")
                for r in rows[f]:
                    out[r] = rgb
                todo.discard(f)
                if not todo:
                    break
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"decoding failed after {decoded} frame(s): {exc}") from exc
    finally:
        container.close()
    if todo:
        raise VideoDecodeError(path, f"frames {sorted(todo)[:8]} were not produced by the decoder "
                                     f"({decoded} decoded; the file is shorter than its index?)")
    return decoded
