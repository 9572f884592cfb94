"""The index: one row per clip, or per video without one."""
from __future__ import annotations

import csv
import io
import json
import os

from dfdc_fast.files import write_text

INDEX_FIELDS = ["video", "part", "label", "original", "status", "error", "track", "person", "chunk", "start",
                "stop", "x0", "y0", "x1", "y1", "score", "clip", "clip_frames", "keyint", "crops", "boxes_from",
                "frames", "width", "height", "fps", "json"]


def index_rows(rec: dict, json_rel: str) -> list[dict]:
    base = {k: rec.get(k) for k in ("video", "part", "label", "original", "frames", "width", "height", "fps",
                                    "boxes_from")}
    base["json"] = json_rel
    crops_per_track: dict = {}
    for c in rec.get("crops", []):
        crops_per_track[c["track"]] = crops_per_track.get(c["track"], 0) + 1
    clips = rec.get("clips") or []
    if rec.get("status") != "ok" or not clips:
        return [{**base, "status": rec.get("status"), "error": rec.get("error"),
                 "crops": sum(crops_per_track.values()) or None}]
    rows = []
    for c in clips:
        x0, y0, x1, y1 = c["box"]
        rows.append({**base, "status": c["status"],
                     "error": None if c["status"] == "ok" else f"clip has {c['frames']} frames",
                     "track": c["track"], "person": c.get("person"), "chunk": c["chunk"], "start": c["start"],
                     "stop": c["stop"], "x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": c["score"], "clip": c["path"],
                     "clip_frames": c["frames"], "keyint": c.get("keyint"), "crops": crops_per_track.get(c["track"], 0)})
    return rows


def write_index(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def read_records(out: str, ids: list) -> list[tuple[dict, str]]:
    """(record, path relative to out) of each finished video, in the given order."""
    found = []
    for vid in ids:
        path = os.path.join(out, "videos", vid.path + ".json")
        try:
            with open(path) as f:
                found.append((json.load(f), os.path.relpath(path, out)))
        except FileNotFoundError:
            continue
    return found
