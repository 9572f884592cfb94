"""``extract --executor ray``: the extraction job's per-video path in Ray actors.

Each actor is today's job on one GPU (or a CPU node's share of cores): it builds the
``Engine`` (with its NVDEC worker processes) and the encoder pool once, then runs groups
of videos through :meth:`Extractor.process`, writing clips, crops and the per-video JSON
straight to the output folder. That folder must be one filesystem seen by every node:
each actor checks, at start, that it sees a file the driver wrote there, and the run is
refused otherwise. The driver only schedules, counts and rebuilds the index.
"""
from __future__ import annotations

import collections
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict
from typing import Optional

import torch

from dfdc_fast.cluster.connect import connect
from dfdc_fast.cluster.queue import ActorQueue, Task
from dfdc_fast.data import from_paths
from dfdc_fast.data.identity import assign_ids
from dfdc_fast.engine import Engine
from dfdc_fast.errors import ConfigError
from dfdc_fast.extract.config import ExtractConfig, check_settings, finish_overwrite
from dfdc_fast.extract.groups import video_groups
from dfdc_fast.extract.index import rebuild_index
from dfdc_fast.extract.job import Extractor, base_record
from dfdc_fast.extract.report import record_files
from dfdc_fast.extract.resume import Resume, read_record
from dfdc_fast.extract.writers import Writers, default_encoders, started_path
from dfdc_fast.files import TAG_ENV, FolderLock, remove_temporaries, temporary_path, write_json

log = logging.getLogger("dfdc_fast.cluster")
#: Owner tag of the actors' temporaries (removed by the driver before and after a run).
RAY_TAG = "ray"
#: Test hook: ``exit:NAME:N`` makes an actor die while writing video NAME's JSON, N times
#: (``always``: every time); counted in ``OUT/.ray-faults/``.
FAULT_ENV = "DFDC_FAST_RAY_FAULT"
IN_FLIGHT = 2  # tasks per actor: one running, one waiting, so an actor never idles on the driver


class ExtractActor:
    """One GPU's (or CPU share's) extraction engine, built once, run on groups of videos."""

    def __init__(self, cfg: dict, resume: tuple, threads: int, probe: str, fault: str = ""):
        os.environ[TAG_ENV] = RAY_TAG  # this actor's temporaries, in every process it starts
        if not os.path.exists(probe):
            raise ConfigError(f"{socket.gethostname()} does not see {os.path.dirname(probe)}: --executor ray writes "
                              "every output from the node that made it, so the output folder must be on a filesystem "
                              "shared by all nodes")
        torch.set_num_threads(max(1, threads))
        self.cfg = ExtractConfig(**{**cfg, "progress": False})
        self.extractor = Extractor(self.cfg)
        datasets = from_paths(self.cfg.inputs, follow_links=self.cfg.follow_links, exclude=[self.cfg.out])
        self.extractor.ids = assign_ids(datasets)
        self.extractor.resume = Resume(*resume)
        self.entries = {(ds.root, e.key): (ds, e) for ds in datasets for e in ds.videos}
        self.threads = threads
        self._open()
        self.fault = fault.split(":") if fault else None
        import ray

        ctx = ray.get_runtime_context()
        self.node = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"
        if self.fault:
            self._arm_fault()

    def _open(self) -> None:
        device, cfg = self.extractor.device, self.cfg
        workers = cfg.workers if cfg.workers is not None else (0 if device.type == "cpu" else None)
        encoders = cfg.encoders if cfg.encoders is not None else (
            self.threads if device.type == "cpu" else default_encoders(cfg.device, workers))
        self.engine = Engine(self.extractor.request, device, workers=workers, decoder=self.extractor.decoder,
                             threads=self.threads, video_timeout=cfg.video_timeout).__enter__()
        self.writers = Writers(encoders, cfg.clip_crf, cfg.clip_keyint, cfg.max_pending).__enter__()

    def _reopen(self) -> None:
        """After a task failed midway: drop what it left in flight (its videos get no JSON)."""
        self.writers.pending.clear()
        self.engine.close(kill=True)
        self.writers.__exit__(RuntimeError, None, None)
        self._open()
        if self.fault:
            self._arm_fault()

    def ready(self) -> str:
        """The node this actor runs on (answered once its engine is built)."""
        return self.node

    def run(self, keys: list, todo: list) -> dict:
        """Videos ``todo`` of the group ``keys``; returns their statuses and stage times."""
        entries = [self.entries[tuple(k)] for k in keys]
        wanted = {tuple(k) for k in todo}
        items = [(i, ds, e) for i, (ds, e) in enumerate(entries) if (ds.root, e.key) in wanted]
        stale = {}  # the files of records being redone (removed when their new record is written)
        for _, ds, e in items:
            path = self.extractor.json_path(ds, e)
            record = read_record(path)
            if record is not None:
                stale[path] = record_files(self.cfg.out, record)
        self.extractor.stale_files = stale
        statuses: list = []
        busy: dict = collections.Counter()

        def account(record: dict) -> None:
            statuses.append(record.get("status"))
            for k, v in (record.get("timings_s") or {}).items():
                busy[k] += v

        try:
            self.extractor.process(entries, items, self.engine, self.writers, account)
        except BaseException:
            self._reopen()
            raise
        return {"statuses": statuses, "busy": dict(busy), "decoder": self.engine.decoder_resolved}

    def _arm_fault(self) -> None:
        """The test hook: die, its files written and half a temporary of its JSON left, just
        before the named video's record is written."""
        _, name, times = self.fault
        folder = os.path.join(self.cfg.out, ".ray-faults")
        write = self.writers._write

        def die_before_record(record, json_path, *rest):
            if record.get("video") == name:
                os.makedirs(folder, exist_ok=True)
                count = os.path.join(folder, name)
                n = len(open(count).read()) if os.path.exists(count) else 0
                if times == "always" or n < int(times):
                    with open(count, "a") as f:
                        f.write("x")
                    os.makedirs(os.path.dirname(json_path), exist_ok=True)
                    with open(temporary_path(json_path), "w") as f:
                        f.write('{"video": "half a rec')
                    os._exit(1)
            write(record, json_path, *rest)

        self.writers._write = die_before_record


def actor_plan(ray, cfg: ExtractConfig) -> tuple[int, dict, int]:
    """(actors, their Ray resources, threads each): one per GPU of the cluster; on a
    CPU-only one, one per node (or ``ray_actors``), each with its share of a node's cores."""
    res = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if torch.device(cfg.device).type == "cuda":
        gpus = int(res.get("GPU", 0))
        if gpus < 1:
            raise ConfigError(f"--device {cfg.device} but the Ray cluster has no GPU (use --device cpu)")
        n = cfg.ray_actors or gpus
        return n, {"num_gpus": 1, "num_cpus": 1}, cfg.threads or 2
    n = cfg.ray_actors or max(1, len(nodes))
    per_node = max(1, -(-n // max(1, len(nodes))))
    node_cpus = max([int(x.get("Resources", {}).get("CPU", 1)) for x in nodes] or [1])
    cpus = max(1, node_cpus // per_node)
    return n, {"num_cpus": cpus, "scheduling_strategy": "SPREAD"}, cfg.threads or cpus


def run_on_ray(cfg: ExtractConfig) -> dict:
    """Extract on a Ray cluster; returns the summary also written to ``OUT/summary.json``."""
    t0 = time.perf_counter()
    ray, started = connect(cfg.ray_address)
    try:
        os.makedirs(cfg.out, exist_ok=True)
        for p in cfg.inputs:  # before the folder is made: a refused run leaves none
            if not os.path.exists(p):
                raise FileNotFoundError(f"input {p} does not exist")
        datasets = from_paths(cfg.inputs, follow_links=cfg.follow_links, exclude=[cfg.out])
        with FolderLock(cfg.out, "extract"):  # exclusive: no shard runs beside the cluster
            os.environ[TAG_ENV] = RAY_TAG
            stale = remove_temporaries(cfg.out, RAY_TAG)
            if stale:
                log.info("removed %d temporary files left by an interrupted run", stale)
            resume = Resume(*check_settings(cfg), overwrite=cfg.overwrite)
            return _Driver(ray, cfg, datasets, resume, time.perf_counter() - t0).run()
    finally:
        if started:
            ray.shutdown()


class _Driver:
    def __init__(self, ray, cfg: ExtractConfig, datasets: list, resume: Resume, connect_s: float):
        self.ray, self.cfg, self.connect_s, self.resume = ray, cfg, connect_s, resume
        self.datasets = datasets
        self.ids = assign_ids(self.datasets)
        self.planner = Extractor(cfg)  # which videos are done: the job's own rules (source, settings, attempts)
        self.planner.ids, self.planner.resume = self.ids, resume

    def json_path(self, key) -> str:
        return os.path.join(self.cfg.out, "videos", self.ids[tuple(key)].path + ".json")

    def run(self) -> dict:
        ray, cfg = self.ray, self.cfg
        groups = video_groups(self.datasets)
        if cfg.limit is not None:
            groups = _first_videos(groups, cfg.limit)
        entries = [item for g in groups for item in g]
        by_key = {(ds.root, e.key): (ds, e) for ds, e in entries}
        _, done = self.planner._todo(entries)
        tasks = []
        for g in groups:
            keys = [(ds.root, e.key) for ds, e in g]
            todo = [k for k in keys if by_key[k][1].path not in done]
            if todo:
                tasks.append(Task(keys, todo, size=sum(_size(by_key[k][1].path) for k in todo)))
        tasks.sort(key=lambda t: -t.size)  # largest first: the long ones do not end the run alone
        todo_n = sum(len(t.todo) for t in tasks)
        write_json(os.path.join(cfg.out, "config-ray.json"), asdict(cfg))

        n, resources, threads = actor_plan(ray, cfg)
        probe = os.path.join(cfg.out, f".ray-probe-{uuid.uuid4().hex[:12]}")
        write_json(probe, {"driver": socket.gethostname()})
        remote = ray.remote(ExtractActor).options(max_restarts=-1, max_task_retries=0, **resources)
        bar = _progress(todo_n, cfg.progress)
        per_node: dict = collections.Counter()
        busy: dict = collections.Counter()
        decoders: set = set()
        t_actors = time.perf_counter()
        resume = (self.resume.settings_key, self.resume.generation, self.resume.overwrite)
        actors = [remote.remote(asdict(cfg), resume, threads, probe, os.environ.get(FAULT_ENV, ""))
                  for _ in range(n if tasks else 0)]

        def on_result(task: Task, value: Optional[dict], node: Optional[str]) -> None:
            done = len(task.todo) if value is None else len(value["statuses"])
            bar.update(done)
            per_node[node or "unknown"] += done
            if value:
                for k, v in value["busy"].items():
                    busy[k] += v
                decoders.add(value["decoder"])

        def give_up(task: Task, keys: list, reason: str) -> None:
            for k in keys:
                ds, e = by_key[tuple(k)]
                write_json(self.json_path(k), {**base_record(e, self.ids[tuple(k)]), **self.resume.stamp(e),
                                               "status": "error", "final": True,
                                               "error": f"its task ended its Ray actor {task.deaths} times "
                                                        f"(--overwrite retries it); last: {reason}"})
                try:
                    os.remove(started_path(self.json_path(k)))
                except OSError:
                    pass
            bar.update(len(keys))
            log.error("%s: gave up after %d actor deaths", ", ".join(by_key[tuple(k)][1].path for k in keys),
                      task.deaths)

        queue = ActorQueue(ray, actors, lambda a, t: a.run.remote(t.keys, t.todo),
                           remaining=lambda t: [k for k in t.todo if not os.path.exists(self.json_path(k))],
                           split=self._split, on_result=on_result, on_give_up=give_up, depth=IN_FLIGHT)
        try:
            queue.run(tasks)
        finally:
            bar.close()
            for a in actors:
                ray.kill(a)
            try:
                os.remove(probe)
            except OSError:
                pass
        remove_temporaries(cfg.out, RAY_TAG)  # what killed actors left
        elapsed = time.perf_counter() - t_actors
        steady = elapsed - (queue.startup_s or 0.0)
        summary = {**rebuild_index(cfg, self.datasets, self.resume.settings_key), "shard": "ray", "executor": "ray",
                   "device": cfg.device, "decoder": sorted(d for d in decoders if d) or cfg.decoder,
                   "processed": todo_n, "skipped_done": len(entries) - todo_n,
                   "elapsed_s": round(time.perf_counter() - (t_actors - self.connect_s), 3),
                   "videos_per_s": round(todo_n / elapsed, 3) if todo_n and elapsed > 0 else None,
                   "cluster_start_s": round(self.connect_s, 3), "startup_s": round(queue.startup_s or 0.0, 3),
                   "steady_videos_per_s": round(todo_n / steady, 3) if todo_n and steady > 0 else None,
                   "actors": len(actors), "videos_retried": sorted(by_key[tuple(k)][1].name for k in queue.retried), "actor_resources": {k: v for k, v in resources.items() if k != "scheduling_strategy"},
                   "threads_per_actor": threads, "actor_deaths": queue.deaths, "videos_requeued": queue.requeued,
                   "videos_per_node": dict(sorted(per_node.items())),
                   "stage_busy_s": {k: round(v, 3) for k, v in sorted(busy.items())}}
        if self.resume.generation is not None and not summary.get("stale_records"):
            finish_overwrite(cfg)
        write_json(os.path.join(cfg.out, "summary.json"), summary)
        return summary

    def _split(self, task: Task, keys: list) -> list:
        """A failed group's videos one per task, its REAL video first and its fakes after it
        (they reuse its boxes, as in one process)."""
        first = [k for k in keys if tuple(k) == tuple(task.keys[0])]
        parts = [Task(task.keys, first)] if first else []
        head = parts[0] if parts else None
        parts += [Task(task.keys, [k], after=head) for k in keys if not first or tuple(k) != tuple(first[0])]
        return parts


def _first_videos(groups: list, limit: int) -> list:
    out, n = [], 0
    for g in groups:
        if n >= limit:
            break
        out.append(g[:limit - n])
        n += len(out[-1])
    return out


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", desc="extract (ray)", disable=not enabled or total == 0, dynamic_ncols=True)
