"""The extraction job: the engine's results become files, JSON records and an index."""
from __future__ import annotations

import collections
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Iterator, Optional

import torch

from dfdc_fast.crops.sheet import write_contact_sheet
from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.data.identity import VideoId, assign_ids
from dfdc_fast.engine import ClipSpec, CropSpec, Engine, FacesRequest, VideoFaces, VideoTask, default_workers, track_json
from dfdc_fast.extract.config import ExtractConfig, check_settings, parse_shard, resolve_device
from dfdc_fast.extract.report import index_rows, read_records, write_index
from dfdc_fast.extract.writers import Writers, default_encoders
from dfdc_fast.files import TAG_ENV, FolderLock, StorageError, is_storage_error, remove_temporaries, write_json
from dfdc_fast.io import resolve_decoder
from dfdc_fast.track import TrackConfig

log = logging.getLogger("dfdc_fast.extract")


def ordered_shard(datasets: list[Dataset], shard_i: int, shard_n: int) -> list[tuple[Dataset, VideoEntry]]:
    """This shard's videos: a REAL video and its fakes stay together, the REAL one first."""
    groups: dict[tuple, list[VideoEntry]] = {}
    for ds in datasets:
        names = {e.name for e in ds.videos}
        for e in ds.videos:
            key = e.original if e.original in names else e.name
            groups.setdefault((ds.root, e.part or "", key), []).append(e)
    ds_of = {ds.root: ds for ds in datasets}
    out = []
    for gi, key in enumerate(sorted(groups)):
        if gi % shard_n != shard_i:
            continue
        members = sorted(groups[key], key=lambda e: (e.name != key[2], e.key))
        out += [(ds_of[key[0]], e) for e in members]
    return out


def _is_done(path: str) -> bool:
    try:
        with open(path) as f:
            return json.load(f).get("status") != "error"  # errors are retried
    except (OSError, ValueError):
        return False


def _base_record(entry: VideoEntry, vid: VideoId) -> dict:
    return {"video": entry.name, "part": entry.part, "label": entry.label, "original": entry.original,
            "path": entry.path, "id": vid.path}


class Schedule:
    """The order videos go to the engine: a REAL video before its fakes, which wait (while
    other videos go ahead) until its tracks are known, so they can reuse its boxes."""

    def __init__(self, todo: list, originals: dict, reuse: bool):
        self.fresh = collections.deque(todo)  # (position, dataset, entry)
        self.originals = originals  # (root, part, name) -> tracks of finished REAL videos
        self.reuse = reuse
        self.in_flight: set = set()  # REAL videos sent, result not back yet
        self.held: dict = collections.defaultdict(list)  # original key -> fakes waiting for it
        self.ready: collections.deque = collections.deque()
        self.by_key: dict = {}

    @staticmethod
    def key(ds, entry, name=None) -> tuple:
        return (ds.root, entry.part or "", name or entry.name)

    def tasks(self) -> Iterator[Optional[VideoTask]]:
        while self.fresh or self.held or self.ready:
            if self.ready:
                yield self._task(*self.ready.popleft())
                continue
            if not self.fresh:
                yield None  # only fakes remain, waiting for originals in flight
                continue
            item = self.fresh.popleft()
            _, ds, entry = item
            original = self.key(ds, entry, entry.original) if entry.label == "FAKE" and entry.original else None
            if not self.reuse or original is None or original in self.originals:
                yield self._task(item, self.originals.get(original) if self.reuse and original else None)
            elif original in self.in_flight:
                self.held[original].append(item)
            else:  # its original is not in this dataset or shard, or failed
                yield self._task(item, None)

    def _task(self, item, original_tracks) -> VideoTask:
        position, ds, entry = item
        if entry.label == "REAL":
            self.in_flight.add(self.key(ds, entry))
        self.by_key[position] = item
        return VideoTask(key=position, path=entry.path, original_tracks=original_tracks)

    def finished(self, res: VideoFaces) -> tuple:
        return self.by_key.pop(res.key)

    def original_done(self, ds, entry, tracks: Optional[list]) -> None:
        key = self.key(ds, entry)
        self.in_flight.discard(key)
        if tracks is not None:
            self.originals[key] = tracks
        for item in self.held.pop(key, []):
            self.ready.append((item, tracks))


class Extractor:
    """Runs the job; ``run()`` returns the summary."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.decoder = resolve_decoder(cfg.decoder, self.device)
        self.request = FacesRequest(
            every=cfg.every, detector=cfg.detector,
            track=TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size, min_clip_frames=cfg.min_clip_frames),
            clips=ClipSpec(size=cfg.clip_size),
            crops=CropSpec(count=cfg.crops_per_video, margin=cfg.crop_margin,
                           encode=cfg.crop_format) if cfg.crops_per_video > 0 else None,
            reuse=cfg.reuse_original, to_host=True)
        self.ids: dict = {}

    def json_path(self, ds: Dataset, entry: VideoEntry) -> str:
        return os.path.join(self.cfg.out, "videos", self.ids[(ds.root, entry.key)].path + ".json")

    def _record(self, ds: Dataset, entry: VideoEntry, res: VideoFaces) -> dict:
        cfg, out = self.cfg, self.cfg.out
        vid = self.ids[(ds.root, entry.key)]
        record = _base_record(entry, vid)
        if res.info is not None:
            info = res.info
            record.update(frames=info.num_frames, width=info.width, height=info.height, fps=round(info.fps, 4),
                          rotation=info.rotation, decoder=res.decoder)
        record["timings_s"] = {k.removesuffix("_s"): round(v, 4) for k, v in res.timings.items()}
        record["worker"] = res.worker
        if res.peak_memory_mb is not None:
            record["peak_gpu_mb"] = res.peak_memory_mb
        if res.status in ("decode_error", "error") and res.info is None:
            record.update(status=res.status, error=res.error)
            return record
        record["detections"] = {"sampled_frames": res.detections.get("sampled_frames"),
                                "faces": res.detections.get("faces")}
        record["tracks"] = [track_json(t) for t in res.tracks]
        record["boxes_from"] = res.boxes_from
        folder = entry.label if entry.label in ("REAL", "FAKE") else "_"
        record["clips"] = []
        for c in res.clips:
            path = os.path.join("clips", folder, f"{vid.flat}_{c.chunk}_{c.track}.mp4")
            record["clips"].append({"track": c.track, "chunk": c.chunk, "start": c.start, "stop": c.stop,
                                    "person": c.person, "box": c.box, "score": c.score, "path": path,
                                    "frames": c.frames, "keyint": cfg.clip_keyint, "status": "too_short" if c.too_short else "ok"})
        record["crops"] = [{"track": c.track, "person": c.person, "frame": c.frame, "box": c.box,
                            "path": os.path.join("crops", vid.path, f"{c.track}_{c.frame}.{cfg.crop_format}")}
                           for c in res.crops]
        record["status"], record["error"] = res.status, res.error
        return record

    def _files(self, record: dict, res: VideoFaces) -> tuple[list, list]:
        """(clip jobs, crop files) to write for a result."""
        out = self.cfg.out
        fps = record.get("fps") or 30.0
        clips = [(os.path.join(out, c["path"]), res.clip(m), fps) for c, m in zip(record.get("clips", []), res.clips)]
        crops = [(os.path.join(out, c["path"]), res.crop_bytes(m)) for c, m in zip(record.get("crops", []), res.crops)]
        return clips, crops

    def _load_originals(self, entries) -> dict:
        """Tracks of REAL videos finished by an earlier run, for their fakes: {(root, part, name): tracks}."""
        out = {}
        for ds, e in entries:
            if e.label == "REAL":
                try:
                    with open(self.json_path(ds, e)) as f:
                        rec = json.load(f)
                    if rec.get("tracks"):
                        out[Schedule.key(ds, e)] = rec["tracks"]
                except (OSError, ValueError):
                    pass
        return out

    def run(self) -> dict:
        cfg = self.cfg
        shard_i, shard_n = parse_shard(cfg.shard)
        os.makedirs(cfg.out, exist_ok=True)
        with FolderLock(cfg.out, f"extract-{shard_i}"):
            os.environ[TAG_ENV] = f"s{shard_i}"  # this shard's temporaries, in every process it starts
            stale = remove_temporaries(cfg.out, f"s{shard_i}")
            if stale:
                log.info("removed %d temporary files left by an interrupted run", stale)
            check_settings(cfg)
            return self._run(shard_i, shard_n)

    def _run(self, shard_i: int, shard_n: int) -> dict:
        cfg = self.cfg
        for p in cfg.inputs:
            if not os.path.exists(p):
                raise FileNotFoundError(f"input {p} does not exist")
        datasets = from_paths(cfg.inputs)
        self.ids = assign_ids(datasets)
        entries = ordered_shard(datasets, shard_i, shard_n)
        if cfg.limit is not None:
            entries = entries[:cfg.limit]
        write_json(os.path.join(cfg.out, f"config-{shard_i}.json"),
                   {**asdict(cfg), "decoder_resolved": self.decoder, "device_resolved": str(self.device)})
        done = {e.path for ds, e in entries if not cfg.overwrite and _is_done(self.json_path(ds, e))}
        todo = [(i, ds, e) for i, (ds, e) in enumerate(entries) if e.path not in done]
        originals = self._load_originals(entries)

        t0 = time.perf_counter()
        bar = _progress(len(todo), cfg.progress)
        schedule = Schedule(todo, originals, cfg.reuse_original != "none")
        busy: dict = collections.Counter()
        stopped: Optional[BaseException] = None

        def account(record: dict) -> None:
            bar.update(1)
            for k, v in (record.get("timings_s") or {}).items():
                busy[k] += v

        workers, encoders = cfg.workers, cfg.encoders
        if workers is None and self.device.type == "cpu" and len(todo) < 2 * default_workers("cpu"):
            workers = 0  # starting processes costs more than a few videos take
            encoders = 0 if encoders is None else encoders
            log.info("%d videos to do on the CPU: decoding and encoding in this process (--workers to change)",
                     len(todo))
        encoders = encoders if encoders is not None else default_encoders(cfg.device, workers)
        startup, replaced = 0.0, 0
        try:
            with Engine(self.request, self.device, workers=workers, decoder=self.decoder, threads=cfg.threads,
                        video_timeout=cfg.video_timeout) as engine, \
                    Writers(encoders, cfg.clip_crf, cfg.clip_keyint, cfg.max_pending) as writers:
                startup = time.perf_counter() - t0
                workers = engine.workers
                try:
                    for res in engine.run(schedule.tasks()):
                        self._take(res, schedule, writers)
                        for rec in writers.finished(block=False):
                            account(rec)
                    for rec in writers.finished(block=True):
                        account(rec)
                except BaseException as exc:
                    if not is_storage_error(exc):
                        raise
                    stopped = exc
                    writers.pending.clear()  # those videos get no JSON: the next run redoes them
                self.decoder = engine.decoder_resolved or self.decoder
                replaced = engine.replaced
        finally:
            bar.close()
        elapsed = time.perf_counter() - t0
        if stopped is not None:
            log.error("stopped: %s. Finished videos are intact; free space and run the same command to resume.",
                      stopped)
        try:
            summary = self._report(datasets, entries, shard_i, shard_n, len(todo), len(done), elapsed)
        except BaseException as exc:
            if stopped is not None and is_storage_error(exc):
                raise StorageError(getattr(stopped, "errno", None), f"{stopped}; the index could not be written "
                                   "either (the next run writes it)") from stopped
            raise
        steady = elapsed - startup
        summary.update(startup_s=round(startup, 3), workers=workers, encoders=encoders,
                       steady_videos_per_s=round(len(todo) / steady, 3) if todo and steady > 0 and not stopped else None,
                       stage_busy_s={k: round(v, 3) for k, v in sorted(busy.items())})
        if replaced:
            summary["workers_replaced"] = replaced
        if stopped is not None:
            summary["stopped"] = str(stopped)
        write_json(os.path.join(cfg.out, f"summary-{shard_i}.json" if shard_n > 1 else "summary.json"), summary)
        if stopped is not None:
            raise StorageError(getattr(stopped, "errno", None), f"{stopped}. The {summary['status_counts']} videos "
                               "done so far are intact and indexed; free space and rerun to resume.") from stopped
        return summary

    def _take(self, res: VideoFaces, schedule: Schedule, writers: Writers) -> None:
        _, ds, entry = schedule.finished(res)
        try:
            record = self._record(ds, entry, res)
            if entry.label == "REAL":
                schedule.original_done(ds, entry, record.get("tracks") if res.status in ("ok", "no_face") else None)
            clips, crops = self._files(record, res)
        except Exception as exc:  # noqa: BLE001 - one bad video never stops the run
            log.exception("%s failed", entry.path)
            record = {**_base_record(entry, self.ids[(ds.root, entry.key)]), "status": "error",
                      "error": f"{type(exc).__name__}: {exc}"}
            clips, crops = [], []
            if entry.label == "REAL":
                schedule.original_done(ds, entry, None)
        writers.submit(record, self.json_path(ds, entry), clips, crops)

    def _report(self, datasets, entries, shard_i, shard_n, processed, skipped, elapsed) -> dict:
        cfg = self.cfg
        rows, records = [], []
        for rec, rel in read_records(cfg.out, [self.ids[(ds.root, e.key)] for ds, e in entries]):
            records.append(rec)
            rows += index_rows(rec, rel)
        for ds in datasets:
            rows += [{"video": m.name, "part": m.part, "label": m.label, "original": m.original,
                      "status": "missing", "error": "listed in metadata.json but not on disk"} for m in ds.missing]
            rows += [{"video": n, "status": "error", "error": f"refused name: {why}"} for n, why in ds.rejected]
        index_path = os.path.join(cfg.out, f"index-{shard_i}.csv" if shard_n > 1 else "index.csv")
        write_index(index_path, rows)

        statuses: dict = {}
        for r in records:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        for ds in datasets:
            if ds.missing:
                statuses["missing"] = statuses.get("missing", 0) + len(ds.missing)
            if ds.rejected:
                statuses["error"] = statuses.get("error", 0) + len(ds.rejected)
        clips = [c for r in records for c in r.get("clips", [])]
        sheet = os.path.join(cfg.out, f"contact_sheet-{shard_i}.png" if shard_n > 1 else "contact_sheet.png")
        if cfg.contact_sheet:
            try:  # drawn from the files on disk, so a resumed run gets a complete sheet too
                write_contact_sheet(cfg.out, sheet, index=os.path.abspath(index_path), videos=cfg.contact_sheet)
            except Exception as exc:  # noqa: BLE001 - a picture never fails the run...
                if is_storage_error(exc):
                    raise  # ...but a full disk stops it, as everywhere
                log.warning("contact sheet not drawn: %s: %s", type(exc).__name__, exc)
        with_tracks = [r for r in records if r.get("tracks") is not None]
        return {
            "out": os.path.abspath(cfg.out), "index": os.path.abspath(index_path), "shard": f"{shard_i}/{shard_n}",
            "device": str(self.device), "decoder": self.decoder, "detector": cfg.detector,
            # every video with a status: the shard's listed ones, plus missing and refused names
            "videos": sum(statuses.values()), "processed": processed, "skipped_done": skipped,
            "status_counts": statuses,
            "clips": len(clips), "clips_too_short": sum(c["status"] == "too_short" for c in clips),
            "crops": sum(len(r.get("crops", [])) for r in records),
            "faces_per_video": round(sum(_people(r["tracks"]) for r in with_tracks) / len(with_tracks), 3)
            if with_tracks else None,
            "elapsed_s": round(elapsed, 3),
            "videos_per_s": round(processed / elapsed, 3) if processed and elapsed > 0 else None,
            "contact_sheet": os.path.abspath(sheet) if os.path.exists(sheet) else None,
        }


def _people(tracks: list) -> int:
    """People in a video: its tracks' distinct ``person`` ids (one person is one track per chunk)."""
    return len({("track", t["track_id"]) if t.get("person") is None else t["person"] for t in tracks})


def run_extraction(cfg: ExtractConfig) -> dict:
    """Run the job; returns the summary that is also written to ``OUT/summary.json``.

    Raises :class:`~dfdc_fast.extract.SettingsMismatch` when ``cfg.out`` holds outputs of
    other settings, ``RuntimeError`` when another run is writing there, and
    :class:`~dfdc_fast.files.StorageError` when the disk filled up (what was done is kept).
    """
    return Extractor(cfg).run()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="extract", disable=not enabled or total == 0, dynamic_ncols=True)
