"""Wall-clock timing with warm-up and device synchronisation."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Timing:
    """Every timed run, in seconds, and the statistics the reports use."""

    runs_s: list = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def iqr_s(self) -> float:
        if len(self.runs_s) < 2:
            return 0.0
        q = statistics.quantiles(self.runs_s, n=4, method="inclusive")
        return q[2] - q[0]

    def to_dict(self) -> dict:
        return {"runs_s": [round(r, 6) for r in self.runs_s], "median_s": round(self.median_s, 6),
                "iqr_s": round(self.iqr_s, 6)}


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], object], repeats: int = 3, warmup: int = 1,
              device: torch.device | str | None = None) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronising ``device``)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device) if device is not None else None
    for _ in range(warmup):
        fn()
    _sync(device)
    timing = Timing()
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        timing.runs_s.append(time.perf_counter() - t0)
    return timing
