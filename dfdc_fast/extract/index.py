"""One index from the per-video JSON records, whoever wrote them.

The records are the only completion record, so ``index.csv``, ``crops.csv``, ``pairs.csv``
and the summary's counts are rebuilt from them: the same files come out of one process,
of N ``--shard`` runs merged afterwards, or of a Ray cluster.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from typing import Optional

from dfdc_fast.crops.sheet import write_contact_sheet
from dfdc_fast.data import from_paths
from dfdc_fast.data.folds import check_folds
from dfdc_fast.extract.config import ExtractConfig, settings_key
from dfdc_fast.extract.report import crop_rows, index_folder, pair_rows, write_crops_index, write_index, write_pairs_index
from dfdc_fast.files import is_storage_error, write_json

log = logging.getLogger("dfdc_fast.extract")


def rebuild_index(cfg, datasets: list, settings_key: str, only: Optional[list] = None, suffix: str = "") -> dict:
    """Write ``index{suffix}.csv`` (and ``crops``/``pairs`` for the selim/ntech recipes, and
    the contact sheet) from the folder's records made with ``settings_key`` (only those of
    the video ids ``only``, for one shard) and the datasets' missing and refused names;
    returns the summary's counts."""
    records, rows, stale = index_folder(cfg.out, settings_key, only)
    if stale:
        log.warning("%d records were made with other settings (an --overwrite not finished): they are left out "
                    "of the index; rerun to finish it", stale)
    for ds in datasets:
        rows += [{"video": m.name, "part": m.part, "label": m.label, "original": m.original,
                  "status": "missing", "error": "listed in metadata.json but not on disk"} for m in ds.missing]
        rows += [{"video": n, "status": "error", "error": f"refused name: {why}"} for n, why in ds.rejected]
    index_path = os.path.join(cfg.out, f"index{suffix}.csv")
    write_index(index_path, rows)
    extra: dict = {}
    recipe = cfg.recipe_object
    request = recipe.extract_request(cfg)
    if request.diffs is not None:  # Selim's crops.csv
        crops = [row for rec in records for row in crop_rows(rec)]
        check_folds(crops)
        extra["crops_index"] = os.path.abspath(os.path.join(cfg.out, f"crops{suffix}.csv"))
        write_crops_index(extra["crops_index"], crops)
        extra["crops_with_landmarks"] = sum(1 for r in crops if r.get("landmarks"))
        extra["diffs"] = sum(1 for r in crops if r.get("diff"))
    if request.pairs is not None:  # NTechLab's pairs.csv
        pairs = [row for rec in records for row in pair_rows(rec)]
        check_folds([{"video": p["real_video"], "label": "REAL", "part": p["part"], "fold": p["fold"]} for p in pairs]
                    + [{"video": p["fake_video"], "label": "FAKE", "part": p["part"], "original": p["real_video"],
                        "fold": p["fold"]} for p in pairs])
        extra["pairs_index"] = os.path.abspath(os.path.join(cfg.out, f"pairs{suffix}.csv"))
        write_pairs_index(extra["pairs_index"], pairs)
        extra["pairs"] = len(pairs)

    statuses: dict = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    for ds in datasets:
        if ds.missing:
            statuses["missing"] = statuses.get("missing", 0) + len(ds.missing)
        if ds.rejected:
            statuses["error"] = statuses.get("error", 0) + len(ds.rejected)
    clips = [c for r in records if r["status"] == "ok" for c in r.get("clips", [])]
    sheet = os.path.join(cfg.out, f"contact_sheet{suffix}.png")
    if cfg.contact_sheet:
        try:  # drawn from the files on disk, so a resumed run gets a complete sheet too
            write_contact_sheet(cfg.out, sheet, index=os.path.abspath(index_path), videos=cfg.contact_sheet)
        except Exception as exc:  # noqa: BLE001 - a picture never fails the run...
            if is_storage_error(exc):
                raise  # ...but a full disk stops it, as everywhere
            log.warning("contact sheet not drawn: %s: %s", type(exc).__name__, exc)
    with_tracks = [r for r in records if r.get("tracks") is not None]
    return {
        "out": os.path.abspath(cfg.out), "index": os.path.abspath(index_path), "detector": cfg.detector,
        # every video with a status: the listed ones, plus missing and refused names
        "videos": sum(statuses.values()), "status_counts": statuses,
        "clips": len(clips), "clips_too_short": sum(c["status"] == "too_short" for c in clips),
        "crops": sum(len(r.get("crops", [])) for r in records if r["status"] == "ok"),
        "faces_per_video": round(sum(_people(r["tracks"]) for r in with_tracks) / len(with_tracks), 3)
        if with_tracks else None,
        "contact_sheet": os.path.abspath(sheet) if os.path.exists(sheet) else None,
        **({"stale_records": stale} if stale else {}),
        **({"recipe": cfg.recipe, **extra} if recipe.records_recipe else {}),
    }


def merge_shards(cfg, shard_n: Optional[int] = None) -> dict:
    """The ``--shard`` runs' records as one ``index.csv``/``crops.csv``/``pairs.csv`` and
    ``summary.json`` (with each shard's summary under ``shards``); run by ``--merge``, and
    by the last of N shards to finish."""
    datasets = from_paths(cfg.inputs, follow_links=cfg.follow_links, exclude=[cfg.out])
    shards = []
    n = shard_n if shard_n is not None else len(_shard_summaries(cfg.out))
    for i in range(n):
        try:
            with open(os.path.join(cfg.out, f"summary-{i}.json")) as f:
                shards.append(json.load(f))
        except (OSError, ValueError):
            shards.append(None)
    summary = {**rebuild_index(cfg, datasets, folder_settings_key(cfg.out)), "shard": "merged",
               "shards": [{k: s.get(k) for k in ("shard", "processed", "skipped_done", "elapsed_s", "status_counts")}
                          if s else None for s in shards],
               "processed": sum(s.get("processed") or 0 for s in shards if s)}
    write_json(os.path.join(cfg.out, "summary.json"), summary)
    return summary


def folder_settings_key(out: str) -> str:
    """The settings key of the records a folder's index lists (those of its settings.json)."""
    with open(os.path.join(out, "settings.json")) as f:
        return settings_key({k: v for k, v in json.load(f).items() if k != "overwrite"})


def rebuild_folder_index(out: str) -> dict:
    """Write ``out/index.csv`` (and crops.csv/pairs.csv for their recipes) from every record of
    the folder; returns the counts by status."""
    with open(os.path.join(out, "settings.json")) as f:
        settings = {k: v for k, v in json.load(f).items() if k in {f.name for f in fields(ExtractConfig)}}
    cfg = ExtractConfig(**{**settings, "inputs": [], "out": out, "contact_sheet": 0})
    return rebuild_index(cfg, [], folder_settings_key(out))["status_counts"]


def shards_finished(out: str, shard_n: int) -> bool:
    """Whether every one of ``shard_n`` shards has written its summary (so one index can be made)."""
    return all(os.path.exists(os.path.join(out, f"summary-{i}.json")) for i in range(shard_n))


def _shard_summaries(out: str) -> list:
    names = [f for f in os.listdir(out) if f.startswith("summary-") and f.endswith(".json")]
    return sorted(names)


def _people(tracks: list) -> int:
    """People in a video: its tracks' distinct ``person`` ids (one person is one track per chunk)."""
    return len({("track", t["track_id"]) if t.get("person") is None else t["person"] for t in tracks})
