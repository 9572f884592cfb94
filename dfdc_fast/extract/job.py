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
from dfdc_fast.data.folds import check_folds, fold_of
from dfdc_fast.engine import ClipSpec, CropSpec, Engine, FacesRequest, VideoFaces, VideoTask, default_workers, track_json
from dfdc_fast.engine.request import DiffSpec, PairSpec
from dfdc_fast.extract.config import ExtractConfig, check_settings, parse_shard, resolve_device
from dfdc_fast.extract.report import (crop_rows, index_rows, pair_rows, read_records, write_crops_index, write_index,
                                      write_pairs_index)
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
    other videos go ahead) until its results are known: its tracks (the fakes reuse its
    boxes), its crops (Selim's SSIM diffs) or its pair windows (NTechLab's pairs)."""

    def __init__(self, todo: list, originals: dict, reuse: bool, fakes_of: Optional[dict] = None,
                 load_crops=None, windows: Optional[dict] = None):
        self.fresh = collections.deque(todo)  # (position, dataset, entry)
        self.originals = originals  # (root, part, name) -> tracks of finished REAL videos
        self.reuse = reuse
        self.in_flight: set = set()  # REAL videos sent, result not back yet
        self.held: dict = collections.defaultdict(list)  # original key -> fakes waiting for it
        self.ready: collections.deque = collections.deque()
        self.by_key: dict = {}
        #: original key -> its fakes' names, sorted (pair windows go to them in that order)
        self.fakes_of = fakes_of or {}
        self.crops: dict = {}  # original key -> (images, keys), until its last fake is sent
        self.load_crops = load_crops  # original key -> (images, keys) of a REAL finished earlier, or None
        self.windows = windows if windows is not None else {}  # original key -> its pair windows
        self.fakes_left = {k: len(v) for k, v in self.fakes_of.items()}

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
        task = VideoTask(key=position, path=entry.path, original_tracks=original_tracks)
        key = self.key(ds, entry)
        if entry.label == "REAL":
            self.in_flight.add(key)
            task.pair_count = len(self.fakes_of.get(key, ()))
            task.seed_text = f"{entry.part or ''}/{entry.name}"
        elif original_tracks is not None and entry.original:
            original = self.key(ds, entry, entry.original)
            crops = self.crops.get(original)
            if crops is None and self.load_crops is not None:
                crops = self.load_crops(original)
                if crops is not None and self.fakes_left.get(original, 0) > 1:
                    self.crops[original] = crops
            task.original_crops = crops
            names = self.fakes_of.get(original, [])
            if entry.name in names and original in self.windows:
                k = names.index(entry.name)
                task.pair_windows = [w for w in self.windows[original] if int(w["window"]) == k]
            self.fakes_left[original] = self.fakes_left.get(original, 1) - 1
            if self.fakes_left[original] <= 0:
                self.crops.pop(original, None)
        self.by_key[position] = item
        return task

    def finished(self, res: VideoFaces) -> tuple:
        return self.by_key.pop(res.key)

    def original_done(self, ds, entry, tracks: Optional[list], crops: Optional[tuple] = None,
                      windows: Optional[list] = None) -> None:
        key = self.key(ds, entry)
        self.in_flight.discard(key)
        if tracks is not None:
            self.originals[key] = tracks
            if crops is not None and self.fakes_left.get(key, 0) > 0:
                self.crops[key] = crops
            if windows is not None:
                self.windows[key] = windows
        for item in self.held.pop(key, []):
            self.ready.append((item, tracks))


class Extractor:
    """Runs the job; ``run()`` returns the summary."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.decoder = resolve_decoder(cfg.decoder, self.device)
        self.request = recipe_request(cfg)
        self.ids: dict = {}

    @property
    def landmarks(self) -> bool:
        return self.cfg.recipe == "selim"

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
        record["tracks"] = [track_json(t, landmarks=self.landmarks) for t in res.tracks]
        record["boxes_from"] = res.boxes_from
        if cfg.recipe != "medics":
            original = ds.original_of(entry) if entry.label == "FAKE" else None
            record["fold"], record["fold_from"] = fold_of(original.part if original else entry.part or "", entry.name,
                                                          entry.original)
        folder = entry.label if entry.label in ("REAL", "FAKE") else "_"
        record["clips"] = []
        for c in res.clips:
            path = os.path.join("clips", folder, f"{vid.flat}_{c.chunk}_{c.track}.mp4")
            record["clips"].append({"track": c.track, "chunk": c.chunk, "start": c.start, "stop": c.stop,
                                    "person": c.person, "box": c.box, "score": c.score, "path": path,
                                    "frames": c.frames, "keyint": cfg.clip_keyint, "status": "too_short" if c.too_short else "ok"})
        record["crops"] = []
        for c in res.crops:
            crop = {"track": c.track, "person": c.person, "frame": c.frame, "box": c.box,
                    "path": os.path.join("crops", vid.path, f"{c.track}_{c.frame}.{cfg.crop_format}")}
            if c.landmarks is not None and self.landmarks:
                crop["landmarks"] = c.landmarks
            if c.diff >= 0:
                crop["diff"] = os.path.join("diffs", vid.path, f"{c.track}_{c.frame}_diff.png")
            record["crops"].append(crop)
        if res.diff_error:
            record["diff_error"] = res.diff_error
        if cfg.recipe == "ntech":
            original = ds.original_of(entry) if entry.label == "FAKE" else None
            real_id = self.ids[(ds.root, original.key)].path if original is not None else None
            record["pairs"] = []
            for p in res.pairs:
                item = {**p.to_window(), "path": os.path.join("pairs", vid.path, f"{p.track}_{p.window}.mp4")}
                if p.fake_track is not None:
                    item.update(fake_track=p.fake_track, span=p.span,
                                real_path=os.path.join("pairs", real_id, f"{p.track}_{p.window}.mp4"))
                record["pairs"].append(item)
            if "pairs_skipped" in res.detections:
                record["pairs_skipped"] = res.detections["pairs_skipped"]
        record["status"], record["error"] = res.status, res.error
        return record

    def _files(self, record: dict, res: VideoFaces) -> tuple[list, list]:
        """(clip jobs, crop files) to write for a result."""
        out = self.cfg.out
        fps = record.get("fps") or 30.0
        clips = [(os.path.join(out, c["path"]), res.clip(m), fps) for c, m in zip(record.get("clips", []), res.clips)]
        clips += [(os.path.join(out, p["path"]), res.pair_clip(m), fps) for p, m in zip(record.get("pairs", []), res.pairs)]
        raw = self.request.crops is not None and self.request.crops.encode is None
        crops = [(os.path.join(out, c["path"]), res.crop_image(m) if raw else res.crop_bytes(m))
                 for c, m in zip(record.get("crops", []), res.crops)]
        crops += [(os.path.join(out, c["diff"]), res.diff_image(m)) for c, m in zip(record.get("crops", []), res.crops)
                  if "diff" in c]
        return clips, crops

    def _original_crops(self, res: VideoFaces) -> Optional[tuple]:
        """A REAL result's crops as the fakes' diffs want them (selim): ``(images, keys)``."""
        if self.request.diffs is None or res.crop_data is None or not res.crops:
            return None
        return res.crop_data, [(c.track, c.frame, c.size[0], c.size[1]) for c in res.crops]

    def _load_crops(self, ds_entries: dict):
        """For a resumed run: the PNG crops a finished REAL video wrote, as ``(images, keys)``."""
        def load(key) -> Optional[tuple]:
            found = ds_entries.get(key)
            if found is None:
                return None
            try:
                with open(self.json_path(*found)) as f:
                    rec = json.load(f)
                return load_crop_images(self.cfg.out, rec.get("crops", []))
            except (OSError, ValueError) as exc:
                log.warning("cannot reload the crops of %s for its fakes' diffs: %s", found[1].path, exc)
                return None
        return load

    def _load_originals(self, entries, windows: Optional[dict] = None) -> dict:
        """Tracks of REAL videos finished by an earlier run, for their fakes: {(root, part, name): tracks}
        (and their pair windows into ``windows``)."""
        out = {}
        for ds, e in entries:
            if e.label == "REAL":
                try:
                    with open(self.json_path(ds, e)) as f:
                        rec = json.load(f)
                    if rec.get("tracks"):
                        out[Schedule.key(ds, e)] = rec["tracks"]
                        if windows is not None and rec.get("pairs") is not None:
                            windows[Schedule.key(ds, e)] = rec["pairs"]
                except (OSError, ValueError):
                    pass
        return out

    @staticmethod
    def _fakes_of(entries) -> dict:
        """{original key: sorted names of its fakes in this shard} for REAL videos in it."""
        reals = {Schedule.key(ds, e) for ds, e in entries if e.label == "REAL"}
        out: dict = {}
        for ds, e in entries:
            if e.label == "FAKE" and e.original:
                key = Schedule.key(ds, e, e.original)
                if key in reals:
                    out.setdefault(key, []).append(e.name)
        return {k: sorted(v) for k, v in out.items()}

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
        datasets = from_paths(cfg.inputs, follow_links=cfg.follow_links)
        self.ids = assign_ids(datasets)
        entries = ordered_shard(datasets, shard_i, shard_n)
        if cfg.limit is not None:
            entries = entries[:cfg.limit]
        write_json(os.path.join(cfg.out, f"config-{shard_i}.json"),
                   {**asdict(cfg), "decoder_resolved": self.decoder, "device_resolved": str(self.device)})
        done = {e.path for ds, e in entries if not cfg.overwrite and _is_done(self.json_path(ds, e))}
        todo = [(i, ds, e) for i, (ds, e) in enumerate(entries) if e.path not in done]
        windows: dict = {}
        originals = self._load_originals(entries, windows)

        t0 = time.perf_counter()
        # two bars: faces made (with the stage of the video in hand, so the first, slowest video
        # shows progress too) and videos written (clips encoded, JSON last), which lags behind
        faces_bar = _progress(len(todo), cfg.progress, "faces ", 0)
        bar = _progress(len(todo), cfg.progress, "written", 1)
        recipe_waits = cfg.recipe == "ntech"  # pairs: a fake needs its original's windows
        schedule = Schedule(todo, originals, cfg.reuse_original != "none" or recipe_waits,
                            fakes_of=self._fakes_of(entries) if cfg.recipe != "medics" else None,
                            load_crops=self._load_crops({Schedule.key(ds, e): (ds, e) for ds, e in entries})
                            if self.request.diffs is not None else None, windows=windows)
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
        elif workers is None and self.device.type == "cpu" and default_workers("cpu") <= 2:
            # On two cores, worker processes only contend with the encoders and each other:
            # on 8 sample clips ours ran at 0.83x the stock pipeline's speed with one 2-thread
            # worker, 0.98x with two 1-thread workers, 1.08x in-process
            # (benchmarks/results/extract-amd-epyc-20261130-203615.json and -203951.json).
            workers = 0
            log.info("2 CPU cores: faces are made in this process, clips encoded by a pool (--workers to change)")
        encoders = encoders if encoders is not None else default_encoders(cfg.device, workers)
        startup, replaced = 0.0, 0

        def stage(key, name: str) -> None:
            item = schedule.by_key.get(key)
            if item is not None:
                faces_bar.set_postfix_str(f"{os.path.basename(item[2].path)}: {name}")

        try:
            with Engine(self.request, self.device, workers=workers, decoder=self.decoder, threads=cfg.threads,
                        video_timeout=cfg.video_timeout) as engine, \
                    Writers(encoders, cfg.clip_crf, cfg.clip_keyint, cfg.max_pending) as writers:
                startup = time.perf_counter() - t0
                workers = engine.workers
                engine.on_stage = stage
                try:
                    for res in engine.run(schedule.tasks()):
                        self._take(res, schedule, writers)
                        faces_bar.update(1)
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
            faces_bar.close()
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
                good = res.status in ("ok", "no_face")
                schedule.original_done(ds, entry, record.get("tracks") if good else None,
                                       self._original_crops(res) if good else None,
                                       record.get("pairs") if good and "pairs" in record else None)
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
        extra = {}
        suffix = f"-{shard_i}" if shard_n > 1 else ""
        if cfg.recipe == "selim":
            crops = [row for rec in records for row in crop_rows(rec)]
            check_folds(crops)
            extra["crops_index"] = os.path.abspath(os.path.join(cfg.out, f"crops{suffix}.csv"))
            write_crops_index(extra["crops_index"], crops)
            extra["crops_with_landmarks"] = sum(1 for r in crops if r.get("landmarks"))
            extra["diffs"] = sum(1 for r in crops if r.get("diff"))
        if cfg.recipe == "ntech":
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
            **({"recipe": cfg.recipe, **extra} if cfg.recipe != "medics" else {}),
        }


def recipe_request(cfg: ExtractConfig) -> FacesRequest:
    """The engine request of a recipe: what is computed per video, in the one pass."""
    track = TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size, min_clip_frames=cfg.min_clip_frames)
    if cfg.recipe == "medics":
        return FacesRequest(
            every=cfg.every, detector=cfg.detector, track=track, clips=ClipSpec(size=cfg.clip_size),
            crops=CropSpec(count=cfg.crops_per_video, margin=cfg.crop_margin,
                           encode=cfg.crop_format) if cfg.crops_per_video > 0 else None,
            reuse=cfg.reuse_original, to_host=True)
    if cfg.recipe == "selim":
        # crops of every 10th frame of every track (his frame % 10 == 0), at native size, kept as
        # images so the fakes' SSIM diffs use the exact pixels the PNG files hold
        return FacesRequest(
            every=cfg.every, detector=cfg.detector, track=track,
            crops=CropSpec(count=1, mode="every", every=cfg.crop_every, margin=cfg.crop_margin, encode=None),
            diffs=DiffSpec(cfg.diff_dtype), reuse=cfg.reuse_original, to_host=True)
    # ntech: IoU tracks of >= 5 detections (their pairing rule), pair clips, nothing else
    track = TrackConfig(method="iou", chunk_size=None, min_detections=5, min_frames=1, max_frames=10**9,
                        min_clip_frames=cfg.pair_length)
    return FacesRequest(every=cfg.every, detector=cfg.detector, track=track,
                        pairs=PairSpec(length=cfg.pair_length, box_mult=cfg.pair_box_mult), reuse="none",
                        to_host=True)


def load_crop_images(out: str, crops: list) -> Optional[tuple]:
    """PNG crops of a record as ``(images, keys)`` (uint8 ``(N, Hmax, Wmax, 3)``, keys
    ``(track, frame, h, w)``), or None when it has none."""
    import numpy as np
    from PIL import Image

    if not crops:
        return None
    images = []
    for c in crops:
        with Image.open(os.path.join(out, c["path"])) as im:
            images.append(np.asarray(im.convert("RGB")))
    hm, wm = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    canvas = np.zeros((len(images), hm, wm, 3), dtype=np.uint8)
    for k, im in enumerate(images):
        canvas[k, :im.shape[0], :im.shape[1]] = im
    return torch.from_numpy(canvas), [(c["track"], c["frame"], im.shape[0], im.shape[1]) for c, im in zip(crops, images)]


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


def _progress(total: int, enabled: bool, desc: str, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc=desc, disable=not enabled or total == 0, dynamic_ncols=True,
                position=position)
