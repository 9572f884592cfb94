"""What makes a seed system itself, as one object the jobs take instead of a name.

A :class:`Recipe` holds a DFDC winner's published weights (where, which files, how each
becomes a dfdc_fast checkpoint) next to its extraction and inference choices. The jobs
ask it; nothing below compares recipe names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from dfdc_fast.models.convert import Converted


@dataclass(frozen=True)
class PublishedWeights:
    """The authors' released files: where they are, their names, and their converter
    (``convert(path) -> (output file name, Converted)``)."""

    where: str
    files: tuple[str, ...]
    convert: Callable[[str], tuple[str, Converted]]
    private_lb: float

    def __post_init__(self):
        if not self.files:
            raise ValueError("a published weights set names its files")


@dataclass(frozen=True)
class Recipe:
    """One seed system. ``infer_defaults`` are the InferConfig fields it sets when the user
    leaves them at their default; ``train_configs`` the shipped training config names."""

    name: str
    weights: PublishedWeights
    train_configs: tuple[str, ...]
    aggregator: str
    infer_defaults: dict = field(default_factory=dict)

    def convert(self, path: str | os.PathLike) -> tuple[str, Converted]:
        return self.weights.convert(os.fspath(path))
