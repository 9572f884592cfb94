"""What every backend shares: the reader interface, the decode plan, output assembly."""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from dfdc_fast.io.selectors import FrameSelector, SelectorLike, as_selector
from dfdc_fast.io.types import Video, VideoInfo


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
        from dfdc_fast.io.selectors import First

        stop = sel.n if isinstance(sel, First) else None
        return cls(sel, None, None, stop)

    def wants(self, index: int) -> bool:
        if self.keep is not None:
            return index in self.keep
        sel = self.selector
        from dfdc_fast.io.selectors import Every

        if isinstance(sel, Every):
            return index >= sel.start and (index - sel.start) % sel.n == 0
        return self.stop is None or index < self.stop

    def capacity(self, header_frames: int) -> int:
        """Frames the output buffer should hold (a guess for streaming selections)."""
        if self.wanted is not None:
            return len(self.keep)
        n = header_frames if self.stop is None else min(self.stop, max(header_frames, 1))
        from dfdc_fast.io.selectors import Every

        if isinstance(self.selector, Every):
            n = len(range(self.selector.start, max(n, 1), self.selector.n))
        return max(n, 1)


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


def normalize_rotation(degrees: float | int | None) -> int:
    """Display rotation in {0, 90, 180, 270}; non-right angles round to the nearest."""
    if degrees is None:
        return 0
    return int(round(float(degrees) / 90.0)) % 4 * 90


def with_count(info: VideoInfo, num_frames: int, exact: bool) -> VideoInfo:
    return replace(info, num_frames=num_frames, num_frames_exact=exact)
