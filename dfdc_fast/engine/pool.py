"""``Engine``: the per-video path in worker processes, one per NVDEC engine or CPU core.

Decoding is a Python loop around a native decoder, bound by the GIL when several run as
threads of one process; as processes they scale. Each worker runs the whole per-video
path (decode, detect, track, cut) on its own decoder session and CUDA stream, so frames
never leave the device; what comes back is small metadata and a few packed tensors
(shared memory on the CPU, CUDA IPC for device tensors).

A worker that dies (a crashing decoder, the OOM killer) or exceeds ``video_timeout``
gives its video status ``error`` and is replaced; the run goes on and never hangs.
``workers=0`` runs the path in the calling process (tests, debugging, small jobs).
"""
from __future__ import annotations

import collections
import logging
import multiprocessing.connection as mpc
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import torch

from dfdc_fast.engine.path import FacePath
from dfdc_fast.engine.request import FacesRequest, VideoFaces, VideoTask
from dfdc_fast.runtime import child_of_job, children_ignore_sigint

log = logging.getLogger("dfdc_fast.engine")

#: NVDEC engines per GPU (H100/H200/B200: 7; A100: 5; L4: 4; L40S: 3; T4: 2), after
#: NVIDIA's support matrix; other GPUs get one worker per engine we cannot know, i.e. 2.
NVDEC_ENGINES = {"H100": 7, "H200": 7, "H800": 7, "H20": 7, "GH200": 7, "B200": 7, "B100": 7, "A100": 5,
                 "A800": 5, "A30": 4, "L4": 4, "L40S": 3, "L40": 3, "A10": 1, "T4": 2, "V100": 1, "P100": 1}


def default_workers(device: torch.device | str) -> int:
    """One worker per NVDEC engine on a GPU, one per CPU core otherwise."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
        for key, n in sorted(NVDEC_ENGINES.items(), key=lambda kv: -len(kv[0])):
            if key in name:
                return n
        return 2
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _worker_main(conn, request: FacesRequest, device: str, decoder: str, threads: int, worker_id: int,
                 parent_pid: Optional[int] = None) -> None:
    """Body of a worker process: build the path once, then run tasks until told to stop."""
    if parent_pid is not None:
        child_of_job(parent_pid)
    torch.set_num_threads(max(1, threads))
    try:
        path = FacePath(request, device, decoder, decoder_threads=threads)
        path.on_stage = lambda task, stage: conn.send(("stage", worker_id, (task.key, stage)))
        conn.send(("ready", worker_id, path.decoder))
    except BaseException as exc:  # noqa: BLE001 - report why the worker cannot start
        conn.send(("failed", worker_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = path.run(task)
        result.worker = worker_id
        conn.send(("result", worker_id, result))


@dataclass
class _Worker:
    id: int
    process: object
    conn: object
    tasks: collections.deque = field(default_factory=collections.deque)  # sent, not yet answered
    started: float = 0.0  # when its current (first) task began
    ready: bool = False


class Engine:
    """Runs a :class:`FacesRequest` over many videos.

    Args:
        request: what to compute per video.
        device: where the path runs ("cuda" means "cuda:LOCAL_RANK" under torchrun).
        workers: worker processes; None: :func:`default_workers`; 0: in this process.
        decoder: "auto", "nvdec", "pyav" (a worker's reader backend).
        threads: torch and decoder threads per worker (default: cores / workers).
        prefetch: tasks queued per worker beyond the running one, so none waits.
        video_timeout: seconds a video may take before its worker is replaced.

    Use as a context manager; :meth:`run` yields results as they complete.
    """

    def __init__(self, request: FacesRequest, device: torch.device | str = "cpu", workers: Optional[int] = None,
                 decoder: str = "auto", threads: Optional[int] = None, prefetch: int = 1,
                 video_timeout: Optional[float] = 600.0):
        self.request = request
        self.device = torch.device(device)
        self.workers = default_workers(self.device) if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        cores = default_workers("cpu")
        self.threads = threads or max(1, cores // max(1, self.workers))
        self.decoder = decoder
        self.prefetch = max(0, int(prefetch))
        self.video_timeout = video_timeout
        self._pool: list[_Worker] = []
        self._local: Optional[FacePath] = None
        self._next_id = 0
        self.replaced = 0  # workers that died or timed out and were restarted
        self.decoder_resolved: Optional[str] = None
        #: Called with (task key, stage) as a video enters each stage, in whichever process runs it.
        self.on_stage = None

    # ---- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> "Engine":
        if self.workers == 0:
            self._local = FacePath(self.request, self.device, self.decoder, decoder_threads=0)
            self._local.on_stage = lambda task, stage: self.on_stage is not None and self.on_stage(task.key, stage)
            self.decoder_resolved = self._local.decoder
        else:
            for _ in range(self.workers):
                self._pool.append(self._start())
            self._await_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)  # interrupted or failed: nothing left to finish

    def close(self, kill: bool = False) -> None:
        """Stop the workers: after their current video, or at once with ``kill=True``
        (a time budget that ran out)."""
        for w in self._pool:
            if kill:
                w.process.kill()
                continue
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + (0 if kill else 10)
        for w in self._pool:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self._pool.clear()
        self._local = None

    def _start(self) -> _Worker:
        import torch.multiprocessing as tmp  # registers the tensor reductions (shared memory, CUDA IPC)

        ctx = tmp.get_context("spawn")
        parent, child = ctx.Pipe()
        wid = self._next_id
        self._next_id += 1
        proc = ctx.Process(target=_worker_main, name=f"dfdc-engine-{wid}", daemon=True,
                           args=(child, self.request, str(self.device), self.decoder, self.threads, wid, os.getpid()))
        with children_ignore_sigint():  # Ctrl-C is the job's to handle, from the worker's first instruction
            proc.start()
        child.close()
        return _Worker(wid, proc, parent)

    def _await_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        for w in self._pool:
            if w.ready:
                continue
            if not w.conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"engine worker {w.id} did not start within {timeout:.0f} s")
            kind, _, payload = w.conn.recv()
            if kind == "failed":
                self.close()
                raise RuntimeError(f"engine worker could not start: {payload}")
            w.ready, self.decoder_resolved = True, payload

    # ---- running ----------------------------------------------------------------------

    def run(self, tasks: Iterable[Optional[VideoTask]], heartbeat: bool = False) -> Iterator[Optional[VideoFaces]]:
        """Yield a :class:`VideoFaces` per task, in completion order.

        ``tasks`` is consumed lazily, only while a worker has room. It may yield ``None``
        to say "no task is ready until another result comes back" (a fake waiting for its
        original's tracks); yielding ``None`` with nothing in flight is an error. With
        ``heartbeat``, ``None`` is also yielded about every second without a result, so
        the caller can watch a clock.
        """
        source = iter(tasks)
        if self.workers == 0:
            for task in source:
                if task is None:
                    raise RuntimeError("the task source waits for a result, but nothing is in flight")
                yield self._local.run(task)
                if heartbeat:
                    yield None
            return
        exhausted = False
        capacity = 1 + self.prefetch
        while True:
            waiting = False
            while not exhausted and not waiting:
                worker = min(self._pool, key=lambda w: len(w.tasks))
                if len(worker.tasks) >= capacity:
                    break
                task = next(source, StopIteration)
                if task is StopIteration:
                    exhausted = True
                elif task is None:
                    waiting = True
                else:
                    self._send(worker, task)
            in_flight = sum(len(w.tasks) for w in self._pool)
            if not in_flight:
                if exhausted:
                    return
                if waiting:
                    raise RuntimeError("the task source waits for a result, but nothing is in flight")
            got = False
            for result in self._collect(timeout=1.0):
                got = True
                yield result
            if heartbeat and not got:
                yield None

    def _send(self, worker: _Worker, task: VideoTask) -> None:
        if not worker.tasks:
            worker.started = time.monotonic()
        worker.tasks.append(task)
        worker.conn.send(task)

    def _collect(self, timeout: float) -> Iterator[VideoFaces]:
        conns = {w.conn: w for w in self._pool}
        sentinels = {w.process.sentinel: w for w in self._pool}
        ready = mpc.wait(list(conns) + list(sentinels), timeout=timeout)
        done: set[int] = set()
        for obj in ready:
            if obj in conns:
                w = conns[obj]
                try:
                    while w.conn.poll():
                        kind, _, result = w.conn.recv()
                        if kind == "stage" and self.on_stage is not None:
                            self.on_stage(*result)
                        if kind != "result":
                            continue
                        w.tasks.popleft()
                        w.started = time.monotonic()
                        yield result
                except (EOFError, OSError):
                    pass  # the sentinel tells the rest
        for obj in ready:
            if obj in sentinels and not sentinels[obj].process.is_alive():
                w = sentinels[obj]
                if w.id not in done:
                    done.add(w.id)
                    yield from self._replace(w, f"worker process died (exit code {w.process.exitcode})")
        if self.video_timeout is not None:
            now = time.monotonic()
            for w in list(self._pool):
                if w.tasks and now - w.started > self.video_timeout and w.id not in done:
                    done.add(w.id)
                    w.process.kill()
                    w.process.join()
                    yield from self._replace(w, f"timed out after {self.video_timeout:.0f} s")

    def _replace(self, worker: _Worker, why: str) -> Iterator[VideoFaces]:
        """Fail the worker's running task, restart it, and resend the tasks queued behind."""
        self.replaced += 1
        queued = list(worker.tasks)
        worker.conn.close()
        self._pool.remove(worker)
        fresh = self._start()
        self._pool.append(fresh)
        if queued:
            failed = queued[0]
            log.warning("%s: %s; the video gets status error and the worker is replaced", failed.path, why)
            yield VideoFaces(key=failed.key, path=failed.path, status="error", error=why, worker=worker.id)
        self._await_ready()
        for task in queued[1:]:
            self._send(fresh, task)


__all__ = ["Engine", "default_workers", "NVDEC_ENGINES"]
