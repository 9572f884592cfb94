"""Checks of option values that every job's config runs in ``__post_init__``, before
anything is written: a refused run leaves no folder, lock or submission behind.

Each raises :class:`~dfdc_fast.errors.ConfigError` naming the option as its flag
(``frames`` -> ``--frames``), so the command line and a library caller read the same
one-line message. NaN is refused wherever a number is asked for (``nan > 0`` is False, so
a plain comparison would let it through one check and fail another).
"""
from __future__ import annotations

import math
from typing import Optional

from dfdc_fast.errors import ConfigError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def integer(name: str, value, low: int, high: Optional[int] = None, *, none_ok: bool = False) -> None:
    """``value`` is an integer in ``[low, high]`` (or None when ``none_ok``)."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag(name)} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{flag(name)} must be {span}, got {value}")


def number(name: str, value, low: float, *, strict: bool = True, none_ok: bool = False) -> None:
    """``value`` is a finite number above ``low`` (``strict``) or at least ``low``."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{flag(name)} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{flag(name)} must be {'>' if strict else '>='} {low:g}, got {value:g}")


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, allowed))}, got {value!r}")


__all__ = ["flag", "integer", "number", "choice"]
