"""The plan of an epoch: which clip, label and frame window each position of it holds.

An :class:`EpochPlan` depends only on ``(seed, epoch)``: the order of samples (balanced
draws, or shuffles of NTechLab's pairs), each item's window (drawn from ``(seed, epoch,
position)`` in training, from frame 0 in validation) and each pair's augmentation seed. So
every loader delivers the same batches for it, and a resumed run replays the epoch it
stopped in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from dfdc_fast.train.data import Sample, balanced_epoch, clip_start
from dfdc_fast.train.windows import packet_index

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def window_indices(sample: Sample, length: int, rng: random.Random | None) -> list[int]:
    """Frame numbers of one clip window; a clip shorter than ``length`` repeats its last frame.
    The clip's length comes from the index, or from its packet index when the index lacks it."""
    n = sample.frames if sample.frames > 0 else packet_index(sample.path).num_frames
    start = clip_start(n, length, rng)
    idx = list(range(start, min(start + length, n)))
    return idx + [idx[-1]] * (length - len(idx))


def sample_rng(seed: int, epoch: int, position: int, train: bool) -> random.Random | None:
    """The random source of one item (None in validation: windows start at frame 0)."""
    return random.Random((seed * 1_000_003 + epoch) * 10_000_019 + position) if train else None


@dataclass(frozen=True)
class Item:
    """One position of an epoch: a clip and its window (``window`` None for a 2D image).
    A 2D image with ``diff`` not None also returns Selim's cut-out inputs (landmarks, the
    kept diff pixels of each bit mask; ``diff`` "" when it has no mask)."""

    path: str
    label: float
    window: tuple | None = None
    landmarks: tuple | None = None
    diff: str | None = None


@dataclass(frozen=True)
class PairItem:
    """One of NTechLab's pairs: frames ``indices`` of the REAL and the FAKE clip, augmented
    alike from ``seed`` (training) or centre-cropped (``train`` False)."""

    real: str
    fake: str
    indices: tuple
    seed: int
    train: bool
    label: float = 0.5  # the target is drawn in the step (mixup); kept for the plan's labels


@dataclass
class EpochPlan:
    """Every item of one epoch, in order, and how they are cut into batches."""

    items: list
    batch_size: int
    drop_last: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def __len__(self) -> int:
        n = len(self.items)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch(self, k: int) -> list:
        return self.items[k * self.batch_size:(k + 1) * self.batch_size]

    @property
    def kind(self) -> str:
        if self.items and isinstance(self.items[0], PairItem):
            return "pairs"
        return "2d" if self.items and self.items[0].window is None else "3d"

    def labels(self) -> torch.Tensor:
        return torch.tensor([it.label for it in self.items], dtype=torch.float32)


def plan_epoch(samples: Sequence[Sample], order: Sequence[int], *, frames: int, batch_size: int, train: bool,
               seed: int, epoch: int, drop_last: bool = True, cutout: bool = False) -> EpochPlan:
    """The :class:`EpochPlan` of ``samples[order]``: windows drawn from ``(seed, epoch, position)``
    in training, starting at frame 0 in validation (``train=False``). ``cutout``: 2D items
    also deliver Selim's cut-out inputs."""
    items = []
    for position, i in enumerate(order):
        s = samples[i]
        if s.frames == 0 and s.path.lower().endswith(IMAGE_SUFFIXES):
            items.append(Item(s.path, float(s.label), landmarks=s.landmarks, diff=s.diff or "") if cutout
                         else Item(s.path, float(s.label)))
        else:
            rng = sample_rng(seed, epoch, position, train)
            items.append(Item(s.path, float(s.label), tuple(window_indices(s, frames, rng))))
    return EpochPlan(items, batch_size, drop_last)


def plan_pairs(pairs: Sequence, order: Sequence[int], *, indices: Sequence[int], batch_size: int, train: bool,
               seed: int, epoch: int, drop_last: bool = True) -> EpochPlan:
    """The :class:`EpochPlan` of NTechLab's pairs ``pairs[order]``: each item's augmentation
    (and re-encode) seed depends on ``(seed, epoch, position)`` only."""
    items = []
    for position, i in enumerate(order):
        p = pairs[i]
        rng = sample_rng(seed, epoch, position, True)
        items.append(PairItem(p.real, p.fake, tuple(int(k) for k in indices), rng.getrandbits(62), train))
    return EpochPlan(items, batch_size, drop_last)


def epoch_order(samples, epoch: int, items: int, *, seed: int, mode: str) -> list[int]:
    """``items`` sample indices for one epoch: balanced draws, repeated with fresh shuffles
    when the data holds fewer items than the steps ask for."""
    order: list[int] = []
    k = 0
    while len(order) < items:
        order += balanced_epoch(samples, epoch * 1000 + k, seed=seed, mode=mode)
        k += 1
    return order[:items]


def pair_epoch_order(count: int, epoch: int, items: int, *, seed: int) -> list[int]:
    """``items`` pair indices for one epoch: shuffles of all pairs drawn from ``(seed, epoch)``."""
    if count < 1:
        return []
    order: list[int] = []
    k = 0
    while len(order) < items:
        idx = list(range(count))
        random.Random(seed * 100_003 + epoch * 1000 + k).shuffle(idx)
        order += idx
        k += 1
    return order[:items]
