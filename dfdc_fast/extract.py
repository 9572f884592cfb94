"""``python -m dfdc_fast.extract``: face clips and crops for a whole dataset (resumable, shardable).

Per video, in worker processes (one per NVDEC engine on a GPU, one per core on a CPU):
decode every frame (NVDEC on a GPU, PyAV on the CPU; frames stay YUV) -> detect faces on
every n-th frame (batched MTCNN, the Medics' export settings: 0.5x, 0.6/0.7/0.7) -> track
them (3D connected components) -> cut, on the device, one square face clip per track and
chunk (256x256, the Medics' 3D training clips) and 2D face crops with a third of the
box as margin at K evenly spaced frames (Selim's) -> encode the clips in a pool of
encoder processes (libx264) while the workers go on with the next videos.

Outputs under OUT:
  clips/<REAL|FAKE|_>/<part>_<name>_<chunk>_<track>.mp4   H.264 face clips
  crops/<part>/<name>/<track>_<frame>.jpg                 2D face crops
  videos/<part>/<name>.json   per video: status, info, tracks, outputs (written last: the video is done)
  index.csv                   one row per face clip, plus one per video without any (with its status)
  summary.json, contact_sheet.png, config-<shard>.json

Statuses: ok, too_short (a clip under --min-clip-frames), no_face, decode_error, error.
A FAKE whose REAL original is in the dataset reuses the original's boxes for its 2D
crops (--reuse-original 2d, as both seeds did), or for everything (all).
Re-running skips finished videos; --shard i/N, or torchrun, splits the work, keeping a
REAL video and its fakes in the same shard. With no input it extracts the demo clips
shipped in the package.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import collections
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import torch

from dfdc_fast.crops import write_mp4
from dfdc_fast.crops.encode import temporary_path
from dfdc_fast.crops.sheet import COLOURS, write_contact_sheet
from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.detect import PRESETS
from dfdc_fast.engine import ClipSpec, CropSpec, Engine, FacesRequest, VideoFaces, VideoTask, track_json
from dfdc_fast.io import DECODERS, resolve_decoder
from dfdc_fast.runtime import tune_host_allocator
from dfdc_fast.track import TrackConfig

log = logging.getLogger(__name__)

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
REUSE = ("none", "2d", "all")
INDEX_FIELDS = ["video", "part", "label", "original", "status", "error", "track", "chunk", "start", "stop",
                "x0", "y0", "x1", "y1", "score", "clip", "clip_frames", "keyint", "crops", "boxes_from",
                "frames", "width", "height", "fps", "json"]


@dataclass
class ExtractConfig:
    """Options of the extraction job (the CLI maps its flags onto these)."""

    inputs: list = field(default_factory=lambda: [DEMO_DIR])
    out: str = "extract_out"
    every: int = 10
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    decoder: str = "auto"
    workers: Optional[int] = None  # engine worker processes; None: one per NVDEC engine / CPU core; 0: in-process
    threads: Optional[int] = None  # torch + decoder threads per worker; None: cores / workers
    encoders: Optional[int] = None  # encoder processes; None: the cores the workers leave, at least 2; 0: inline
    video_timeout: Optional[float] = 600.0
    detector: str = "medics_export"
    track_method: str = "mask"
    chunk_size: Optional[int] = 150
    clip_size: int = 256
    min_clip_frames: int = 64
    clip_crf: int = 18
    clip_keyint: int = 16
    crops_per_video: int = 32
    crop_margin: float = 1 / 3
    crop_format: str = "jpg"
    reuse_original: str = "2d"
    max_pending: int = 4
    contact_sheet: int = 12
    shard: Optional[str] = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.reuse_original not in REUSE:
            raise ValueError(f"reuse_original must be one of {REUSE}, got {self.reuse_original!r}")
        if self.detector not in PRESETS:
            raise ValueError(f"detector must be one of {sorted(PRESETS)}, got {self.detector!r}")
        if self.crop_format not in ("jpg", "png"):
            raise ValueError(f"crop_format must be jpg or png, got {self.crop_format!r}")
        if self.clip_size < 2 or self.clip_size % 2:
            raise ValueError(f"clip_size must be even (H.264 4:2:0), got {self.clip_size}")
        for name in ("max_pending", "clip_keyint"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "encoders"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def parse_shard(shard: Optional[str]) -> tuple[int, int]:
    """``"i/N"`` → (i, N); else the torchrun rank (RANK/WORLD_SIZE); else (0, 1)."""
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {shard!r}: need 0 <= i < N")
        return i, n
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    return device


def video_json_path(out: str, entry: VideoEntry) -> str:
    return os.path.join(out, "videos", entry.part or "_", entry.stem + ".json")


def _write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _remove_stale_temporaries(out: str) -> int:
    """Files a killed run left under a temporary name (never under a final one)."""
    n = 0
    for root, _, files in os.walk(out):
        for f in files:
            if f.startswith(".tmp-"):
                os.remove(os.path.join(root, f))
                n += 1
    return n


def _is_done(path: str) -> bool:
    try:
        with open(path) as f:
            return json.load(f).get("status") != "error"  # errors are retried
    except (OSError, ValueError):
        return False


def _ordered_shard(datasets: list[Dataset], shard_i: int, shard_n: int) -> list[tuple[Dataset, VideoEntry]]:
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


# ---- per video ------------------------------------------------------------------------


class Extractor:
    """Runs the job; ``run()`` returns the summary."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.decoder = resolve_decoder(cfg.decoder, self.device)
        self.request = FacesRequest(
            every=cfg.every, detector=cfg.detector,
            track=TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size, min_clip_frames=cfg.min_clip_frames),
            clips=ClipSpec(size=cfg.clip_size),
            crops=CropSpec(count=cfg.crops_per_video, margin=cfg.crop_margin,
                           encode=cfg.crop_format) if cfg.crops_per_video > 0 else None,
            reuse=cfg.reuse_original, to_host=True, thumbnail_width=320 if cfg.contact_sheet else None)
        self.thumbs: list = []  # (entry position, thumbnail, boxes, labels): the first videos by position

    def _record(self, entry: VideoEntry, res: VideoFaces) -> dict:
        cfg, out = self.cfg, self.cfg.out
        record = _base_record(entry)
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
        prefix = f"{entry.part}_{entry.stem}" if entry.part else entry.stem
        record["clips"] = []
        for c in res.clips:
            path = os.path.join(out, "clips", folder, f"{prefix}_{c.chunk}_{c.track}.mp4")
            record["clips"].append({"track": c.track, "chunk": c.chunk, "start": c.start, "stop": c.stop,
                                    "box": c.box, "score": c.score, "path": os.path.relpath(path, out),
                                    "frames": c.frames, "keyint": cfg.clip_keyint,
                                    "status": "too_short" if c.too_short else "ok"})
        crop_dir = os.path.join(out, "crops", entry.part or "_", entry.stem)
        record["crops"] = [{"track": c.track, "frame": c.frame, "box": c.box,
                            "path": os.path.relpath(os.path.join(crop_dir, f"{c.track}_{c.frame}.{cfg.crop_format}"),
                                                    out)} for c in res.crops]
        record["status"], record["error"] = res.status, res.error
        return record

    def _files(self, record: dict, res: VideoFaces) -> tuple[list, list]:
        """(clip jobs, crop files) to write for a result."""
        out = self.cfg.out
        fps = record.get("fps") or 30.0
        clips = [(os.path.join(out, c["path"]), res.clip(m), fps) for c, m in zip(record.get("clips", []), res.clips)]
        crops = [(os.path.join(out, c["path"]), res.crop_bytes(m)) for c, m in zip(record.get("crops", []), res.crops)]
        return clips, crops

    def _keep_thumbnail(self, position: int, entry: VideoEntry, res: VideoFaces) -> None:
        if res.thumbnail is None or not self.cfg.contact_sheet:
            return
        labels = [f"{entry.stem} #{i}" for i in res.detections.get("thumbnail_tracks", [])]
        self.thumbs.append((position, res.thumbnail.clone(), res.thumbnail_boxes.clone(), labels))
        self.thumbs.sort(key=lambda t: t[0])
        del self.thumbs[self.cfg.contact_sheet:]

    def run(self) -> dict:
        cfg = self.cfg
        shard_i, shard_n = parse_shard(cfg.shard)
        os.makedirs(cfg.out, exist_ok=True)
        stale = _remove_stale_temporaries(cfg.out)
        if stale:
            log.info("removed %d temporary files left by an interrupted run", stale)
        datasets = from_paths(cfg.inputs)
        entries = _ordered_shard(datasets, shard_i, shard_n)
        _write_json_atomic(os.path.join(cfg.out, f"config-{shard_i}.json"),
                           {**asdict(cfg), "decoder_resolved": self.decoder, "device_resolved": str(self.device)})
        done = {e.path for _, e in entries if not cfg.overwrite and _is_done(video_json_path(cfg.out, e))}
        todo = [(i, ds, e) for i, (ds, e) in enumerate(entries) if e.path not in done]
        originals = self._load_originals(entries)

        t0 = time.perf_counter()
        bar = _progress(len(todo), cfg.progress)
        schedule = _Schedule(todo, originals, cfg.reuse_original != "none")
        busy: dict = collections.Counter()

        def account(record: dict) -> None:
            bar.update(1)
            for k, v in (record.get("timings_s") or {}).items():
                busy[k] += v

        with Engine(self.request, self.device, workers=cfg.workers, decoder=self.decoder, threads=cfg.threads,
                    video_timeout=cfg.video_timeout) as engine, _Writers(cfg) as writers:
            startup = time.perf_counter() - t0
            for res in engine.run(schedule.tasks()):
                position, ds, entry = schedule.finished(res)
                try:
                    record = self._record(entry, res)
                    if entry.label == "REAL":
                        schedule.original_done(ds, entry, record.get("tracks") if res.status in ("ok", "no_face")
                                               else None)
                    clips, crops = self._files(record, res)
                    self._keep_thumbnail(position, entry, res)
                except Exception as exc:  # noqa: BLE001 - one bad video never stops the run
                    log.exception("%s failed", entry.path)
                    record = {**_base_record(entry), "status": "error", "error": f"{type(exc).__name__}: {exc}"}
                    clips, crops = [], []
                    if entry.label == "REAL":
                        schedule.original_done(ds, entry, None)
                writers.submit(record, video_json_path(cfg.out, entry), clips, crops)
                for rec in writers.finished(block=False):
                    account(rec)
            for rec in writers.finished(block=True):
                account(rec)
            self.decoder = engine.decoder_resolved or self.decoder
            replaced, workers = engine.replaced, engine.workers
        bar.close()
        elapsed = time.perf_counter() - t0
        summary = self._report(datasets, entries, shard_i, shard_n, len(todo), len(done), elapsed)
        steady = elapsed - startup
        summary.update(startup_s=round(startup, 3), workers=workers,
                       steady_videos_per_s=round(len(todo) / steady, 3) if todo and steady > 0 else None,
                       stage_busy_s={k: round(v, 3) for k, v in sorted(busy.items())})
        if replaced:
            summary["workers_replaced"] = replaced
        _write_json_atomic(os.path.join(cfg.out, f"summary-{shard_i}.json" if shard_n > 1 else "summary.json"), summary)
        return summary

    def _load_originals(self, entries) -> dict:
        """Tracks of REAL videos finished by an earlier run, for their fakes: {(root, part, name): tracks}."""
        out = {}
        for ds, e in entries:
            if e.label == "REAL":
                try:
                    with open(video_json_path(self.cfg.out, e)) as f:
                        rec = json.load(f)
                    if rec.get("tracks"):
                        out[(ds.root, e.part or "", e.name)] = rec["tracks"]
                except (OSError, ValueError):
                    pass
        return out

    def _report(self, datasets, entries, shard_i, shard_n, processed, skipped, elapsed) -> dict:
        cfg = self.cfg
        rows, records = [], []
        for _, e in entries:
            path = video_json_path(cfg.out, e)
            with open(path) as f:
                rec = json.load(f)
            records.append(rec)
            rows += _index_rows(rec, os.path.relpath(path, cfg.out))
        for ds in datasets:
            rows += [{"video": m.name, "part": m.part, "label": m.label, "original": m.original,
                      "status": "missing", "error": "listed in metadata.json but not on disk"} for m in ds.missing]
            rows += [{"video": n, "status": "error", "error": f"refused name: {why}"} for n, why in ds.rejected]
        index_path = os.path.join(cfg.out, f"index-{shard_i}.csv" if shard_n > 1 else "index.csv")
        tmp = temporary_path(index_path)
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, index_path)

        statuses: dict = {}
        for r in records:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        for ds in datasets:
            if ds.missing:
                statuses["missing"] = statuses.get("missing", 0) + len(ds.missing)
            if ds.rejected:
                statuses["error"] = statuses.get("error", 0) + len(ds.rejected)
        clips = [c for r in records for c in r.get("clips", [])]
        sheet = None
        if self.thumbs:
            sheet = os.path.join(cfg.out, f"contact_sheet-{shard_i}.png" if shard_n > 1 else "contact_sheet.png")
            write_contact_sheet(sheet, [_draw_thumbnail(img, boxes, labels) for _, img, boxes, labels in self.thumbs])
        with_tracks = [r for r in records if r.get("tracks") is not None]
        summary = {
            "out": os.path.abspath(cfg.out), "index": os.path.abspath(index_path), "shard": f"{shard_i}/{shard_n}",
            "device": str(self.device), "decoder": self.decoder, "detector": cfg.detector,
            "videos": len(entries), "processed": processed, "skipped_done": skipped,
            "status_counts": statuses,
            "clips": len(clips), "clips_too_short": sum(c["status"] == "too_short" for c in clips),
            "crops": sum(len(r.get("crops", [])) for r in records),
            "faces_per_video": round(sum(len(r["tracks"]) for r in with_tracks) / len(with_tracks), 3) if with_tracks else None,
            "elapsed_s": round(elapsed, 3),
            "videos_per_s": round(processed / elapsed, 3) if processed and elapsed > 0 else None,
            "contact_sheet": sheet,
        }
        _write_json_atomic(os.path.join(cfg.out, f"summary-{shard_i}.json" if shard_n > 1 else "summary.json"), summary)
        return summary


def _base_record(entry: VideoEntry) -> dict:
    return {"video": entry.name, "part": entry.part, "label": entry.label, "original": entry.original,
            "path": entry.path}


def _draw_thumbnail(image: torch.Tensor, boxes: torch.Tensor, labels: list[str]) -> torch.Tensor:
    from torchvision.utils import draw_bounding_boxes

    if not len(boxes):
        return image
    return draw_bounding_boxes(image, boxes.round(), labels=labels, width=2,
                               colors=[COLOURS[i % len(COLOURS)] for i in range(len(boxes))])


class _Schedule:
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
    def _key(ds, entry, name=None) -> tuple:
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
            original = self._key(ds, entry, entry.original) if entry.label == "FAKE" and entry.original else None
            if not self.reuse or original is None or original in self.originals:
                yield self._task(item, self.originals.get(original) if self.reuse and original else None)
            elif original in self.in_flight:
                self.held[original].append(item)
            else:  # its original is not in this dataset or shard, or failed
                yield self._task(item, None)

    def _task(self, item, original_tracks) -> VideoTask:
        position, ds, entry = item
        if entry.label == "REAL":
            self.in_flight.add(self._key(ds, entry))
        self.by_key[position] = item
        return VideoTask(key=position, path=entry.path, original_tracks=original_tracks)

    def finished(self, res: VideoFaces) -> tuple:
        return self.by_key.pop(res.key)

    def original_done(self, ds, entry, tracks: Optional[list]) -> None:
        key = self._key(ds, entry)
        self.in_flight.discard(key)
        if tracks is not None:
            self.originals[key] = tracks
        for item in self.held.pop(key, []):
            self.ready.append((item, tracks))


def _encode_clip(path: str, frames: torch.Tensor, fps: float, crf: int, keyint: int) -> float:
    t0 = time.perf_counter()
    write_mp4(path, frames, fps, crf=crf, keyint=keyint)
    return time.perf_counter() - t0


def _write_files(files: list) -> float:
    t0 = time.perf_counter()
    for path, data in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = temporary_path(path)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return time.perf_counter() - t0


def _encoder_init() -> None:
    torch.set_num_threads(1)


class _Writers:
    """Encodes and writes each video's files, then its JSON (which marks it done).

    Clips go to a pool of encoder processes (libx264 with one thread per clip scales with
    processes); ``encoders=0`` writes in this process. At most ``max_pending`` videos wait
    for their files, which holds the engine back when the encoders are the bottleneck.
    """

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.pool = None
        n = cfg.encoders if cfg.encoders is not None else default_encoders(cfg)
        if n > 0:
            import torch.multiprocessing as tmp

            self.pool = ProcessPoolExecutor(n, mp_context=tmp.get_context("spawn"), initializer=_encoder_init)
        self.pending: collections.deque = collections.deque()  # (record, json path, futures)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=exc[0] is not None)

    def submit(self, record: dict, json_path: str, clips: list, crops: list) -> None:
        cfg = self.cfg
        if self.pool is None:
            futures = [_run_now(_encode_clip, p, f, fps, cfg.clip_crf, cfg.clip_keyint) for p, f, fps in clips]
            futures.append(_run_now(_write_files, crops))
        else:
            futures = [self.pool.submit(_encode_clip, p, f, fps, cfg.clip_crf, cfg.clip_keyint) for p, f, fps in clips]
            futures.append(self.pool.submit(_write_files, crops))
        self.pending.append((record, json_path, futures))

    def finished(self, block: bool) -> Iterator[dict]:
        """Write the JSON of videos whose files are done, oldest first; yields their records."""
        while self.pending:
            record, json_path, futures = self.pending[0]
            if not block and len(self.pending) <= self.cfg.max_pending and not all(f.done() for f in futures):
                return
            errors, busy = [], 0.0
            for f in futures:
                try:
                    busy += f.result()
                except Exception as exc:  # noqa: BLE001 - a failed write is this video's error
                    errors.append(f"{type(exc).__name__}: {exc}")
            record.setdefault("timings_s", {})["encode"] = round(busy, 4)
            if errors:
                record.update(status="error", error=f"writing outputs: {errors[0]}")
            self.pending.popleft()
            _write_json_atomic(json_path, record)
            yield record


def _run_now(fn, *args) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001
        future.set_exception(exc)
    return future


def default_encoders(cfg: ExtractConfig) -> int:
    """Encoder processes: the cores the engine's workers leave free, at least two."""
    from dfdc_fast.engine import default_workers

    cores = default_workers("cpu")
    on_gpu = torch.device(cfg.device).type == "cuda"
    workers = cfg.workers if cfg.workers is not None else (default_workers(cfg.device) if on_gpu else 0)
    return max(2, cores - (workers if on_gpu else 0))


def _index_rows(rec: dict, json_rel: str) -> list[dict]:
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
                     "track": c["track"], "chunk": c["chunk"], "start": c["start"], "stop": c["stop"],
                     "x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": c["score"], "clip": c["path"],
                     "clip_frames": c["frames"], "keyint": c.get("keyint"), "crops": crops_per_track.get(c["track"], 0)})
    return rows


def run_extraction(cfg: ExtractConfig) -> dict:
    """Run the job; returns the summary that is also written to ``OUT/summary.json``."""
    return Extractor(cfg).run()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="extract", disable=not enabled or total == 0, dynamic_ncols=True)


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    ap = argparse.ArgumentParser(prog="python -m dfdc_fast.extract", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                    help="videos and/or dataset folders (DFDC parts, folder with metadata.json, plain folder); "
                         "default: the demo clips in the package")
    ap.add_argument("-o", "--out", default=d.out, help="output folder (default: %(default)s)")
    g = ap.add_argument_group("detection and tracking")
    g.add_argument("--every", type=int, default=d.every, help="detect faces on every n-th frame (default: %(default)s)")
    g.add_argument("--detector", default=d.detector, choices=sorted(PRESETS),
                   help="MTCNN settings (default: %(default)s: 0.5x, thresholds 0.6/0.7/0.7)")
    g.add_argument("--track-method", default=d.track_method, choices=("mask", "iou"),
                   help="mask: 3D connected components (the Medics); iou: IoU tracker (default: %(default)s)")
    g.add_argument("--chunk-size", type=int, default=d.chunk_size,
                   help="frames per clip chunk, each with its own box; 0 for whole tracks (default: %(default)s)")
    g = ap.add_argument_group("outputs")
    g.add_argument("--clip-size", type=int, default=d.clip_size, help="side of the square face clips (default: %(default)s)")
    g.add_argument("--min-clip-frames", type=int, default=d.min_clip_frames,
                   help="shorter clips get status too_short (default: %(default)s)")
    g.add_argument("--clip-crf", type=int, default=d.clip_crf, help="x264 quality of the clips (default: %(default)s)")
    g.add_argument("--clip-keyint", type=int, default=d.clip_keyint,
                   help="frames between keyframes in the clips, so training decodes only near its window (default: %(default)s)")
    g.add_argument("--crops-per-video", type=int, default=d.crops_per_video,
                   help="2D crops at this many evenly spaced frames, 0 for none (default: %(default)s)")
    g.add_argument("--crop-margin", type=float, default=d.crop_margin,
                   help="margin around 2D crops, as a fraction of the box (default: 1/3)")
    g.add_argument("--crop-format", default=d.crop_format, choices=("jpg", "png"), help="(default: %(default)s)")
    g.add_argument("--reuse-original", default=d.reuse_original, choices=REUSE,
                   help="fakes take their original's boxes for: none, 2d crops, or all outputs (default: %(default)s)")
    g.add_argument("--contact-sheet", type=int, default=d.contact_sheet,
                   help="videos shown in contact_sheet.png, 0 for none (default: %(default)s)")
    g = ap.add_argument_group("execution")
    g.add_argument("--device", default=d.device, help="torch device; under torchrun cuda means cuda:LOCAL_RANK (default: %(default)s)")
    g.add_argument("--decoder", default=d.decoder, choices=("auto",) + tuple(DECODERS), help="video decoder (default: %(default)s)")
    g.add_argument("--workers", type=int, default=d.workers,
                   help="worker processes running decode/detect/track/cut (default: one per NVDEC engine on a GPU, "
                        "one per core on a CPU; 0: in this process)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch and decoder threads per worker (default: cores / workers)")
    g.add_argument("--encoders", type=int, default=d.encoders,
                   help="processes encoding the clips (default: the cores the workers leave, at least 2; 0: inline)")
    g.add_argument("--video-timeout", type=float, default=d.video_timeout,
                   help="seconds a video may take before its worker is replaced and it gets status error (default: %(default)s)")
    g.add_argument("--max-pending", type=int, default=d.max_pending,
                   help="videos waiting for the encoders before decoding pauses (default: %(default)s)")
    g.add_argument("--shard", default=None, help="process shard i of N, as i/N (default: torchrun rank, else 0/1)")
    g.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return ap


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    tune_host_allocator()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    values = vars(args)
    values["chunk_size"] = values["chunk_size"] or None
    cfg = ExtractConfig(**{**values, "inputs": args.inputs or [DEMO_DIR]})
    if not args.inputs:
        print(f"No input given: extracting the demo clips in {DEMO_DIR}", file=sys.stderr)
    print(f"Output folder: {os.path.abspath(cfg.out)}", file=sys.stderr)
    summary = run_extraction(cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
