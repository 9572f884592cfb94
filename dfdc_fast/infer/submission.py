"""DFDC submission files (``filename,label``) and the competition metric.

Kaggle scored a notebook only if its ``submission.csv`` had a row for every test video;
a missing row or a NaN cost the whole run. So writing is strict (every expected video,
finite values in [0, 1], nothing extra) and atomic (a killed notebook never leaves half
a file), and fallbacks such as 0.5 for no-face videos must be filled in by the caller.
"""
from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Mapping

from dfdc_fast.files import atomic_write
from dfdc_fast.metrics import balanced_log_loss, dfdc_log_loss  # noqa: F401  (re-exported)

__all__ = [
    "balanced_log_loss",
    "dfdc_log_loss",
    "read_submission",
    "validate_submission",
    "write_submission",
]

HEADER = ("filename", "label")


def _check_value(name: str, value) -> float:
    p = float(value)
    if not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"score for {name!r} must be finite and within [0, 1], got {value!r}")
    return p


def _format(p: float) -> str:
    # repr is the shortest string that reads back to the same float (0.999, not 0.999000).
    return repr(p)


def write_submission(path: str, scores: Mapping[str, float], expected: list[str] | None = None) -> str:
    """Write ``filename,label`` rows atomically; returns ``path``.

    Rows follow ``expected`` (the sample submission's order) when given, else sorted
    filenames. With ``expected``, a missing or an extra filename raises ``ValueError``
    listing them: fill fallbacks (e.g. ``fallback_score('no_face')``) before calling.
    """
    checked = {str(name): _check_value(str(name), v) for name, v in scores.items()}
    if expected is not None:
        order = [str(n) for n in expected]
        dup = sorted(n for n, k in Counter(order).items() if k > 1)
        if dup:
            raise ValueError(f"expected filenames repeat: {dup[:20]}")
        missing = [n for n in order if n not in checked]
        extra = sorted(set(checked) - set(order))
        if missing or extra:
            raise ValueError(
                f"submission does not match the expected videos: {len(missing)} missing {missing[:20]}, "
                f"{len(extra)} extra {extra[:20]}"
            )
    else:
        order = sorted(checked)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows((name, _format(checked[name])) for name in order)

    # a temporary beside the target, checked, fsync'ed and renamed; a full disk is a StorageError
    atomic_write(os.path.abspath(path), write)
    return path


def _read_rows(path: str) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        got = rows[0] if rows else "an empty file"
        raise ValueError(f"{path}: header must be 'filename,label', got {got}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 fields, got {row}")
        out.append((row[0], row[1].strip()))  # names as written (CSV quoting keeps commas and spaces)
    return out


def read_submission(path: str) -> dict[str, float]:
    """Read a submission into {filename: label}. Duplicate filenames or non-numbers raise."""
    scores: dict[str, float] = {}
    for name, value in _read_rows(path):
        if name in scores:
            raise ValueError(f"{path}: filename {name!r} appears more than once")
        try:
            scores[name] = float(value)
        except ValueError:
            raise ValueError(f"{path}: label {value!r} for {name!r} is not a number") from None
    return scores


def validate_submission(path: str, expected: list[str] | None = None) -> dict:
    """Check a written file without raising on content; returns a report.

    Keys: ``rows`` (count), ``missing``/``extra`` (vs ``expected``; empty without it),
    ``out_of_range``, ``nonfinite`` (includes labels that are not numbers),
    ``duplicates`` (filename lists), and ``ok``. A file without the header still raises.
    """
    rows = _read_rows(path)
    seen: set[str] = set()
    duplicates, out_of_range, nonfinite = set(), [], []
    for name, value in rows:
        if name in seen:
            duplicates.add(name)
        seen.add(name)
        try:
            p = float(value)
        except ValueError:
            p = math.nan
        if not math.isfinite(p):
            nonfinite.append(name)
        elif not 0.0 <= p <= 1.0:
            out_of_range.append(name)
    missing = [n for n in expected if n not in seen] if expected is not None else []
    extra = sorted(seen - set(expected)) if expected is not None else []
    report = {
        "rows": len(rows),
        "missing": missing,
        "extra": extra,
        "out_of_range": out_of_range,
        "nonfinite": nonfinite,
        "duplicates": sorted(duplicates),
    }
    report["ok"] = not any(report[k] for k in ("missing", "extra", "out_of_range", "nonfinite", "duplicates"))
    return report
