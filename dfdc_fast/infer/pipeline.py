"""``run_inference``: videos -> faces -> ensemble -> one probability per video -> submission.csv.

The engine's worker processes (one per NVDEC engine on a GPU) decode, detect, track and
cut each video's faces while this process scores the faces of the videos already done:
results are gathered into groups, the faces of a whole group go through each model
together, and the scores reach the host once per group. Every video ends with a status:

* ``ok``: at least one face was scored.
* ``no_face``, ``decode_error``, ``missing`` or ``error``: scored 0.5, counted and reported.
* ``time_budget``: scored 0.5, because the budget ran out before the video's turn.

``submission.partial.csv`` is rewritten after every group, with 0.5 for the videos not yet
done; ``submission.csv`` is written only when every video has its row, so a file of that name
is always a finished run's. A run that was stopped (Ctrl-C, a kill) keeps its per-video
records in ``videos.partial/``: rerun with the same settings and they are reused.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch

from dfdc_fast.infer.budget import LEVELS, Budget
from dfdc_fast.infer.ensemble import Ensemble, pad_cat
from dfdc_fast.runtime import fetch

log = logging.getLogger("dfdc_fast.infer")
FALLBACK = 0.5
#: Options that do not change a video's score: a record made with other values of these is reused.
NOT_SCORE_SETTINGS = ("inputs", "checkpoints", "out", "decoder", "workers", "videos_per_batch", "compile",
                      "time_budget", "limit", "progress", "device", "follow_links")
#: Statuses of a record an interrupted run finished (an ``error`` is tried again, as in extract).
FINAL_STATUSES = ("ok", "no_face", "decode_error")
RESUME_FILE = ".resume-settings"  # in videos.partial/; no .json suffix, so no video's record is named so


@dataclass
class InferConfig:
    """Options of the inference job (the CLI maps its flags onto these)."""

    inputs: list = field(default_factory=list)        # folders (DFDC test layout or any) or video files
    checkpoints: list = field(default_factory=list)   # dfdc_fast checkpoints (train's epoch_*.pth)
    out: str = "infer_out"
    frames: int = 100             # the first N frames of each video (the Medics: 100)
    detect_every: int = 10        # detect on every n-th of them
    detector: str = "medics_inference"   # MTCNN preset: long side 480, 0.8/0.8/0.9, 0.5 fallback, 5 faces
    retry_scale: Optional[float] = 2.0   # a video without a face is detected again at 2x (the Medics: 960 px)
    max_faces: int = 5
    min_face_frames: int = 30
    clip_size: int = 256          # square face clip side before each model's test transform
    frames_2d: int = 32           # per face, crops of its first N frames for 2D models
    margin_2d: float = 0.1        # 2D crop = box grown by this on each side (the Medics: 1.2x box)
    tta: bool = True              # 3D: average the clip and its horizontal flip
    aggregator: str = "medics"    # medics | selim | ntech
    #: medics (default) | selim (32 frames evenly, every face, confident strategy) | ntech (15 fps,
    #: IoU tracks, 7-frame windows, sharpening); it sets the fields left at their defaults
    #: (dfdc_fast.recipes.<name>.RECIPE.infer_defaults)
    recipe: str = "medics"
    device: Optional[str] = None
    decoder: str = "auto"
    workers: Optional[int] = None  # engine worker processes; None: one per NVDEC engine on a GPU, 0 (in-process) on a CPU
    videos_per_batch: int = 16    # videos whose faces are scored together
    amp: str = "auto"             # auto (bf16 on GPUs with it) | bf16 | fp16 | none
    compile: bool = False         # torch.compile the members (fixed batch shapes)
    time_budget: Optional[float] = None   # seconds for the whole run, writing included
    limit: Optional[int] = None   # only the first N videos (a quick try); the submission lists only those
    follow_links: bool = False    # accept symbolic links out of a folder: resolved once, the target recorded
    progress: bool = True

    def __post_init__(self):
        """Every option checked here, before any output is touched: a refused run writes nothing."""
        from dfdc_fast import checks
        from dfdc_fast.detect import PRESETS
        from dfdc_fast.infer.aggregate import AGGREGATORS
        from dfdc_fast.recipes import RECIPES, get_recipe
        from dfdc_fast.io import DECODERS, check_decoder
        from dfdc_fast.runtime import AMP_MODES, check_device

        if isinstance(self.recipe, str):
            checks.choice("recipe", self.recipe, sorted(RECIPES))
        recipe = get_recipe(self.recipe)
        self.recipe = recipe.name  # a name or a Recipe; the config is written as JSON
        checks.choice("aggregator", self.aggregator, sorted(AGGREGATORS))
        checks.choice("detector", self.detector, sorted(PRESETS))
        checks.choice("decoder", self.decoder, DECODERS)
        checks.choice("amp", self.amp, AMP_MODES)
        # a recipe whose default is 0 frames (NTechLab's: the whole video) takes 0; others need one
        checks.integer("frames", self.frames, 0 if recipe.infer_defaults.get("frames", 1) == 0 else 1)
        for name in ("detect_every", "max_faces", "min_face_frames", "frames_2d", "videos_per_batch"):
            checks.integer(name, getattr(self, name), 1)
        checks.integer("clip_size", self.clip_size, 2)
        checks.integer("workers", self.workers, 0, none_ok=True)
        checks.integer("limit", self.limit, 0, none_ok=True)
        checks.number("time_budget", self.time_budget, 0, none_ok=True)
        checks.number("retry_scale", self.retry_scale, 0, none_ok=True)
        checks.number("margin_2d", self.margin_2d, 0, strict=False)
        check_decoder(self.decoder, check_device(self.device) or ("cuda" if torch.cuda.is_available() else "cpu"))

    @classmethod
    def from_dict(cls, values: dict) -> "InferConfig":
        """Options from a mapping (a YAML file, flags): unknown keys refused with a suggestion,
        values converted to the fields' types (a YAML ``1e-4`` read as a string becomes a float)."""
        from dfdc_fast.recipes import get_recipe
        from dfdc_fast.runtime import typed_dataclass

        recipe = get_recipe(values.get("recipe", "medics"))
        return typed_dataclass(cls, {**recipe.infer_defaults, **values, "recipe": recipe.name})


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
    output_id: str = ""                            # file name of its JSON in videos/ (unique in the run)


def list_videos(inputs: list[str], follow_links: bool = False,
                exclude: tuple = ()) -> tuple[list[VideoResult], list[tuple[str, str]]]:
    """(every video of the inputs, plus those a metadata.json lists but that are missing
    (scored 0.5 with their status); the names refused as unsafe, with why). Refused names
    get no row: they are not videos of the test set."""
    from dfdc_fast.data import from_paths
    from dfdc_fast.data.identity import assign_ids

    datasets = from_paths(inputs, follow_links=follow_links, exclude=exclude)  # never an output folder
    ids = assign_ids(datasets)
    results, refused, seen = [], [], {}
    for ds in datasets:
        refused += [(name, reason) for name, reason in ds.rejected]
        for entry, status in [(e, "pending") for e in ds.videos] + [(e, "missing") for e in ds.missing]:
            name = os.path.basename(entry.name)
            if name in seen:
                raise ValueError(f"two inputs hold a video named {name!r} ({seen[name]} and {entry.path}): "
                                 "submission rows are keyed by file name, so they would clash")
            seen[name] = entry.path
            r = VideoResult(name, entry.path, status=status, error="listed but not found" if status == "missing" else None)
            r.output_id = ids[(ds.root, entry.key)].flat
            results.append(r)
    if not results:
        raise ValueError(f"no videos found in {inputs}")
    return results, refused


class FaceScorer:
    """The ensemble over the tracked faces of a group of engine results (3D clips, 2D crops
    of each face's first frames: the Medics')."""

    def __init__(self, config: InferConfig, ensemble, device: torch.device):
        self.config, self.ensemble, self.device = config, ensemble, device

    @staticmethod
    def faces(res) -> int:
        return len(res.tracks)

    def score(self, faces: list, level: int) -> list[dict]:
        """Per engine result, member name -> per-face probabilities (host floats), for all
        the group's faces at once; one transfer to the host for the whole group."""
        _, _, tta, n_models = LEVELS[level]
        members = self.ensemble.members if n_models is None else self.ensemble.members[:n_models]
        owner, clips = [], []  # per face: which result; 3D clips
        crop_parts, sizes, face_of, rank_of = [], [], [], []
        for vi, res in enumerate(faces):
            n_tracks = len(res.tracks)
            if res.clip_frames is not None:
                clips += [res.clip(c).to(self.device, non_blocking=True) for c in res.clips]
            if res.crop_data is not None:
                base = len(owner)
                crop_parts.append(res.crop_data.to(self.device, non_blocking=True))
                sizes += [c.size for c in res.crops]
                ranks: dict = {}
                for c in res.crops:
                    face_of.append(base + c.track)
                    rank_of.append(ranks.setdefault(c.track, 0))
                    ranks[c.track] += 1
            owner += [vi] * n_tracks
        per_video = [dict() for _ in faces]
        if not owner:
            return per_video
        canvas = pad_cat(crop_parts) if crop_parts else None
        outputs = []
        for m in members:
            if m.spec.kind == "3d":
                outputs.append(self.ensemble.score_clips(m, clips, tta=tta))
            else:
                outputs.append(self.ensemble.score_crops(m, canvas, np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
                                                         np.asarray(face_of), np.asarray(rank_of), len(owner)))
        (table,) = fetch(torch.stack(outputs).float())  # the group's one transfer
        owner = np.asarray(owner)
        for mi, m in enumerate(members):
            for vi in range(len(faces)):
                per_video[vi][m.name] = table[mi, owner == vi].tolist()
        return per_video


def scorer_for(request, config: InferConfig, ensemble, device: torch.device):
    """The scorer of what ``request`` cuts: track windows (NTechLab's), a crop per detected
    face without tracks (Selim's), or tracked faces' clips and crops (the Medics')."""
    from dfdc_fast.infer.scorers import CropScorer, WindowScorer

    if request.windows:
        return WindowScorer(config, ensemble, device, request.windows)
    if request.track is None:
        return CropScorer(config, ensemble, device)
    return FaceScorer(config, ensemble, device)


def build_scorer(config: InferConfig, device: torch.device):
    """``(scorer, engine request)`` of ``config``'s recipe over its loaded ensemble; a bad
    checkpoint, or members the recipe cannot score, raise here (before any output)."""
    from dfdc_fast.recipes import get_recipe
    from dfdc_fast.runtime import amp_dtype

    ensemble = Ensemble(config.checkpoints, device, amp_dtype(config.amp, device), compile=config.compile)
    request = get_recipe(config.recipe).infer_request(config, ensemble.kinds)
    return scorer_for(request, config, ensemble, device), request


def default_workers(device: torch.device) -> int:
    """Engine workers for inference: one per NVDEC engine on a GPU; none on a CPU, where the
    faces are made in this process between model calls. There the models cost about five
    times what decoding and detection do, and a worker process beside them only takes
    cores from them: measured on two cores (benchmarks/infer.py), a worker with its own
    threads made the run 0.80x the sequential stock recipe, a worker with one thread and
    the models the other 0.54x."""
    from dfdc_fast.engine import default_workers as engine_workers

    if device.type == "cuda":
        return engine_workers(device)
    return 0


def run_inference(config: InferConfig) -> dict:
    """Score every video of ``config.inputs`` and write ``submission.csv``; returns the summary.

    Never makes things worse: models and inputs are checked before any output is touched;
    ``submission.csv`` is written only complete, replacing an earlier one (progress goes to
    ``submission.partial.csv`` meanwhile, in a new folder too); per-video records are written
    to ``videos.partial/`` and replace ``videos/`` at the end, so an earlier run's are never
    mixed in, while a rerun after an interruption reuses them when its settings are the same.
    With ``time_budget`` the run ends within it, every row present.
    """
    from dfdc_fast.files import FolderLock
    from dfdc_fast.infer.aggregate import AGGREGATORS

    if config.aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {sorted(AGGREGATORS)}, got {config.aggregator!r}")
    budget_start = time.perf_counter()
    deadline = None if config.time_budget is None else budget_start + config.time_budget
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results, refused = list_videos(config.inputs, config.follow_links, exclude=[config.out])
    if config.limit is not None:
        results = results[:config.limit]
    for name, reason in refused:
        log.warning("refused %s: %s (no row)", name, reason)
    # models first: a bad checkpoint, or members the recipe cannot score, fail before any output is touched
    scorer, request = build_scorer(config, device)
    with FolderLock(config.out, "infer"):  # refuses a folder another job made or holds
        return _score_all(config, device, results, refused, scorer, request, budget_start, deadline)


def resume_settings(config: InferConfig, device: torch.device) -> dict:
    """What a per-video record depends on: the scoring options, the device kind, and each
    checkpoint's path, size and modification time (a retrained file is another model)."""
    values = {k: v for k, v in asdict(config).items() if k not in NOT_SCORE_SETTINGS}
    values["device"] = device.type
    values["checkpoints"] = []
    for p in config.checkpoints:
        st = os.stat(p)
        values["checkpoints"].append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return json.loads(json.dumps(values))


def resume_records(videos_dir: str, settings: dict, results: list) -> int:
    """Reuse the records an interrupted run with the same settings left in ``videos_dir``:
    those videos keep their score and are not scored again. Anything else there is removed.
    Returns how many were reused."""
    import shutil

    try:
        with open(os.path.join(videos_dir, RESUME_FILE)) as f:
            same = json.load(f) == settings
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(videos_dir, ignore_errors=True)
        return 0
    reused = 0
    for r in results:
        path = os.path.join(videos_dir, r.output_id + ".json")
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        full = rec.get("level") in (None, LEVELS[0][0])  # a video degraded by a budget is scored again
        if (rec.get("status") in FINAL_STATUSES and full and rec.get("path") == r.path
                and rec.get("filename") == r.filename and r.status == "pending"):
            for k in ("label", "status", "error", "faces", "level", "scores", "timings"):
                setattr(r, k, rec.get(k, getattr(r, k)))
            reused += 1
        else:
            os.remove(path)
    return reused


def _score_all(config: InferConfig, device: torch.device, results: list, refused: list, scorer: FaceScorer,
               request, budget_start: float, deadline: Optional[float]) -> dict:
    import shutil

    from tqdm import tqdm

    from dfdc_fast.engine import Engine, VideoTask
    from dfdc_fast.files import write_json
    from dfdc_fast.infer.aggregate import aggregate
    from dfdc_fast.infer.submission import write_submission

    submission = os.path.join(config.out, "submission.csv")
    progress_file = os.path.join(config.out, "submission.partial.csv")  # submission.csv only when complete
    videos_dir = os.path.join(config.out, "videos.partial")
    settings = resume_settings(config, device)
    resumed = resume_records(videos_dir, settings, results)  # what an interrupted run of these settings did
    if resumed:
        log.info("resuming: %d videos scored by an interrupted run with these settings are reused", resumed)
    write_json(os.path.join(videos_dir, RESUME_FILE), settings)
    names = [r.filename for r in results]

    def write_rows(path):
        write_submission(path, {r.filename: r.label for r in results}, expected=names)

    def write_video(r):
        write_json(os.path.join(videos_dir, r.output_id + ".json"), asdict(r))

    write_rows(progress_file)  # a complete file from the start: 0.5 everywhere
    stage_s = {"load_models_s": scorer.ensemble.load_s, "compile_s": scorer.ensemble.compile_s,
               "engine_start_s": 0.0, "wait_for_faces_s": 0.0, "models_s": 0.0}
    budget = Budget(config.time_budget, n_models=len(scorer.ensemble), started=budget_start)
    todo = [r for r in results if r.status == "pending"]
    # two bars: faces made (decode, detect, track, cut) and videos scored (the models), which lags
    # by up to a group: one bar of both sat at 100 % while the last group's models ran
    faces_bar = tqdm(total=len(todo), desc="faces ", unit="video", disable=not config.progress, dynamic_ncols=True,
                     position=0)
    bar = tqdm(total=len(todo), desc="scored", unit="video", disable=not config.progress, dynamic_ncols=True,
               position=1)
    workers = default_workers(device) if config.workers is None else config.workers
    count_faces = scorer.faces
    level_of: dict = {}
    state = {"stopped": False}
    reserve_s = 3.0  # writing the last files and stopping the workers

    def tasks() -> Iterator[VideoTask]:
        for i, r in enumerate(todo):
            level = budget.choose(len(todo) - i, config.videos_per_batch)
            if LEVELS[level][0] == "skip":
                state["stopped"] = True
                return
            level_of[i] = level
            frames = max(1, int(round(config.frames * LEVELS[level][1])))
            yield VideoTask(key=i, path=r.path, max_frames=frames if frames < config.frames else None)

    def group_size() -> int:
        """Videos per group: all of ``videos_per_batch`` without a budget; with one, small
        first (to measure), then what fits a quarter of the time left."""
        if deadline is None:
            return config.videos_per_batch
        per = budget.per_video(len(LEVELS) - 2)
        if per is None:
            return min(config.videos_per_batch, 2)
        left = deadline - time.perf_counter() - reserve_s
        return max(1, min(config.videos_per_batch, int(left * 0.25 / max(per, 1e-3))))

    def out_of_time(videos: int) -> bool:
        """Would scoring ``videos`` more overrun the budget?"""
        if deadline is None:
            return False
        per = budget.per_video(len(LEVELS) - 2) or 0.0
        return time.perf_counter() + per * videos + reserve_s > deadline

    peaks: list = []
    done = 0
    if out_of_time(1):  # not even the workers' start fits: nothing to score
        state["stopped"] = True
    t_engine = time.perf_counter()
    engine = Engine(request, device, workers=0 if state["stopped"] else workers, decoder=config.decoder).__enter__()
    try:
        stage_s["engine_start_s"] = time.perf_counter() - t_engine
        engine.on_stage = lambda key, stage: faces_bar.set_postfix_str(f"{todo[key].filename}: {stage}")
        stream = engine.run(tasks(), heartbeat=deadline is not None)
        while not state["stopped"]:
            t0 = time.perf_counter()
            group, size = [], group_size()
            for res in stream:
                if res is not None:
                    group.append(res)
                    faces_bar.update(1)  # faces of one more video are ready; the group's scores follow
                if len(group) >= size or out_of_time(len(group) or 1):
                    break
            if out_of_time(len(group)):
                state["stopped"] = True
                break
            if not group:
                break
            t1 = time.perf_counter()
            scoreable = [g for g in group if g.status == "ok"]
            level = max(level_of[g.key] for g in group)  # the cheapest the budget asked for
            try:
                scores = scorer.score(scoreable, level) if scoreable else []
            except Exception as exc:  # noqa: BLE001 - a failing group is recorded, the run goes on
                log.exception("group failed")
                for g in scoreable:
                    g.status, g.error = "error", f"{type(exc).__name__}: {exc}"
                scores = [{} for _ in scoreable]
            t2 = time.perf_counter()
            by_key = {g.key: s for g, s in zip(scoreable, scores)}
            n_faces = sum(count_faces(g) for g in scoreable) or 1
            peaks += [g.peak_memory_mb for g in group if g.peak_memory_mb is not None]
            for g in group:
                r = todo[g.key]
                r.level = LEVELS[level_of[g.key]][0]
                r.faces = count_faces(g)
                r.timings = {k: round(v, 4) for k, v in g.timings.items()}
                r.timings["models_s"] = round((t2 - t1) * r.faces / n_faces, 4)  # the group's, by faces
                if g.status in ("decode_error", "error"):
                    r.status, r.error = g.status, g.error
                elif g.status != "ok" or not by_key.get(g.key):
                    r.status, r.error = "no_face", g.error
                else:
                    r.scores = by_key[g.key]
                    try:  # one video's bad score (NaN) is that video's error, never the run's
                        label = float(aggregate(config.aggregator, {k: torch.tensor(v) for k, v in r.scores.items()}))
                        why = None if math.isfinite(label) else f"the models scored it {label}"
                    except ValueError as exc:
                        why = str(exc)
                    if why is None:
                        r.label, r.status = label, "ok"
                    else:
                        r.status, r.error = "error", f"{why}; scored 0.5"
                write_video(r)
            stage_s["wait_for_faces_s"] += t1 - t0
            stage_s["models_s"] += t2 - t1
            budget.record(level, time.perf_counter() - t0, len(group))
            write_rows(progress_file)
            done += len(group)
            bar.update(len(group))
    finally:
        engine.close(kill=state["stopped"])
        faces_bar.close()
        bar.close()
    if state["stopped"]:
        left = [r for r in todo if r.status == "pending"]
        for r in left:
            r.status, r.level, r.error = "time_budget", "skip", "the time budget ran out before this video"
        log.warning("time budget: %d videos left unscored (0.5)", len(left))
    for r in results:
        if r.status in ("time_budget", "missing"):
            write_video(r)
    read = sum(r.status in ("ok", "no_face") for r in results)
    kept = not read and os.path.exists(submission)  # scored nothing: an earlier submission is worth more
    if kept:
        log.error("no video could be read: the earlier %s and videos/ are kept (this run's records are in %s)",
                  submission, videos_dir)
    else:
        write_rows(submission)  # complete: now it may replace an earlier one
        final_videos = os.path.join(config.out, "videos")
        shutil.rmtree(final_videos, ignore_errors=True)
        if os.path.isdir(videos_dir):
            resume_file = os.path.join(videos_dir, RESUME_FILE)
            if os.path.exists(resume_file):
                os.remove(resume_file)
            os.replace(videos_dir, final_videos)
    if os.path.exists(progress_file):
        os.remove(progress_file)
    counts: dict = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    elapsed = time.perf_counter() - budget_start
    fixed = stage_s["load_models_s"] + stage_s["compile_s"] + stage_s["engine_start_s"]
    steady = elapsed - fixed
    summary = {"videos": len(results), "statuses": counts, "resumed": resumed, "fallback_0.5": sum(v for k, v in counts.items() if k != "ok"),
               "refused": [{"name": n, "reason": why} for n, why in refused],
               "seconds": round(elapsed, 2), "videos_per_s": round(len(results) / elapsed, 3) if elapsed else None,
               "fixed_s": round(fixed, 3),
               "steady_videos_per_s": round(done / steady, 3) if done and steady > 0 else None,
               "time_budget_s": config.time_budget,
               "levels": {LEVELS[k][0]: v[1] for k, v in budget.cost.items()}, "device": str(device),
               "workers": workers, "stage_seconds": {k: round(v, 3) for k, v in stage_s.items()},
               "worker_peak_gpu_mb": max(peaks) if peaks else None,
               "members": [m.name for m in scorer.ensemble.members], "aggregator": config.aggregator,
               "submission": submission, "submission_kept": kept, "config": asdict(config)}
    write_json(os.path.join(config.out, "summary.json"), summary)
    _draw_report(os.path.join(config.out, "report.png"), summary, [asdict(r) for r in results])
    return summary


def _draw_report(path: str, summary: dict, videos: list) -> None:
    """report.png next to submission.csv; a picture that cannot be drawn is logged, never fatal."""
    try:
        from dfdc_fast.infer.report import write_report

        write_report(path, summary, videos)
    except Exception as exc:  # noqa: BLE001 - the submission is what matters
        log.warning("report.png not drawn: %s: %s", type(exc).__name__, exc)
