"""``infer --executor ray``: the engine and the ensemble in one Ray actor per GPU.

Each actor loads the models and builds the engine once, then scores chunks of videos
(``videos_per_batch`` of them, largest first) and returns one small record per video; the
driver writes the records and assembles the one ``submission.csv``. With a time budget,
every actor stops starting videos when the cluster-wide deadline (wall clock) is near,
and the driver gives every video without a record 0.5 with status ``time_budget``: the
file is complete and on time whatever the cluster did. The budget's degradation levels
(fewer frames, fewer models) are those of one process only: on a cluster each video runs
at the full level or not at all.
"""
from __future__ import annotations

import collections
import logging
import os
import shutil
import time
from dataclasses import asdict
from typing import Optional

import torch
from tqdm import tqdm

from dfdc_fast.cluster.connect import connect
from dfdc_fast.cluster.queue import ActorQueue, Task
from dfdc_fast.engine import Engine, VideoTask
from dfdc_fast.errors import ConfigError
from dfdc_fast.files import FolderLock, write_json
from dfdc_fast.infer.aggregate import AGGREGATORS, aggregate
from dfdc_fast.infer.pipeline import FALLBACK, InferConfig, VideoResult, build_scorer, default_workers, list_videos
from dfdc_fast.infer.submission import write_submission

log = logging.getLogger("dfdc_fast.cluster")
RESERVE_S = 3.0  # writing the files at the end


class InferActor:
    """One GPU's engine and ensemble, built once."""

    def __init__(self, config: dict, threads: int):
        torch.set_num_threads(max(1, threads))
        self.config = InferConfig(**{**config, "progress": False})
        self.device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.scorer, self.request = build_scorer(self.config, self.device)
        c = self.config
        self.count_faces = self.scorer.faces
        workers = default_workers(self.device) if c.workers is None else c.workers
        self.engine = Engine(self.request, self.device, workers=workers, decoder=c.decoder).__enter__()
        import ray

        ctx = ray.get_runtime_context()
        self.node = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"
        self.per_video: Optional[float] = None  # measured seconds per video here

    def ready(self) -> str:
        return self.node

    def score(self, videos: list, deadline: Optional[float]) -> list[dict]:
        """``videos`` as (index, path); their records (``index`` and VideoResult fields).
        Videos that would start after ``deadline`` (epoch seconds) are left out."""
        t0 = time.perf_counter()

        def tasks():
            for i, path in videos:
                if deadline is not None and time.time() + (self.per_video or 0.0) + RESERVE_S > deadline:
                    return
                yield VideoTask(key=i, path=path)

        results = list(self.engine.run(tasks()))
        scoreable = [g for g in results if g.status == "ok"]
        t1 = time.perf_counter()
        try:
            scores = self.scorer.score(scoreable, 0) if scoreable else []
        except Exception as exc:  # noqa: BLE001 - a failing group is recorded, the run goes on
            log.exception("group failed")
            for g in scoreable:
                g.status, g.error = "error", f"{type(exc).__name__}: {exc}"
            scores = [{} for _ in scoreable]
        t2 = time.perf_counter()
        by_key = {g.key: s for g, s in zip(scoreable, scores)}
        n_faces = sum(self.count_faces(g) for g in scoreable) or 1
        out = []
        for g in results:
            r = {"index": g.key, "level": "full", "faces": self.count_faces(g), "label": FALLBACK, "scores": {},
                 "timings": {k: round(v, 4) for k, v in g.timings.items()}, "error": None}
            r["timings"]["models_s"] = round((t2 - t1) * r["faces"] / n_faces, 4)
            if g.status in ("decode_error", "error"):
                r.update(status=g.status, error=g.error)
            elif g.status != "ok" or not by_key.get(g.key):
                r.update(status="no_face", error=g.error)
            else:
                r["scores"] = by_key[g.key]
                r["label"] = float(aggregate(self.config.aggregator, {k: torch.tensor(v) for k, v in r["scores"].items()}))
                r["status"] = "ok"
            r["node"] = self.node
            out.append(r)
        if results:
            self.per_video = (time.perf_counter() - t0) / len(results)
        return out


def run_inference_on_ray(config: InferConfig, address: Optional[str] = None, actors: Optional[int] = None) -> dict:
    """Score ``config.inputs`` on a Ray cluster into one ``submission.csv``; returns the summary."""
    budget_start = time.perf_counter()
    deadline = None if config.time_budget is None else time.time() + config.time_budget
    if config.aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {sorted(AGGREGATORS)}, got {config.aggregator!r}")
    results, refused = list_videos(config.inputs)
    if config.limit is not None:
        results = results[:config.limit]
    build_scorer(config, torch.device("cpu"))  # a bad checkpoint fails here, before any output or actor
    ray, started = connect(address)
    try:
        os.makedirs(config.out, exist_ok=True)
        with FolderLock(config.out, "infer"):
            return _run(ray, config, results, refused, deadline, budget_start, actors)
    finally:
        if started:
            ray.shutdown()


def _run(ray, config: InferConfig, results: list, refused: list, deadline, budget_start: float,
         n_actors: Optional[int]) -> dict:
    submission = os.path.join(config.out, "submission.csv")
    videos_dir = os.path.join(config.out, "videos.partial")
    shutil.rmtree(videos_dir, ignore_errors=True)
    names = [r.filename for r in results]
    todo = [i for i, r in enumerate(results) if r.status == "pending"]
    device = config.device or "cpu"
    res = ray.cluster_resources()
    if device.startswith("cuda"):
        if res.get("GPU", 0) < 1:
            raise ConfigError(f"--device {device} but the Ray cluster has no GPU (use --device cpu)")
        n, resources, threads = n_actors or int(res["GPU"]), {"num_gpus": 1, "num_cpus": 1}, 2
    else:
        nodes = [x for x in ray.nodes() if x.get("Alive")]
        n = n_actors or max(1, len(nodes))
        cpus = max(1, max(int(x["Resources"].get("CPU", 1)) for x in nodes) // max(1, -(-n // max(1, len(nodes)))))
        resources, threads = {"num_cpus": cpus, "scheduling_strategy": "SPREAD"}, cpus
    sizes = {i: _size(results[i].path) for i in todo}
    order = sorted(todo, key=lambda i: -sizes[i])
    step = max(1, config.videos_per_batch)
    tasks = [Task(order[k:k + step], order[k:k + step], size=sum(sizes[i] for i in order[k:k + step]))
             for k in range(0, len(order), step)]
    remote = ray.remote(InferActor).options(max_restarts=-1, max_task_retries=0, **resources)
    t_actors = time.perf_counter()
    actors = [remote.remote(asdict(config), threads) for _ in range(min(n, len(tasks)))]
    bar = tqdm(total=len(todo), desc="videos (ray)", unit="video", disable=not config.progress, dynamic_ncols=True)
    per_node: dict = collections.Counter()
    got: dict = {}

    def on_result(task: Task, value, node) -> None:
        for rec in value or []:
            r = results[rec["index"]]
            for k in ("label", "status", "error", "faces", "level", "scores", "timings"):
                setattr(r, k, rec[k])
            got[rec["index"]] = rec
            per_node[rec["node"]] += 1
            write_json(os.path.join(videos_dir, r.output_id + ".json"), asdict(r))
        bar.update(len(value or []))

    def give_up(task: Task, keys: list, reason: str) -> None:
        for i in keys:
            r = results[i]
            r.status, r.error = "error", f"its task ended its Ray actor {task.deaths} times; last: {reason}"
            got[i] = None
            write_json(os.path.join(videos_dir, r.output_id + ".json"), asdict(r))
        bar.update(len(keys))

    def past_deadline() -> bool:
        return deadline is not None and time.time() + RESERVE_S > deadline

    queue = ActorQueue(ray, actors, lambda a, t: a.score.remote([(i, results[i].path) for i in t.todo], deadline),
                       remaining=lambda t: [i for i in t.todo if i not in got],
                       split=lambda t, keys: [Task(t.keys, [i]) for i in keys], on_result=on_result,
                       on_give_up=give_up, stop=past_deadline, deadline=deadline)
    try:
        queue.run(tasks)
    finally:
        bar.close()
        for a in actors:
            ray.kill(a)
    for r in results:
        if r.status == "pending":  # not reached (the budget), or sent but not answered in time
            r.status, r.level, r.error = "time_budget", "skip", "the time budget ran out before this video"
        if r.status in ("time_budget", "missing"):
            write_json(os.path.join(videos_dir, r.output_id + ".json"), asdict(r))
    write_submission(submission, {r.filename: r.label for r in results}, expected=names)
    final_videos = os.path.join(config.out, "videos")
    shutil.rmtree(final_videos, ignore_errors=True)
    if os.path.isdir(videos_dir):
        os.replace(videos_dir, final_videos)
    counts: dict = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    elapsed = time.perf_counter() - budget_start
    steady = time.perf_counter() - t_actors - (queue.startup_s or 0.0)
    done = sum(1 for v in got.values() if v)
    summary = {"videos": len(results), "statuses": counts, "fallback_0.5": sum(v for k, v in counts.items() if k != "ok"),
               "refused": [{"name": n, "reason": why} for n, why in refused],
               "seconds": round(elapsed, 2), "videos_per_s": round(len(results) / elapsed, 3) if elapsed else None,
               "fixed_s": round(t_actors - budget_start + (queue.startup_s or 0.0), 3),
               "steady_videos_per_s": round(done / steady, 3) if done and steady > 0 else None,
               "time_budget_s": config.time_budget, "device": device, "executor": "ray", "actors": len(actors),
               "actor_deaths": queue.deaths, "videos_per_node": dict(sorted(per_node.items())),
               "submission": submission, "config": asdict(config)}
    write_json(os.path.join(config.out, "summary.json"), summary)
    try:
        from dfdc_fast.infer.report import write_report

        write_report(os.path.join(config.out, "report.png"), summary, [asdict(r) for r in results])
    except Exception as exc:  # noqa: BLE001 - the submission is what matters
        log.warning("report.png not drawn: %s: %s", type(exc).__name__, exc)
    return summary


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


__all__ = ["InferActor", "run_inference_on_ray", "VideoResult"]
