"""Unique output names for the videos of a job.

Two videos must never write to the same output file. A file stem is not enough
(``a/clip.mp4`` and ``b/clip.mp4``, ``same.mp4`` and ``same.webm``, two input folders with
the same names), so each video gets an id from its place in its dataset: DFDC videos keep
their short form (``dfdc_train_part_0/aaqaifqrwn``) wherever that is unique; otherwise the
name keeps its extension, and videos of different inputs that still clash get their
input's name in front. Ids depend only on the inputs, so a rerun finds the same files.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass

from dfdc_fast.data.discovery import Dataset, VideoEntry

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-/]")


@dataclass(frozen=True)
class VideoId:
    """Where a video's outputs go: ``path`` may hold folders (``part/name``); ``flat`` is the
    same without folders, for file names that sit side by side (clips)."""

    path: str
    flat: str


def _clean(text: str) -> str:
    """Characters that are safe in file names on every system; the rest become '_'."""
    return _UNSAFE.sub("_", text).strip("/") or "_"


def _short(entry: VideoEntry) -> str:
    stem = os.path.splitext(entry.name)[0]
    return f"{entry.part or '_'}/{stem}"


def _long(entry: VideoEntry) -> str:
    return f"{entry.part or '_'}/{entry.name}"


def assign_ids(datasets: list[Dataset], entries: list[tuple[Dataset, VideoEntry]] | None = None) -> dict:
    """``{(dataset root, entry.key): VideoId}`` for every video (and missing one) of ``datasets``."""
    everything = [(ds, e) for ds in datasets for e in list(ds.videos) + list(ds.missing)]
    short = Counter(_short(e) for _, e in everything)
    chosen = {}
    for ds, e in everything:
        chosen[(ds.root, e.key)] = _short(e) if short[_short(e)] == 1 else _long(e)
    # still clashing: only videos of different inputs can; prefix the input
    clash = Counter(chosen.values())
    roots = {ds.root: i for i, ds in enumerate(datasets)}
    for ds, e in everything:
        key = (ds.root, e.key)
        if clash[chosen[key]] > 1:
            chosen[key] = f"{roots[ds.root]}_{os.path.basename(ds.root.rstrip('/')) or 'input'}/{chosen[key]}"
    out = {}
    paths = {k: _clean(v) for k, v in chosen.items()}
    flats = Counter(_flat(p) for p in paths.values())
    same_path = Counter(paths.values())
    for k, p in paths.items():
        flat = _flat(p)
        if flats[flat] > 1 or same_path[p] > 1:  # only after unsafe characters were replaced
            digest = hashlib.sha1(f"{k[0]}\0{k[1]}".encode()).hexdigest()[:8]
            p, flat = f"{p}-{digest}", f"{flat}-{digest}"
        out[k] = VideoId(path=p, flat=flat)
    return out


def _flat(path: str) -> str:
    head, _, rest = path.partition("/")
    return rest.replace("/", "_") if head == "_" else path.replace("/", "_")


__all__ = ["VideoId", "assign_ids"]
