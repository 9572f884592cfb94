"""When a video is done: its record knows its source, its metadata and its settings.

A rerun skips a video only when its record was made from the same file (the same name in
its dataset, size and a hash of its head and tail; see
:func:`~dfdc_fast.files.source_identity`), with the same metadata entry (label,
original) and the same output settings (and, while an ``--overwrite`` is in progress, by
that overwrite). Anything else is redone, with one line saying why, and its record and
files are replaced. A video that was running when the job died (a ``.started`` marker
without a record) is retried once; if it takes the job down again, it gets status
``error`` for good (``--overwrite`` retries it).
"""
from __future__ import annotations

import json
import os
from typing import Optional

from dfdc_fast.data import VideoEntry
from dfdc_fast.extract.writers import started_path
from dfdc_fast.files import source_identity, write_json

#: How many times a video may be started without finishing before it gets status error.
ATTEMPTS = 2


def source_of(entry: VideoEntry, identity: Optional[dict] = None) -> dict:
    """The ``source`` of a record: where the video is in its dataset, what the file is, and
    the metadata entry it was made with."""
    return {"name": entry.key, **(identity or source_identity(entry.path)), "label": entry.label,
            "original": entry.original}


def read_record(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class Resume:
    """Decides, per video, whether its record in the folder still stands."""

    def __init__(self, settings_key: str, generation: Optional[str] = None, overwrite: bool = False):
        self.settings_key, self.generation, self.overwrite = settings_key, generation, overwrite

    def stamp(self, entry: VideoEntry, identity: Optional[dict] = None) -> dict:
        """What every record of this run carries so that a rerun can check it."""
        out = {"source": source_of(entry, identity), "settings": self.settings_key}
        if self.generation is not None:
            out["generation"] = self.generation
        return out

    def redo_reason(self, record: Optional[dict], entry: VideoEntry) -> Optional[str]:
        """None when ``record`` stands; else why the video is (re)done: "new", "error",
        "settings", "legacy" or the change of its source (a sentence)."""
        if record is None:
            return "new"
        if record.get("status") == "error" and not record.get("final"):
            return "error"  # errors are retried, unless the video took the job down twice
        if "source" not in record:
            return "legacy"
        if record.get("settings") != self.settings_key or (
                self.generation is not None and record.get("generation") != self.generation):
            return "settings"
        return self.changed(record["source"], entry)

    @staticmethod
    def changed(source: dict, entry: VideoEntry) -> Optional[str]:
        """How the video differs from the one ``source`` describes, or None."""
        what = []
        for key in ("name", "label", "original"):
            now = entry.key if key == "name" else getattr(entry, key)
            if source.get(key) != now:
                what.append(f"{key} {source.get(key)!r} -> {now!r}")
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            return f"source unreadable ({exc.strerror})"
        if (st.st_size, st.st_mtime_ns) != (source.get("size"), source.get("mtime_ns")):
            # the same content under a new mtime (a copied dataset) is the same video
            if st.st_size != source.get("size") or source_identity(entry.path)["hash"] != source.get("hash"):
                what.append("the source file differs (size or content)")
        return "; ".join(what) or None


def started_attempts(json_path: str) -> int:
    """How many times a video was started by earlier runs without its record being written."""
    try:
        with open(started_path(json_path)) as f:
            return int(json.load(f).get("attempts", 1))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, AttributeError):
        return 1


def mark_started(json_path: str, attempts: int) -> None:
    write_json(started_path(json_path), {"attempts": attempts})


__all__ = ["ATTEMPTS", "Resume", "source_of", "read_record", "started_attempts", "mark_started"]
