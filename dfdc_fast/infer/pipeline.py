"""``run_inference``: videos -> faces -> ensemble -> one probability per video -> submission.csv.

Videos go in groups. Reader threads decode the next group (several NVDEC sessions on a
GPU) while the current group is detected and scored. The sampled frames of a whole group
go through MTCNN in one call, and the faces of a whole group go through each model together.
Every video ends with a status:

* ``ok``: at least one face was scored.
* ``no_face``, ``decode_error``, ``missing`` or ``error``: scored 0.5, counted and reported.
* ``time_budget``: scored 0.5, because the budget ran out before the video's turn.

``submission.csv`` is rewritten after every group, with 0.5 for the videos not yet done,
so even a killed run leaves a complete file.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import torch

from dfdc_fast.infer.budget import LEVELS, Budget

log = logging.getLogger("dfdc_fast.infer")
FALLBACK = 0.5


@dataclass
class InferConfig:
    """Options of the inference job (the CLI maps its flags onto these)."""

    inputs: list = field(default_factory=list)        # folders (DFDC test layout or any) or video files
    checkpoints: list = field(default_factory=list)   # dfdc_fast checkpoints (train's epoch_*.pth)
    out: str = "infer_out"
    frames: int = 100             # the first N frames of each video (the Medics: 100)
    detect_every: int = 10        # detect on every n-th of them
    detector: str = "medics_inference"   # MTCNN preset: long side 480, 0.8/0.8/0.9, 0.5 fallback, 5 faces
    max_faces: int = 5
    min_face_frames: int = 30
    clip_size: int = 256          # square face clip side before each model's test transform
    frames_2d: int = 32           # per face, crops of its first N frames for 2D models
    margin_2d: float = 0.1        # 2D crop = box grown by this on each side (the Medics: 1.2x box)
    tta: bool = True              # 3D: average the clip and its horizontal flip
    aggregator: str = "medics"    # medics | selim | ntech
    device: Optional[str] = None
    decoder: str = "auto"
    workers: int = 2              # concurrent readers (NVDEC sessions on a GPU)
    videos_per_batch: int = 8
    amp: str = "auto"             # auto (bf16 on GPUs with it) | bf16 | fp16 | none
    time_budget: Optional[float] = None   # seconds for the whole run, writing included
    progress: bool = True


@dataclass
class VideoResult:
    """One row of the submission and the JSON written beside it."""

    filename: str
    path: str
    label: float = FALLBACK
    status: str = "pending"
    error: Optional[str] = None
    faces: int = 0
    level: Optional[str] = None
    scores: dict = field(default_factory=dict)     # member -> [per-face probabilities]
    timings: dict = field(default_factory=dict)


def list_videos(inputs: list[str]) -> list[VideoResult]:
    """Every video of the inputs, plus those a metadata.json lists but that are missing and
    those refused as unsafe (both scored 0.5 with their status)."""
    from dfdc_fast.data import from_paths

    results, seen = [], set()
    for ds in from_paths(inputs):
        for entry in ds.videos:
            name = os.path.basename(entry.name)
            if name in seen:
                raise ValueError(f"two inputs hold a video named {name!r}: submission rows would clash")
            seen.add(name)
            results.append(VideoResult(name, entry.path))
        for name, reason in ds.rejected:  # unsafe names (links out of the folder...) still get a row
            name = os.path.basename(name)
            if name not in seen:
                seen.add(name)
                results.append(VideoResult(name, "", status="error", error=f"refused: {reason}"))
        for entry in ds.missing:
            name = os.path.basename(entry.name)
            if name not in seen:
                seen.add(name)
                results.append(VideoResult(name, entry.path, status="missing", error="listed but not found"))
    if not results:
        raise ValueError(f"no videos found in {inputs}")
    return results


class FaceScorer:
    """Detection, tracking and the ensemble for groups of decoded videos."""

    def __init__(self, config: InferConfig, device: torch.device):
        from dfdc_fast.detect import MTCNN
        from dfdc_fast.infer.ensemble import Ensemble
        from dfdc_fast.runtime import amp_dtype
        from dfdc_fast.track import TrackConfig

        self.config, self.device = config, device
        self.detector = MTCNN(device, config.detector)
        # the Medics' second chance for a video without a face: detect again at twice the size
        long_side = self.detector.config.long_side
        self.retry_detector = MTCNN(device, config.detector, long_side=2 * long_side) if long_side else None
        self.ensemble = Ensemble(config.checkpoints, device, amp_dtype(config.amp, device))
        self.track_config = TrackConfig(min_frames=config.min_face_frames, max_frames=config.frames,
                                        min_clip_frames=1, order="score", max_faces=config.max_faces)

    def faces(self, videos: list, frames_used: int) -> list[list]:
        """Tracks (best first) per decoded video, detection on every n-th frame of all at once;
        videos left without a face are detected again at twice the size."""
        out = self._track(self.detector, videos, frames_used)
        retry = [i for i, ts in enumerate(out) if not ts]
        if retry and self.retry_detector is not None:
            for i, ts in zip(retry, self._track(self.retry_detector, [videos[i] for i in retry], frames_used)):
                out[i] = ts
        return out

    def _track(self, detector, videos: list, frames_used: int) -> list[list]:
        from dfdc_fast.track import track_faces

        step = self.config.detect_every
        found = detector.detect_many([v.frames[:frames_used:step] for v in videos],
                                     [v.indices[:frames_used:step] for v in videos])
        out = []
        for v, det in zip(videos, found):
            t, h, w = min(frames_used, len(v.frames)), v.frames.shape[1], v.frames.shape[2]
            cfg, samples = self.track_config, -(-t // step)
            if t < cfg.min_frames or samples < cfg.min_detections:  # few frames: ask for what there can be
                cfg = replace(cfg, min_frames=min(cfg.min_frames, max(1, t // 2)),
                              min_detections=min(cfg.min_detections, max(1, samples // 2)))
            out.append(track_faces(det, (t, h, w), cfg)[: self.config.max_faces])
        return out

    def score(self, videos: list, tracks: list[list], level: int) -> list[dict]:
        """Per video, member name -> per-face probabilities."""
        from dfdc_fast.crops import clip as cut_clip, faces as cut_faces

        _, _, tta, n_models = LEVELS[level]
        members = self.ensemble.members if n_models is None else self.ensemble.members[:n_models]
        clips, crops, owner = [], [], []
        for vi, (v, ts) in enumerate(zip(videos, tracks)):
            for tr in ts:
                window = v.frames[tr.start:tr.stop]
                if any(m.spec.kind == "3d" for m in members):
                    clips.append(cut_clip(window, tr.box, self.config.clip_size))
                if any(m.spec.kind == "2d" for m in members):
                    k = min(self.config.frames_2d, len(window))
                    crops.append(cut_faces(window[:k], tr.boxes[:k].to(window.device), self.config.margin_2d))
                owner.append(vi)
        per_video = [dict() for _ in videos]
        if not owner:
            return per_video
        owner_t = torch.tensor(owner)
        for m in members:
            p = (self.ensemble.score_clips(m, clips, tta=tta) if m.spec.kind == "3d"
                 else self.ensemble.score_crops(m, crops)).float().cpu()
            for vi in range(len(videos)):
                per_video[vi][m.name] = p[owner_t == vi].tolist()
        return per_video


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def run_inference(config: InferConfig) -> dict:
    """Score every video of ``config.inputs`` and write ``submission.csv``; returns the summary."""
    from dfdc_fast.infer.aggregate import AGGREGATORS, aggregate
    from dfdc_fast.infer.submission import write_submission
    from dfdc_fast.io import First, VideoDecodeError, read_videos
    from tqdm import tqdm

    if config.aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {sorted(AGGREGATORS)}, got {config.aggregator!r}")
    budget_start = time.perf_counter()
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results = list_videos(config.inputs)
    os.makedirs(config.out, exist_ok=True)
    submission = os.path.join(config.out, "submission.csv")
    names = [r.filename for r in results]

    def write_rows():
        write_submission(submission, {r.filename: r.label for r in results}, expected=names)

    write_rows()  # a complete file from the start: 0.5 everywhere
    t_load = time.perf_counter()
    scorer = FaceScorer(config, device)
    stage_s = {"load_models_s": time.perf_counter() - t_load, "decode_wait_s": 0.0, "detect_track_s": 0.0, "models_s": 0.0}
    budget = Budget(config.time_budget, n_models=len(scorer.ensemble), started=budget_start)
    todo = [r for r in results if r.status == "pending"]
    bar = tqdm(total=len(todo), desc="videos", unit="video", disable=not config.progress, dynamic_ncols=True)
    # one reader pipeline for the whole run: the next group decodes while this one is scored
    ahead = max(1, -(-(config.videos_per_batch + config.workers) // config.workers))
    stream = read_videos([r.path for r in todo], First(config.frames), device=device, decoder=config.decoder,
                         workers=config.workers, prefetch=ahead, catch_all=True)
    position = 0
    while position < len(todo):
        group = todo[position: position + config.videos_per_batch]
        level = budget.choose(len(todo) - position, len(group))
        if LEVELS[level][0] == "skip":
            for r in todo[position:]:
                r.status, r.level = "time_budget", "skip"
            log.warning("time budget: %d videos left unscored (0.5)", len(todo) - position)
            break
        frames_used = max(1, int(round(config.frames * LEVELS[level][1])))  # of the decoded frames
        t0 = time.perf_counter()
        decoded, videos = [], []
        for r in group:  # next() per video: zip() would pull one item too many from the stream
            path, video = next(stream)
            if os.path.abspath(path) != os.path.abspath(r.path):  # results must stay with their rows
                raise RuntimeError(f"decoder returned {path} for {r.path}")
            if isinstance(video, VideoDecodeError):
                r.status, r.error = "decode_error", str(video)
            elif isinstance(video, Exception):
                r.status, r.error = "error", f"{type(video).__name__}: {video}"
            else:
                decoded.append(r)
                videos.append(video)
        t1 = time.perf_counter()
        try:
            tracks = scorer.faces(videos, frames_used) if videos else []
            t2 = time.perf_counter()
            scores = scorer.score(videos, tracks, level) if videos else []
        except Exception as exc:  # a failing group is recorded, the run goes on
            log.exception("group failed")
            for r in decoded:
                r.status, r.error = "error", f"{type(exc).__name__}: {exc}"
            tracks, scores, t2 = [[] for _ in decoded], [{} for _ in decoded], time.perf_counter()
        t3 = time.perf_counter()
        for r, ts, sc in zip(decoded, tracks, scores):
            if r.status == "error":
                continue
            r.faces, r.scores, r.level = len(ts), sc, LEVELS[level][0]
            if not ts:
                r.status = "no_face"
                continue
            r.label, r.status = float(aggregate(config.aggregator, {k: torch.tensor(v) for k, v in sc.items()})), "ok"
        n = len(group)
        for key, dt in (("decode_wait_s", t1 - t0), ("detect_track_s", t2 - t1), ("models_s", t3 - t2)):
            stage_s[key] += dt
        for r in group:
            r.timings = {"decode_s": round((t1 - t0) / n, 4), "detect_track_s": round((t2 - t1) / n, 4),
                         "models_s": round((t3 - t2) / n, 4), "group_videos": n}
            _write_json(os.path.join(config.out, "videos", os.path.splitext(r.filename)[0] + ".json"), asdict(r))
        budget.record(level, time.perf_counter() - t0, n)
        write_rows()
        position += n
        bar.update(n)
    bar.close()
    stream.close()
    for r in results:
        if r.status in ("time_budget", "missing"):
            _write_json(os.path.join(config.out, "videos", os.path.splitext(r.filename)[0] + ".json"), asdict(r))
    write_rows()
    counts: dict = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    elapsed = time.perf_counter() - budget_start
    summary = {"videos": len(results), "statuses": counts, "fallback_0.5": sum(v for k, v in counts.items() if k != "ok"),
               "seconds": round(elapsed, 2), "videos_per_s": round(len(results) / elapsed, 3) if elapsed else None,
               "levels": {LEVELS[k][0]: v[1] for k, v in budget.cost.items()}, "device": str(device),
               "stage_seconds": {k: round(v, 3) for k, v in stage_s.items()},
               "members": [m.name for m in scorer.ensemble.members], "aggregator": config.aggregator,
               "submission": submission, "config": asdict(config)}
    _write_json(os.path.join(config.out, "summary.json"), summary)
    return summary
