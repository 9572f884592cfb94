"""The index: one row per clip, or per video without one."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Optional

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


#: crops.csv (recipe selim): one row per 2D crop, Selim's folds CSV plus landmarks and diffs.
CROP_FIELDS = ["video", "part", "label", "original", "fold", "fold_from", "track", "frame", "path", "landmarks", "diff",
               "json"]
#: pairs.csv (recipe ntech): one row per aligned REAL/FAKE pair clip.
PAIR_FIELDS = ["real_video", "fake_video", "part", "fold", "fold_from", "track", "window", "fake_track", "start", "stop",
               "x0", "y0", "x1", "y1", "real_clip", "fake_clip", "span_start", "span_stop"]


def crop_rows(rec: dict) -> list[dict]:
    """crops.csv rows of a video record: landmarks as 10 numbers (x, y of eyes, nose, mouth
    corners, crop pixels), ``diff`` the SSIM difference mask of a fake's crop."""
    if rec.get("status") != "ok":
        return []
    base = {k: rec.get(k) for k in ("video", "part", "label", "original", "fold", "fold_from")}
    base["json"] = os.path.join("videos", rec["id"] + ".json")
    return [{**base, "track": c["track"], "frame": c["frame"], "path": c["path"],
             "landmarks": " ".join(f"{v:g}" for v in c["landmarks"]) if c.get("landmarks") else None,
             "diff": c.get("diff")} for c in rec.get("crops", [])]


def pair_rows(rec: dict) -> list[dict]:
    """pairs.csv rows of a FAKE video's record."""
    if rec.get("label") != "FAKE" or rec.get("status") != "ok":
        return []
    rows = []
    for p in rec.get("pairs", []):
        x0, y0, x1, y1 = p["box"]
        rows.append({"real_video": rec.get("original"), "fake_video": rec["video"], "part": rec.get("part"),
                     "fold": rec.get("fold"), "fold_from": rec.get("fold_from"), "track": p["track"],
                     "window": p["window"], "fake_track": p.get("fake_track"), "start": p["start"], "stop": p["stop"],
                     "x0": x0, "y0": y0, "x1": x1, "y1": y1, "real_clip": p["real_path"], "fake_clip": p["path"],
                     "span_start": p["span"][0], "span_stop": p["span"][1]})
    return rows


def _write_csv(path: str, fields: list, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def write_index(path: str, rows: list[dict]) -> None:
    _write_csv(path, INDEX_FIELDS, rows)


def write_crops_index(path: str, rows: list[dict]) -> None:
    _write_csv(path, CROP_FIELDS, rows)


def write_pairs_index(path: str, rows: list[dict]) -> None:
    _write_csv(path, PAIR_FIELDS, rows)


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


def folder_records(out: str) -> list[tuple[dict, str]]:
    """(record, path relative to out) of every video record in ``out/videos``, in path order:
    the folder's whole truth, whichever runs (``--limit``, shards, other inputs) made them."""
    found = []
    root = os.path.join(out, "videos")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and "status" in rec:
                found.append((rec, os.path.relpath(path, out)))
    return found


def record_files(out: str, rec: dict) -> list[str]:
    """The files a record lists (clips, crops, diffs, pairs), as paths under ``out``."""
    paths = [c.get("path") for c in rec.get("clips") or []] + [p.get("path") for p in rec.get("pairs") or []]
    for c in rec.get("crops") or []:
        paths += [c.get("path"), c.get("diff")]
    return [os.path.join(out, p) for p in paths if isinstance(p, str)]


def index_folder(out: str, settings_key: str, only: Optional[list] = None) -> tuple[list, list, int]:
    """(records, index rows, how many records were left out) of the folder's records made with
    ``settings_key`` (of ``only``'s video ids, when given: one shard's). Records of other
    settings (an unfinished ``--overwrite``) are left out, never mixed in."""
    found = folder_records(out) if only is None else read_records(out, only)
    records, rows, stale = [], [], 0
    for rec, rel in found:
        if rec.get("settings") != settings_key:
            stale += 1
            continue
        records.append(rec)
        rows += index_rows(rec, rel)
    return records, rows, stale
