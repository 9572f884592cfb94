"""``python -m dfdc_fast.extract``: face clips and crops for a whole dataset (resumable, shardable).

Per video: decode every frame (NVDEC on a GPU, PyAV on the CPU) -> detect faces on every
n-th frame (batched MTCNN, the Medics' export settings: 0.5x, 0.6/0.7/0.7) -> track them
(3D connected components) -> cut, on the device, one square face clip per track and
chunk (256x256, the Medics' 3D training clips) and 2D face crops with a third of the
box as margin at K evenly spaced frames (Selim's) -> encode them on CPU threads while
the next video is decoded and detected.

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
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from dfdc_fast.crops import clip as cut_clip
from dfdc_fast.crops import faces as cut_faces
from dfdc_fast.crops import write_jpeg, write_mp4
from dfdc_fast.crops.encode import temporary_path
from dfdc_fast.crops.sheet import thumbnail, write_contact_sheet
from dfdc_fast.data import Dataset, VideoEntry, from_paths
from dfdc_fast.detect import MTCNN, PRESETS
from dfdc_fast.io import DECODERS, Video, VideoDecodeError, read_videos, resolve_decoder
from dfdc_fast.track import FaceTrack, TrackConfig, interpolate_boxes, track_faces
from dfdc_fast.runtime import tune_host_allocator

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
    workers: int = 1
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
    encoder_threads: int = 2
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
        for name in ("encoder_threads", "max_pending", "workers", "clip_keyint"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


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


def _tracks_to_json(tracks: list[FaceTrack]) -> list[dict]:
    out = []
    for t in tracks:
        key_boxes = t.boxes[(t.keyframes - t.start).to(t.boxes.device)].cpu()
        # key boxes at full float32 precision, so a fake that reuses them gets identical boxes
        out.append({**t.to_dict(), "keyframes": t.keyframes.tolist(), "key_boxes": key_boxes.tolist()})
    return out


def _tracks_from_json(items: list[dict], device) -> list[FaceTrack]:
    tracks = []
    for d in items:
        kf = torch.tensor(d["keyframes"], dtype=torch.int64)
        boxes = interpolate_boxes(kf, torch.tensor(d["key_boxes"]), d["start"], d["stop"]).to(device)
        tracks.append(FaceTrack(track_id=d["track_id"], chunk=d["chunk"], start=d["start"], stop=d["stop"],
                                box=torch.tensor(d["box"], device=device), boxes=boxes, score=d["score"],
                                keyframes=kf, too_short=d["too_short"]))
    return tracks


def _crop_frames(num_frames: int, k: int) -> list[int]:
    """``k`` evenly spaced frames, first and last included (as Selim sampled)."""
    if k <= 0 or num_frames <= 0:
        return []
    if k == 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (k - 1)) for i in range(k)})


@dataclass
class _Outputs:
    """What one video sends to the encoder threads (all on the host)."""

    record: dict
    json_path: str
    clips: list = field(default_factory=list)  # (path, uint8 (T, S, S, 3) tensor, fps)
    crops: list = field(default_factory=list)  # (path, uint8 (h, w, 3) tensor)


class Extractor:
    """Runs the job; ``run()`` returns the summary."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.decoder = resolve_decoder(cfg.decoder, self.device)
        self.detector = MTCNN(self.device, cfg.detector)
        self.track_config = TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size,
                                        min_clip_frames=cfg.min_clip_frames)
        self.thumbs: list[torch.Tensor] = []
        self.lock = threading.Lock()

    # The GPU part: decode, detect, track, cut. Returns the host-side outputs.
    def process(self, entry: VideoEntry, video: Video, originals: dict) -> _Outputs:
        cfg, out = self.cfg, self.cfg.out
        info = video.info
        record = self._base_record(entry)
        record.update(frames=info.num_frames, width=info.width, height=info.height, fps=round(info.fps, 4),
                      rotation=info.rotation, decoder=video.decoder)
        t0 = time.perf_counter()
        frames = video.frames  # all frames, (T, H, W, 3) on the device
        sampled = frames[::cfg.every]
        dets = self.detector.detect(sampled, video.indices[::cfg.every])
        tracks = track_faces(dets, frames.shape, self.track_config)
        record["timings_s"] = {"detect_track": round(time.perf_counter() - t0, 4)}
        record["detections"] = {"sampled_frames": len(dets), "faces": int(dets.counts.sum()),
                                "frames_with_face": int((dets.counts > 0).sum())}
        record["tracks"] = _tracks_to_json(tracks)

        original = originals.get(entry.original) if entry.label == "FAKE" else None
        clip_tracks, crop_tracks, boxes_from = tracks, tracks, "self"
        if original is not None and cfg.reuse_original != "none":
            reused = [t for t in _tracks_from_json(original, self.device) if t.stop <= len(frames)]
            crop_tracks, boxes_from = reused, "original"
            if cfg.reuse_original == "all":
                clip_tracks = reused
        record["boxes_from"] = boxes_from
        outputs = _Outputs(record=record, json_path=video_json_path(out, entry))

        folder = entry.label if entry.label in ("REAL", "FAKE") else "_"
        prefix = f"{entry.part}_{entry.stem}" if entry.part else entry.stem
        record["clips"] = []
        for t in clip_tracks:
            path = os.path.join(out, "clips", folder, f"{prefix}_{t.chunk}_{t.track_id}.mp4")
            face = cut_clip(frames[t.start:t.stop], t.box, cfg.clip_size)
            outputs.clips.append((path, face.cpu(), info.fps))
            record["clips"].append({"track": t.track_id, "chunk": t.chunk, "start": t.start, "stop": t.stop,
                                    "box": [round(float(v), 2) for v in t.box.tolist()], "score": round(t.score, 5),
                                    "path": os.path.relpath(path, out), "frames": t.stop - t.start,
                                    "keyint": cfg.clip_keyint,
                                    "status": "too_short" if t.too_short else "ok"})
        record["crops"] = []
        crop_dir = os.path.join(out, "crops", entry.part or "_", entry.stem)
        for f in _crop_frames(len(frames), cfg.crops_per_video):
            here = [t for t in crop_tracks if t.start <= f < t.stop]
            if not here:
                continue
            boxes = torch.stack([t.boxes[f - t.start] for t in here])
            for t, face in zip(here, cut_faces(frames[f].unsqueeze(0).expand(len(here), -1, -1, -1), boxes, cfg.crop_margin)):
                path = os.path.join(crop_dir, f"{t.track_id}_{f}.{cfg.crop_format}")
                outputs.crops.append((path, face.contiguous().cpu()))
                box = [round(float(v), 2) for v in t.boxes[f - t.start].tolist()]
                record["crops"].append({"track": t.track_id, "frame": f, "box": box, "path": os.path.relpath(path, out)})
        record["status"] = "ok" if tracks or (boxes_from == "original" and crop_tracks) else "no_face"
        record["error"] = None if record["status"] == "ok" else "no face track persisted long enough"
        if tracks and len(self.thumbs) < cfg.contact_sheet:
            mid = tracks[0].start + (tracks[0].stop - tracks[0].start) // 2
            here = [t for t in tracks if t.start <= mid < t.stop]
            self.thumbs.append(thumbnail(frames[mid], torch.stack([t.boxes[mid - t.start] for t in here]),
                                         [f"{entry.stem} #{t.track_id}" for t in here]))
        return outputs

    def _base_record(self, entry: VideoEntry) -> dict:
        return {"video": entry.name, "part": entry.part, "label": entry.label, "original": entry.original,
                "path": entry.path}

    # The CPU part, on encoder threads: write files, then the JSON that marks the video done.
    def finish(self, outputs: _Outputs) -> dict:
        record = outputs.record
        t0 = time.perf_counter()
        try:
            for path, frames, fps in outputs.clips:
                write_mp4(path, frames, fps, crf=self.cfg.clip_crf, keyint=self.cfg.clip_keyint)
            for path, image in outputs.crops:
                write_jpeg(path, image)
        except Exception as exc:  # a failed write is this video's error, not the run's
            record.update(status="error", error=f"writing outputs: {type(exc).__name__}: {exc}")
        record.setdefault("timings_s", {})["encode"] = round(time.perf_counter() - t0, 4)
        _write_json_atomic(outputs.json_path, record)
        return record

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
        todo = [e for _, e in entries if e.path not in done]
        originals = self._load_originals(entries)

        t0 = time.perf_counter()
        bar = _progress(len(todo), cfg.progress)
        pending: deque[Future] = deque()
        by_path = {e.path: e for e in todo}
        with ThreadPoolExecutor(cfg.encoder_threads, thread_name_prefix="encode") as pool:
            for path, result in read_videos(list(by_path), None, device=self.device, decoder=self.decoder,
                                            workers=cfg.workers):
                entry = by_path[path]
                try:
                    if isinstance(result, VideoDecodeError):
                        record = {**self._base_record(entry), "status": "decode_error", "error": result.cause}
                        outputs = _Outputs(record=record, json_path=video_json_path(cfg.out, entry))
                    else:
                        outputs = self.process(entry, result, originals)
                        if entry.label == "REAL":
                            originals[entry.name] = outputs.record["tracks"]
                except Exception as exc:  # one bad video never stops the run
                    log.exception("%s failed", path)
                    record = {**self._base_record(entry), "status": "error", "error": f"{type(exc).__name__}: {exc}"}
                    outputs = _Outputs(record=record, json_path=video_json_path(cfg.out, entry))
                del result
                pending.append(pool.submit(self.finish, outputs))
                while len(pending) > cfg.max_pending or (pending and pending[0].done()):
                    pending.popleft().result()
                    bar.update(1)
            while pending:
                pending.popleft().result()
                bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t0
        return self._report(datasets, entries, shard_i, shard_n, len(todo), len(done), elapsed)

    def _load_originals(self, entries) -> dict:
        """Tracks of REAL videos finished by an earlier run, for their fakes."""
        out = {}
        for _, e in entries:
            if e.label == "REAL":
                try:
                    with open(video_json_path(self.cfg.out, e)) as f:
                        rec = json.load(f)
                    if rec.get("tracks"):
                        out[e.name] = rec["tracks"]
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
            write_contact_sheet(sheet, self.thumbs)
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
    g.add_argument("--workers", type=int, default=d.workers, help="videos decoded at once (default: %(default)s)")
    g.add_argument("--encoder-threads", type=int, default=d.encoder_threads,
                   help="CPU threads writing clips and crops (default: %(default)s)")
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
