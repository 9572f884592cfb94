"""What a training loader delivers: a typed batch, and the decode counts of its items.

Every loader yields :class:`Batch` objects: uint8 frames on the training device (clips
``(B, T, H, W, 3)``, images ``(B, H, W, 3)``, NTechLab's pairs ``(B, 2, T, H, W, 3)``), float
labels ``(B,)`` and, for Selim's cut-outs, a mapping of per-item arrays. A batch unpacks as
``frames, labels`` like the tuples the loaders gave before.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class WindowCounts:
    """Per item of a host batch: frames decoded (None when the reader does not count: images,
    pairs), frames a keyframe-seeking decode should need, and seeks that missed their keyframe."""

    decoded: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    misses: list = field(default_factory=list)

    def __post_init__(self):
        if not len(self.decoded) == len(self.expected) == len(self.misses):
            raise ValueError(f"counts of {len(self.decoded)}, {len(self.expected)} and {len(self.misses)} items")


@dataclass
class Batch:
    """One batch: ``frames`` (uint8), ``labels`` (float ``(B,)``), optional cut-out ``extras``
    and, from CPU readers, the items' :class:`WindowCounts`."""

    frames: torch.Tensor
    labels: torch.Tensor
    extras: dict | None = None
    counts: WindowCounts | None = None

    def __post_init__(self):
        if self.frames.dim() not in (4, 5, 6) or self.labels.dim() != 1 or len(self.labels) != len(self.frames):
            raise ValueError(f"a batch is uint8 frames (B, ...) and labels (B,), got {tuple(self.frames.shape)} "
                             f"and {tuple(self.labels.shape)}")

    def __iter__(self):  # ``frames, labels = batch``
        return iter((self.frames, self.labels))

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        extras = f", extras={sorted(self.extras)}" if self.extras else ""
        return (f"Batch(frames={tuple(self.frames.shape)} {self.frames.dtype} on {self.frames.device}, "
                f"labels={tuple(self.labels.shape)}{extras})")

    def pin_memory(self) -> "Batch":
        """Page-locked host copies (the DataLoader calls this when ``pin_memory`` is on)."""
        extras = {k: v.pin_memory() for k, v in self.extras.items()} if self.extras else self.extras
        return Batch(self.frames.pin_memory(), self.labels.pin_memory(), extras, self.counts)

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        extras = ({k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()}
                  if self.extras else self.extras)
        return Batch(self.frames.to(device, non_blocking=non_blocking), self.labels.to(device, non_blocking=non_blocking),
                     extras, self.counts)

    def record_stream(self, stream) -> None:
        """Keep the device tensors alive for ``stream`` (they were copied on another one)."""
        for t in [self.frames, self.labels] + list((self.extras or {}).values()):
            t.record_stream(stream)


__all__ = ["Batch", "WindowCounts"]
