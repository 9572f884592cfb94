"""What makes a seed system itself, as one object the jobs take instead of a name.

A :class:`Recipe` holds a DFDC winner's engine requests (what extraction prepares for its
training, what inference cuts for its models), its settings' defaults, its training
config names, its per-video aggregator and its published weights (where, which files, how
each becomes a dfdc_fast checkpoint). The jobs ask it; nothing in them compares names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from dfdc_fast.models.convert import Converted


@dataclass(frozen=True)
class PublishedWeights:
    """The authors' released files: where they are, their names, their converter
    (``convert(path) -> (output file name, Converted)``), and the private LB they scored."""

    where: str
    files: tuple[str, ...]
    convert: Callable[[str], tuple[str, Converted]]
    private_lb: float

    def __post_init__(self):
        if not self.files:
            raise ValueError("a published weights set names its files")


def _no_check(cfg: Any) -> None:
    return None


@dataclass(frozen=True)
class Recipe:
    """One seed system.

    * ``extract_defaults`` / ``infer_defaults``: the job settings it gives the fields a
      user leaves unset (extract: None; infer: at their default).
    * ``extract_request(cfg)`` / ``infer_request(config, kinds)``: the engine requests.
    * ``check_extract(cfg)``: refuses extraction settings the recipe cannot work with.
    * ``landmarks``: crop records carry the detector's five points (Selim's cut-outs).
    * ``folds``: records carry a fold (Selim's and NTechLab's validation splits).
    * ``records_recipe``: settings and summaries name the recipe (the Medics' folders keep
      the layout they always had).
    """

    name: str
    weights: PublishedWeights
    train_configs: tuple[str, ...]
    aggregator: str
    extract_defaults: dict
    extract_request: Callable[[Any], Any]
    infer_request: Callable[[Any, set], Any]
    infer_defaults: dict = field(default_factory=dict)
    check_extract: Callable[[Any], None] = _no_check
    landmarks: bool = False
    folds: bool = False
    records_recipe: bool = True

    def convert(self, path: str | os.PathLike) -> tuple[str, Converted]:
        return self.weights.convert(os.fspath(path))
