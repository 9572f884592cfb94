"""Selim Seferbekov's 16 folds over the DFDC parts, for any job's index.

DFDC's 50 parts go three at a time into folds 0..14 and the last five (45-49) into fold
15 (``preprocessing/generate_folds.py``); fold 0 (parts 0-2) is the hold-out all his models
validated on. A fake sits in its original's part, so it lands in its original's fold;
:func:`fold_of` takes the fold from the original's part and :func:`check_folds` refuses an
index where a fake and its original disagree (his ``assert``).

Videos outside the DFDC part layout have no part number. They get a fold from a stable
hash of their original's name (the fake's ``original``, or the REAL video's own name),
so fakes still share their original's fold; the index records which rule gave each
fold (``fold_from``: ``part`` or ``hash``), never silently.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Iterable, Optional

N_FOLDS = 16
PARTS_PER_FOLD = 3
_PART = re.compile(r"(\d+)$")


def part_number(part: str) -> Optional[int]:
    """45 for ``dfdc_train_part_45``; None without a trailing number."""
    m = _PART.search(part or "")
    return int(m.group(1)) if m else None


def fold_of_part(part: int, n_folds: int = N_FOLDS, per_fold: int = PARTS_PER_FOLD) -> int:
    """Parts 0-2 -> 0, 3-5 -> 1, ..., the rest (45-49 for 16 folds) -> the last fold."""
    if part < 0:
        raise ValueError(f"a DFDC part number is >= 0, got {part}")
    return min(part // per_fold, n_folds - 1)


def group_name(name: str, original: Optional[str]) -> str:
    """The original video a row belongs to (its own name for a REAL one), without extension."""
    return os.path.splitext(os.path.basename(original or name))[0]


def fold_of(part: str, name: str, original: Optional[str], n_folds: int = N_FOLDS) -> tuple[int, str]:
    """``(fold, rule)`` of a video: from its DFDC part (rule ``"part"``), else from a hash of
    its original's name (rule ``"hash"``)."""
    number = part_number(part)
    if number is not None:
        return fold_of_part(number, n_folds), "part"
    digest = hashlib.sha1(group_name(name, original).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_folds, "hash"


def check_folds(rows: Iterable[dict]) -> None:
    """Raise ``ValueError`` when a FAKE row's fold differs from its original's (a leak)."""
    fold_by_video: dict = {}
    rows = list(rows)
    for r in rows:
        if (r.get("label") or "").upper() == "REAL":
            fold_by_video[(r.get("part") or "", r["video"])] = int(r["fold"])
    for r in rows:
        if (r.get("label") or "").upper() != "FAKE" or not r.get("original"):
            continue
        theirs = fold_by_video.get((r.get("part") or "", r["original"]))
        if theirs is not None and theirs != int(r["fold"]):
            raise ValueError(f"{r['video']} is in fold {r['fold']} but its original {r['original']} in fold {theirs}: "
                             "the folds leak")


__all__ = ["N_FOLDS", "PARTS_PER_FOLD", "part_number", "fold_of_part", "group_name", "fold_of", "check_folds"]
