"""What every backend shares: the reader interface, the decode plan, output assembly."""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, replace
from typing import Iterator, Optional

import numpy as np
import torch

from dfdc_fast.io.selectors import All, Every, First, FrameSelector, SelectorLike, as_selector
from dfdc_fast.io.types import RawVideo, Video, VideoInfo, normalize_rotation  # noqa: F401 (readers import it here)


class VideoReader(abc.ABC):
    """A decoder that can be reused across many videos (open once, ``read`` many, ``close``).

    Reusing one reader matters on the GPU, where creating a hardware decoder session
    costs more than decoding a short clip.
    """

    #: backend name, as accepted by ``decoder=``
    name: str = ""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    @abc.abstractmethod
    def read(self, path: str | os.PathLike, frames: SelectorLike = None) -> Video:
        """Decode the selected frames of ``path``; raises :class:`VideoDecodeError` for bad input."""

    def read_raw(self, path: str | os.PathLike, frames: SelectorLike = None) -> RawVideo:
        """Decode the selected frames without converting them to RGB (see :class:`RawVideo`)."""
        raise NotImplementedError(f"the {self.name} reader has no raw (YUV) output; use decoder='pyav' or 'nvdec'")

    def iter_raw(self, path: str | os.PathLike, frames: SelectorLike = None, segment: int = 600) -> Iterator[RawVideo]:
        """The frames of :meth:`read_raw`, ``segment`` at a time, so that a long video is
        never in memory whole (``frames``: None, All or First(n)). Each item holds the
        absolute indices of its frames; the last one (possibly empty) ends the video and
        alone carries the exact frame count. A bad video raises :class:`VideoDecodeError`
        when it is found, possibly after some segments."""
        raise NotImplementedError(f"the {self.name} reader cannot stream raw frames; use decoder='pyav' or 'nvdec'")

    def info(self, path: str | os.PathLike) -> VideoInfo:
        """Header information without decoding the whole video."""
        from dfdc_fast.io.header import read_header

        return read_header(path)

    def close(self) -> None:
        """Release decoder sessions. The reader must not be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device})"


@dataclass
class DecodePlan:
    """Which frames to decode for a selection, given what the header says.

    ``wanted`` is None for streaming selections (All, Every, First) whose indices are
    only final once the real frame count is known; ``stop`` is the number of leading
    frames that must be decoded (None: to the end).
    """

    selector: FrameSelector
    wanted: Optional[np.ndarray]
    keep: Optional[frozenset]
    stop: Optional[int]

    @classmethod
    def make(cls, frames: SelectorLike, header_frames: int) -> "DecodePlan":
        sel = as_selector(frames)
        if sel.needs_count:
            wanted = sel.resolve(header_frames)
            return cls(sel, wanted, frozenset(wanted.tolist()), int(wanted.max()) + 1 if wanted.size else 0)
        stop = sel.n if isinstance(sel, First) else None
        return cls(sel, None, None, stop)

    def wants(self, index: int) -> bool:
        if self.keep is not None:
            return index in self.keep
        sel = self.selector
        if isinstance(sel, Every):
            return index >= sel.start and (index - sel.start) % sel.n == 0
        return self.stop is None or index < self.stop

    def capacity(self, header_frames: int) -> int:
        """Frames the output buffer should hold (a guess for streaming selections)."""
        if self.wanted is not None:
            return len(self.keep)
        n = header_frames if self.stop is None else min(self.stop, max(header_frames, 1))
        if isinstance(self.selector, Every):
            n = len(range(self.selector.start, max(n, 1), self.selector.n))
        return max(n, 1)


@dataclass
class Collected:
    """What a decode pass produced: the indices to return and the video's frame count."""

    indices: np.ndarray
    num_frames: int
    exact: bool
    #: True when the header's frame count misled a count-dependent selection, so some of
    #: ``indices`` were not kept; the reader decodes again for exactly those.
    incomplete: bool


class FrameCollector:
    """Keeps the selected frames of one in-order decode pass (shared by the backends).

    Call :meth:`slot` once per decoded frame; it returns the buffer row to write that
    frame into, or None to skip it. Stop decoding when :attr:`done`.
    """

    def __init__(self, plan: DecodePlan, header_frames: int, alloc):
        self.plan = plan
        self.header_frames = header_frames
        self._alloc = alloc
        self.buffer = alloc(plan.capacity(header_frames))
        self.kept: list[int] = []
        self.decoded = 0
        self._stopped_early = False

    def slot(self) -> Optional[torch.Tensor]:
        index = self.decoded
        self.decoded += 1
        if not self.plan.wants(index):
            return None
        if len(self.kept) == self.buffer.shape[0]:  # the header under-reported the count
            self.buffer = torch.cat([self.buffer, self._alloc(self.buffer.shape[0])])
        self.kept.append(index)
        return self.buffer[len(self.kept) - 1]

    @property
    def done(self) -> bool:
        if self.plan.stop is not None and self.decoded >= self.plan.stop:
            self._stopped_early = True
        return self._stopped_early

    def finish(self, path: str, listed_frames: int) -> Collected:
        """Validate the pass (no frame, truncation) and resolve the final indices."""
        if self.decoded == 0:
            from dfdc_fast.io.errors import VideoDecodeError

            raise VideoDecodeError(path, "video stream holds no decodable frame")
        reached_end = not self._stopped_early
        if reached_end:
            check_complete(path, self.decoded, listed_frames)
        indices, num_frames, exact = final_indices(self.plan, self.decoded, reached_end, self.header_frames)
        return Collected(indices, num_frames, exact, not set(indices.tolist()) <= set(self.kept))


class SegmentCollector:
    """The in-order decode pass of :meth:`VideoReader.iter_raw`: frames are written into a
    buffer of ``size`` rows, which is handed on when full, and a new one is allocated only
    when the next frame comes (so at most one segment is held by the reader)."""

    def __init__(self, frames: SelectorLike, size: int, alloc, header_frames: int = 0):
        sel = as_selector(frames)
        if not isinstance(sel, (All, First)):
            raise ValueError(f"streamed decoding takes every frame or the first n, got {sel!r}")
        if size < 1:
            raise ValueError(f"segment must be >= 1 frame, got {size}")
        self.stop = sel.n if isinstance(sel, First) else None
        self.size = size
        self._alloc = alloc
        self.header_frames = header_frames
        self.buffer: Optional[torch.Tensor] = None
        self.filled = 0
        self.decoded = 0

    def slot(self) -> torch.Tensor:
        if self.buffer is None:  # sized by what the header says is left: a short video gets no more
            left = self.header_frames - self.decoded
            if self.stop is not None:
                left = min(left, self.stop - self.decoded)
            self.buffer, self.filled = self._alloc(min(self.size, max(left, 1))), 0
        elif self.filled == self.buffer.shape[0]:  # the header under-reported: grow up to a segment
            more = min(self.buffer.shape[0], self.size - self.filled)
            self.buffer = torch.cat([self.buffer, self._alloc(more)])
        row = self.buffer[self.filled]
        self.filled += 1
        self.decoded += 1
        return row

    @property
    def full(self) -> bool:
        return self.buffer is not None and self.filled == self.size

    @property
    def done(self) -> bool:
        return self.stop is not None and self.decoded >= self.stop

    def take(self) -> tuple[Optional[torch.Tensor], np.ndarray]:
        """The filled rows (None when there are none) and their absolute frame indices."""
        start = self.decoded - self.filled
        rows = None if self.buffer is None else self.buffer[:self.filled]
        self.buffer, self.filled = None, 0
        return rows, np.arange(start, self.decoded, dtype=np.int64)

    def finish(self, path: str, listed_frames: int) -> tuple[int, bool]:
        """Validate the pass as :meth:`FrameCollector.finish` does; the frame count and
        whether it is exact."""
        if self.decoded == 0:
            from dfdc_fast.io.errors import VideoDecodeError

            raise VideoDecodeError(path, "video stream holds no decodable frame")
        if self.done:
            return self.header_frames, False
        check_complete(path, self.decoded, listed_frames)
        return self.decoded, True


def segment_video(rows: Optional[torch.Tensor], indices: np.ndarray, shape: tuple, layout: str, info: VideoInfo,
                  decoder: str, device: torch.device, last: bool) -> RawVideo:
    """One item of :meth:`VideoReader.iter_raw` (``rows`` None: an empty one)."""
    if rows is None:
        rows = torch.empty((0, *shape), dtype=torch.uint8)
    return RawVideo(rows.to(device, non_blocking=True), layout, torch.from_numpy(indices), info, decoder, last=last)


def check_complete(path: str, decoded: int, listed: int) -> None:
    """Raise when decoding ended well before the frame count the container's index lists.

    A faststart MP4 cut short still opens and decodes its first frames without any
    FFmpeg error, so a truncated file shows up only as missing frames. One missing frame
    (or 1%) is tolerated: some encoders list a frame the decoder drops.
    """
    if listed > 0 and listed - decoded > max(1, listed // 100):
        from dfdc_fast.io.errors import VideoDecodeError

        raise VideoDecodeError(path, f"truncated or corrupt: decoded {decoded} of the {listed} frames the container lists")


def final_indices(plan: DecodePlan, decoded: int, reached_end: bool, header_frames: int) -> tuple[np.ndarray, int, bool]:
    """Indices to return, and the video's frame count (and whether it is exact).

    Raises ``ValueError`` when the selection does not fit the frames that really exist.
    """
    num_frames = decoded if reached_end else header_frames
    if plan.wanted is None or (reached_end and decoded != header_frames):
        return plan.selector.resolve(num_frames), num_frames, reached_end
    return plan.wanted, num_frames, reached_end


def assemble(
    buffer: torch.Tensor,
    kept: list[int],
    indices: np.ndarray,
    rotation: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Order the decoded frames as requested (duplicates included), move them to ``device``
    and apply the display rotation there."""
    kept_arr = np.asarray(kept, dtype=np.int64)
    pos = np.searchsorted(kept_arr, indices)
    if pos.size and (pos.max(initial=0) >= kept_arr.size or not np.array_equal(kept_arr[pos], indices)):
        missing = sorted(set(indices.tolist()) - set(kept))
        raise RuntimeError(f"internal error: frames {missing[:10]} were not decoded")
    frames = buffer[: len(kept)]
    if not (len(pos) == len(kept) and np.array_equal(pos, np.arange(len(kept)))):
        frames = frames[torch.from_numpy(pos).to(frames.device)]
    frames = frames.to(device, non_blocking=True)
    frames = rotate(frames, rotation)
    return frames, torch.from_numpy(indices.copy())


def rotate(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """Rotate ``(T, H, W, C)`` frames counter-clockwise by ``rotation`` degrees (multiple of 90)."""
    k = (int(rotation) // 90) % 4
    if k == 0:
        return frames.contiguous()
    return torch.rot90(frames, k=k, dims=(1, 2)).contiguous()


def with_count(info: VideoInfo, num_frames: int, exact: bool) -> VideoInfo:
    return replace(info, num_frames=num_frames, num_frames_exact=exact)
