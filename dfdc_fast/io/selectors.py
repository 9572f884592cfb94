"""Which frames of a video to return.

A selector turns a frame count into a list of absolute 0-based frame indices. Every
selector validates its arguments when built and its result when resolved, so no
backend ever silently drops an index (PyNvVideoCodec, for one, drops duplicate and
out-of-range indices with only a warning).

``frames=`` in :func:`dfdc_fast.io.read_video` accepts a selector, ``None`` (every
frame) or a sequence of ints (same as :class:`Indices`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

__all__ = ["FrameSelector", "All", "Every", "First", "Evenly", "Chunk", "Indices", "as_selector", "num_chunks"]


class FrameSelector:
    """Base class. Subclasses implement :meth:`resolve`."""

    #: True when the selection depends on the total frame count (so a header that
    #: over- or under-reports it must be corrected before trusting the result).
    needs_count: bool = True

    def resolve(self, num_frames: int) -> np.ndarray:
        """Indices (int64, in the order frames are returned) for a video of ``num_frames``."""
        raise NotImplementedError

    def upper_bound(self, num_frames: int) -> int:
        """Frames ``[0, upper_bound)`` must be decoded to serve this selection."""
        idx = self.resolve(num_frames)
        return int(idx.max()) + 1 if idx.size else 0


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class All(FrameSelector):
    """Every frame."""

    needs_count = False

    def resolve(self, num_frames: int) -> np.ndarray:
        return np.arange(num_frames, dtype=np.int64)


@dataclass(frozen=True)
class Every(FrameSelector):
    """Every ``n``-th frame from ``start``: ``start, start+n, ...`` (n larger than the video gives ``[start]``)."""

    n: int
    start: int = 0
    needs_count = False

    def __post_init__(self):
        _positive_int("Every.n", self.n)
        _non_negative_int("Every.start", self.start)

    def resolve(self, num_frames: int) -> np.ndarray:
        if self.start >= num_frames:
            raise ValueError(f"Every(start={self.start}) is past the end of a video with {num_frames} frames")
        return np.arange(self.start, num_frames, self.n, dtype=np.int64)


@dataclass(frozen=True)
class First(FrameSelector):
    """The first ``n`` frames, or all of them when the video is shorter."""

    n: int
    needs_count = False

    def __post_init__(self):
        _positive_int("First.n", self.n)

    def resolve(self, num_frames: int) -> np.ndarray:
        return np.arange(min(self.n, num_frames), dtype=np.int64)

    def upper_bound(self, num_frames: int) -> int:
        return min(self.n, num_frames)


@dataclass(frozen=True)
class Evenly(FrameSelector):
    """``k`` frames evenly spaced over the whole video, first and last included
    (``linspace(0, T-1, k)`` rounded down, as the DFDC seeds sampled). A video with
    fewer than ``k`` frames gives each of its frames once."""

    k: int

    def __post_init__(self):
        _positive_int("Evenly.k", self.k)

    def resolve(self, num_frames: int) -> np.ndarray:
        if num_frames <= self.k:
            return np.arange(num_frames, dtype=np.int64)
        return np.linspace(0, num_frames - 1, self.k).astype(np.int64)


@dataclass(frozen=True)
class Chunk(FrameSelector):
    """Chunk ``index`` of consecutive ``size``-frame chunks: ``[index*size, (index+1)*size)``.

    The last chunk may be shorter than ``size``; a chunk starting past the end raises
    ``ValueError``. :func:`num_chunks` says how many chunks a video has.
    """

    index: int
    size: int = 150

    def __post_init__(self):
        _non_negative_int("Chunk.index", self.index)
        _positive_int("Chunk.size", self.size)

    def resolve(self, num_frames: int) -> np.ndarray:
        start = self.index * self.size
        if start >= num_frames:
            raise ValueError(
                f"Chunk(index={self.index}, size={self.size}) starts at frame {start}, past the end of a video "
                f"with {num_frames} frames ({num_chunks(num_frames, self.size)} chunk(s))"
            )
        return np.arange(start, min(start + self.size, num_frames), dtype=np.int64)


def num_chunks(num_frames: int, size: int = 150) -> int:
    """Number of ``size``-frame chunks (the last one possibly partial) in ``num_frames``."""
    return -(-num_frames // _positive_int("size", size))


@dataclass(frozen=True)
class Indices(FrameSelector):
    """Explicit frame indices, returned in the given order, duplicates kept.

    Every index must satisfy ``0 <= i < num_frames``; anything else raises ``ValueError``
    naming the offending indices (nothing is dropped silently).
    """

    indices: tuple

    def __init__(self, indices: Sequence[int]):
        arr = np.asarray(list(indices))
        if arr.size == 0:
            raise ValueError("Indices needs at least one frame index")
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"Indices must be a flat sequence of ints, got {indices!r}")
        if (arr < 0).any():
            raise ValueError(f"frame indices must be >= 0, got {sorted(set(arr[arr < 0].tolist()))}")
        object.__setattr__(self, "indices", tuple(int(i) for i in arr))

    def resolve(self, num_frames: int) -> np.ndarray:
        arr = np.asarray(self.indices, dtype=np.int64)
        bad = arr[arr >= num_frames]
        if bad.size:
            raise ValueError(
                f"frame indices {sorted(set(bad.tolist()))} are out of range for a video with {num_frames} frames"
            )
        return arr

    def upper_bound(self, num_frames: int) -> int:
        return max(self.indices) + 1


SelectorLike = Union[FrameSelector, Sequence[int], None]


def as_selector(frames: SelectorLike) -> FrameSelector:
    """Normalise the ``frames=`` argument of the readers."""
    if frames is None:
        return All()
    if isinstance(frames, FrameSelector):
        return frames
    if isinstance(frames, (int, np.integer)):
        raise ValueError(f"frames={frames!r}: pass First({frames}) for the first frames or [{frames}] for one index")
    if isinstance(frames, (list, tuple, range, np.ndarray)):
        return Indices(frames)
    raise ValueError(
        f"frames must be None, a FrameSelector (All, Every, First, Evenly, Chunk, Indices) "
        f"or a sequence of ints; got {type(frames).__name__}"
    )
