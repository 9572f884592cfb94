"""Labels to score a submission against: DFDC ``metadata.json`` files (one per part) or a CSV.

* ``metadata.json``: ``{"x.mp4": {"label": "FAKE"|"REAL", ...}}``. Its part is its folder's
  name when that is ``dfdc_train_part_N`` (or ``--part``-less: the folder's name).
* a folder: its ``metadata.json``, or every ``*/metadata.json`` below it (a DFDC root).
* a CSV with a header ``filename,label`` and optionally ``part``; labels FAKE/REAL or 1/0.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass

from dfdc_fast.metrics import _label


@dataclass(frozen=True)
class Label:
    name: str
    fake: float      # 1.0 FAKE, 0.0 REAL
    part: str = ""


def _from_metadata(path: str) -> list[Label]:
    try:
        with open(path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a mapping of video names to entries")
    part = os.path.basename(os.path.dirname(os.path.abspath(path)))
    out = []
    for name, entry in meta.items():
        if not isinstance(entry, dict) or "label" not in entry:
            raise ValueError(f"{path}: entry {name!r} has no 'label'")
        out.append(Label(name, _label(entry["label"]), part))
    return out


def _from_csv(path: str) -> list[Label]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "filename" not in header or "label" not in header:
        raise ValueError(f"{path}: a labels CSV needs the columns filename and label (and optionally part), "
                         f"got {rows[0] if rows else 'an empty file'}")
    at = {c: header.index(c) for c in ("filename", "label", "part") if c in header}
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} fields, got {row}")
        try:
            fake = _label(row[at["label"]])
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        out.append(Label(row[at["filename"]], fake, row[at["part"]].strip() if "part" in at else ""))
    return out


def read_labels(paths: list[str]) -> dict[str, Label]:
    """{video file name: Label} from every path; a name labelled twice is refused."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            own = os.path.join(path, "metadata.json")
            found = [own] if os.path.isfile(own) else sorted(glob.glob(os.path.join(path, "*", "metadata.json")))
            if not found:
                raise ValueError(f"{path}: no metadata.json in it or in its subfolders")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: no such labels file or folder")
    labels: dict[str, Label] = {}
    for path in files:
        for label in (_from_csv(path) if path.lower().endswith(".csv") else _from_metadata(path)):
            if label.name in labels:
                raise ValueError(f"{path}: video {label.name!r} is labelled twice (submission rows are keyed by "
                                 "file name)")
            labels[label.name] = label
    if not labels:
        raise ValueError(f"no labels in {paths}")
    return labels
