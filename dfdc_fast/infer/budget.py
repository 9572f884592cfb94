"""A time budget that always ends in a complete submission.

Before each group of videos the run picks the richest level whose projected time for all
remaining videos fits what is left of the budget (with a safety margin). Levels cost less
as they go: full recipe, then half the frames and no flip TTA, then one model only, then no
work at all (0.5 with status ``time_budget``). Per-video costs are measured as the run goes.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

#: (name, frames factor, TTA, models: None = all, 1 = the first) per level.
LEVELS = [("full", 1.0, True, None), ("half_frames", 0.5, False, None), ("one_model", 0.5, False, 1), ("skip", 0.0, False, 0)]


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from ``"8.5h"``, ``"30m"``, ``"90s"``, ``"1h30m"`` or a plain number of seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    s = text.strip().lower()
    try:
        return float(s)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", s):
        raise ValueError(f"cannot read a duration from {text!r}: use e.g. 8.5h, 30m, 90s or seconds")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@dataclass
class Budget:
    """Chooses a level per group from measured seconds per video at each level."""

    seconds: float | None
    n_models: int = 1
    safety: float = 0.85
    reserve_s: float = 2.0
    started: float = field(default_factory=time.perf_counter)
    cost: dict = field(default_factory=dict)   # level -> (seconds, videos) measured

    def remaining(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.perf_counter() - self.started)

    def per_video(self, level: int) -> float | None:
        """Measured seconds per video at ``level``, or a projection from a richer level."""
        if level in self.cost:
            s, n = self.cost[level]
            return s / max(1, n)
        if not self.cost:
            return None
        known = min(self.cost)  # the richest level measured
        seconds, videos = self.cost[known]
        return seconds / max(1, videos) * self._relative(level) / self._relative(known)

    def _relative(self, level: int) -> float:
        _, frames, tta, models = LEVELS[level]
        share = 1.0 if models is None else (models / max(1, self.n_models))
        return max(1e-3, frames * (1.0 if tta else 0.5) * share)

    def choose(self, remaining_videos: int, group_size: int) -> int:
        """The level for the next group of ``group_size`` out of ``remaining_videos``."""
        if self.seconds is None:
            return 0
        left = self.remaining() - self.reserve_s
        for level in range(len(LEVELS) - 1):
            per = self.per_video(level)
            if per is None:  # nothing measured yet: try the full recipe if any time is left
                return level if left > 0 else len(LEVELS) - 1
            if per * remaining_videos <= left * self.safety:
                return level
        # even the cheapest real level cannot finish everything: still run this group
        # at that level if it fits, else stop working
        cheapest = len(LEVELS) - 2
        per = self.per_video(cheapest) or 0.0
        return cheapest if per * group_size <= left * self.safety else len(LEVELS) - 1

    def record(self, level: int, seconds: float, videos: int) -> None:
        s, n = self.cost.get(level, (0.0, 0))
        self.cost[level] = (s + seconds, n + videos)
