"""The extraction job: the engine's results become files, JSON records and an index."""
from __future__ import annotations

import collections
import json
import logging
import os
import time
from dataclasses import asdict, replace
from typing import Iterator, Optional

import torch

from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.data.identity import VideoId, assign_ids
from dfdc_fast.data.folds import fold_of
from dfdc_fast.engine import Engine, VideoFaces, VideoTask, default_workers, track_json
from dfdc_fast.extract.config import ExtractConfig, check_settings, finish_overwrite, parse_shard, resolve_device
from dfdc_fast.extract.groups import ordered_shard, video_groups  # noqa: F401 - video_groups: for executors
from dfdc_fast.extract.index import merge_shards, rebuild_index, shards_finished
from dfdc_fast.extract.report import record_files
from dfdc_fast.extract.resume import ATTEMPTS, Resume, mark_started, read_record, started_attempts
from dfdc_fast.extract.writers import Writers, default_encoders, started_path
from dfdc_fast.files import TAG_ENV, FolderLock, StorageError, is_storage_error, remove_temporaries, write_json
from dfdc_fast.io import resolve_decoder

log = logging.getLogger("dfdc_fast.extract")


def base_record(entry: VideoEntry, vid: VideoId) -> dict:
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
        self.recipe = cfg.recipe_object
        self.request = replace(self.recipe.extract_request(cfg), max_frame_pixels=cfg.max_frame_pixels,
                               max_frames=cfg.max_frames, segment_frames=cfg.segment_frames)
        self.resume = Resume("")
        self.stale_files: dict = {}
        self._running: Optional[str] = None  # in-process mode: the video being made (its marker)
        self.ids: dict = {}

    @property
    def landmarks(self) -> bool:
        return self.recipe.landmarks

    def json_path(self, ds: Dataset, entry: VideoEntry) -> str:
        return os.path.join(self.cfg.out, "videos", self.ids[(ds.root, entry.key)].path + ".json")

    def _record(self, ds: Dataset, entry: VideoEntry, res: VideoFaces) -> dict:
        cfg, out = self.cfg, self.cfg.out
        vid = self.ids[(ds.root, entry.key)]
        record = base_record(entry, vid)
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
        if self.recipe.folds:
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
        if self.request.pairs is not None:
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
        for p in cfg.inputs:  # before the folder is made: a refused run leaves none
            if not os.path.exists(p):
                raise FileNotFoundError(f"input {p} does not exist")
        if cfg.merge:
            with FolderLock(cfg.out, "extract"):
                return merge_shards(cfg, shard_n if cfg.shard else None)
        datasets = from_paths(cfg.inputs, follow_links=cfg.follow_links, exclude=[cfg.out])
        with FolderLock(cfg.out, "extract", shard=shard_i):
            os.environ[TAG_ENV] = f"s{shard_i}"  # this shard's temporaries, in every process it starts
            stale = remove_temporaries(cfg.out, f"s{shard_i}")
            if stale:
                log.info("removed %d temporary files left by an interrupted run", stale)
            self.resume = Resume(*check_settings(cfg), overwrite=cfg.overwrite)
            return self._run(datasets, shard_i, shard_n)

    def _todo(self, entries: list) -> tuple[list, set]:
        """(the videos to do, as (position, dataset, entry); the paths of those done), saying
        in one line each why a video with a record is redone."""
        done, todo, legacy = set(), [], 0
        self.stale_files = {}
        for i, (ds, e) in enumerate(entries):
            path = self.json_path(ds, e)
            record = read_record(path)
            why = self.resume.redo_reason(record, e)
            attempts = started_attempts(path)
            if why is None:
                done.add(e.path)
                if attempts:
                    _remove(started_path(path))  # its record was written after all
                continue
            if attempts >= ATTEMPTS and why in ("new", "error"):
                log.error("%s: the job died %d times while on this video (out of memory?); status error", e.path,
                          attempts)
                write_json(path, {**base_record(e, self.ids[(ds.root, e.key)]), **self.resume.stamp(e),
                                  "status": "error", "final": True,
                                  "error": f"the job died {attempts} times while processing this video (out of memory, "
                                           "or a crash in a decoder?); --overwrite retries it"})
                os.remove(started_path(path))
                done.add(e.path)
                continue
            if why == "legacy":
                legacy += 1
            elif why not in ("new", "error", "settings"):
                log.warning("%s changed since it was extracted (%s): redoing it", e.path, why)
            if record is not None:
                self.stale_files[path] = record_files(self.cfg.out, record)
            todo.append((i, ds, e))
        if legacy:
            log.warning("%d records predate source identity (an older dfdc_fast): redoing them", legacy)
        return todo, done

    def _mark(self, tasks: Iterator[Optional[VideoTask]], schedule: "Schedule") -> Iterator[Optional[VideoTask]]:
        """In-process mode: a marker per video while it runs, so a video that takes the job
        down is known on the next start."""
        for task in tasks:
            if task is not None:
                _, ds, e = schedule.by_key[task.key]
                path = self.json_path(ds, e)
                mark_started(path, started_attempts(path) + 1)
                self._running = path
            yield task

    def _run(self, datasets: list, shard_i: int, shard_n: int) -> dict:
        cfg = self.cfg
        self.ids = assign_ids(datasets)
        entries = ordered_shard(datasets, shard_i, shard_n)
        if cfg.limit is not None:
            entries = entries[:cfg.limit]
        write_json(os.path.join(cfg.out, f"config-{shard_i}.json"),
                   {**asdict(cfg), "decoder_resolved": self.decoder, "device_resolved": str(self.device)})
        todo, done = self._todo(entries)

        t0 = time.perf_counter()
        # two bars: faces made (with the stage of the video in hand, so the first, slowest video
        # shows progress too) and videos written (clips encoded, JSON last), which lags behind
        faces_bar = _progress(len(todo), cfg.progress, "faces ", 0)
        bar = _progress(len(todo), cfg.progress, "written", 1)
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
        if self.request.stream_blocker is not None:
            log.info("recipe %s: each video is decoded whole (%s), so --max-frames (%d) bounds its memory",
                     self.recipe.name, self.request.stream_blocker, cfg.max_frames)
        startup, replaced = 0.0, 0

        path_of = {position: e.path for position, _, e in todo}  # engine tasks are keyed by position

        def stage(key, name: str) -> None:
            if key in path_of:
                faces_bar.set_postfix_str(f"{os.path.basename(path_of[key])}: {name}")

        try:
            with Engine(self.request, self.device, workers=workers, decoder=self.decoder, threads=cfg.threads,
                        video_timeout=cfg.video_timeout) as engine, \
                    Writers(encoders, cfg.clip_crf, cfg.clip_keyint, cfg.max_pending) as writers:
                startup = time.perf_counter() - t0
                workers = engine.workers
                engine.on_stage = stage
                try:
                    self.process(entries, todo, engine, writers, account, on_faces=lambda: faces_bar.update(1))
                except BaseException as exc:
                    # the videos under way get no JSON (the next run redoes them) and, as the job
                    # stopped cleanly, no mark of having taken it down
                    for path in [self._running] + [p[1] for p in writers.pending]:
                        _remove(started_path(path) if path else None)
                    if not is_storage_error(exc):
                        raise
                    stopped = exc
                    writers.pending.clear()
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
            if self.resume.generation is not None and not summary.get("stale_records") and stopped is None:
                finish_overwrite(cfg)
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
        if shard_n > 1 and stopped is None and shards_finished(cfg.out, shard_n):
            summary["merged"] = merge_shards(cfg, shard_n)["index"]  # the last shard makes the one index
        if stopped is not None:
            raise StorageError(getattr(stopped, "errno", None), f"{stopped}. The {summary['status_counts']} videos "
                               "done so far are intact and indexed; free space and rerun to resume.") from stopped
        return summary

    def process(self, entries: list, todo: list, engine: Engine, writers: Writers, on_record,
                on_faces=None) -> None:
        """Run ``todo`` (``(position, dataset, entry)`` of ``entries``) through an open engine
        and writers; ``on_record(record)`` after each video's JSON is written, ``on_faces()``
        after its faces are made. Fakes whose
        REAL video is done take its boxes (and crops, pair windows) from its JSON."""
        windows: dict = {}
        redo = {id(e) for _, _, e in todo}
        originals = self._load_originals([(ds, e) for ds, e in entries if id(e) not in redo], windows)
        recipe_waits = self.request.pairs is not None  # pairs: a fake needs its original's windows
        per_original = recipe_waits or self.request.diffs is not None  # pair windows, crops for diffs
        schedule = Schedule(todo, originals, self.cfg.reuse_original != "none" or recipe_waits,
                            fakes_of=self._fakes_of(entries) if per_original else None,
                            load_crops=self._load_crops({Schedule.key(ds, e): (ds, e) for ds, e in entries})
                            if self.request.diffs is not None else None, windows=windows)
        tasks = schedule.tasks() if engine.workers else self._mark(schedule.tasks(), schedule)
        for res in engine.run(tasks):
            self._take(res, schedule, writers)
            if on_faces is not None:
                on_faces()
            for rec in writers.finished(block=False):
                on_record(rec)
        for rec in writers.finished(block=True):
            on_record(rec)

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
            record = {**base_record(entry, self.ids[(ds.root, entry.key)]), "status": "error",
                      "error": f"{type(exc).__name__}: {exc}"}
            clips, crops = [], []
            if entry.label == "REAL":
                schedule.original_done(ds, entry, None)
        record.update(self.resume.stamp(entry))
        path = self.json_path(ds, entry)
        writers.submit(record, path, clips, crops, stale=self.stale_files.pop(path, ()))

    def _report(self, datasets, entries, shard_i, shard_n, processed, skipped, elapsed) -> dict:
        suffix = f"-{shard_i}" if shard_n > 1 else ""
        only = [self.ids[(ds.root, e.key)] for ds, e in entries] if shard_n > 1 else None
        return {**rebuild_index(self.cfg, datasets, self.resume.settings_key, only, suffix),
                "shard": f"{shard_i}/{shard_n}", "device": str(self.device), "decoder": self.decoder,
                "processed": processed, "skipped_done": skipped, "elapsed_s": round(elapsed, 3),
                "videos_per_s": round(processed / elapsed, 3) if processed and elapsed > 0 else None}


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


def _remove(path: Optional[str]) -> None:
    try:
        if path:
            os.remove(path)
    except FileNotFoundError:
        pass


def _progress(total: int, enabled: bool, desc: str, position: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc=desc, disable=not enabled or total == 0, dynamic_ncols=True,
                position=position)
