"""The driver's queue: tasks to a pool of restartable actors, a bounded number in flight each.

Ray restarts a dead actor (``max_restarts=-1``) but does not retry its tasks
(``max_task_retries=0``): the driver decides. Completion is judged by the caller's
records (a task can fail with ``RayActorError`` after its videos were written), so a
failed task is requeued with only what it left undone. Only the task an actor was
running when it died is charged with the death (those queued behind it never started);
after the first death a group is split so that one poison video cannot take its
neighbours down with it, and a task charged ``max_deaths`` times is given up.
An actor that died gets work again only once it answers a ping, so a node that never
comes back holds nothing.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from dfdc_fast.files import is_storage_error

log = logging.getLogger("dfdc_fast.cluster")

#: Deaths of its actor after which a task is given up (NeMo Curator/Xenna's cap, Dask's allowed-failures).
MAX_DEATHS = 3


@dataclass
class Task:
    """Videos that go to one actor call: ``todo`` of the group ``keys``."""

    keys: list
    todo: list
    size: float = 0.0
    deaths: int = 0
    after: Optional["Task"] = None  # not sent before this one is finished (a fake after its REAL video)
    finished: bool = False
    errors: list = field(default_factory=list)


class ActorQueue:
    """Runs tasks over actors until each is finished or given up.

    Args:
        ray: the ``ray`` module.
        actors: actor handles with ``ready()`` (returns a node label) and the task method.
        call: ``call(actor, task)`` -> ObjectRef of the task's result.
        remaining: ``remaining(task)`` -> the task's keys that still have no record.
        split: ``split(task, keys)`` -> tasks for a failed task's remaining keys.
        on_result: ``on_result(task, value, node)`` for a task that returned.
        on_give_up: ``on_give_up(task, keys, reason)`` for a task charged ``max_deaths`` times.
        depth: tasks in flight per actor (one running, the rest waiting on it).
        stop: ``stop()`` -> True to send no more tasks (a time budget).
        deadline: epoch seconds after which tasks still in flight are abandoned.
    """

    def __init__(self, ray, actors: list, call: Callable, remaining: Callable, split: Callable, on_result: Callable,
                 on_give_up: Callable, depth: int = 2, max_deaths: int = MAX_DEATHS,
                 stop: Optional[Callable[[], bool]] = None, deadline: Optional[float] = None):
        self.ray, self.actors, self.call = ray, actors, call
        self.remaining, self.split, self.on_result, self.on_give_up = remaining, split, on_result, on_give_up
        self.depth, self.max_deaths, self.stop = depth, max_deaths, stop or (lambda: False)
        self.deadline = deadline  # epoch seconds: past it, tasks still in flight are abandoned
        self.nodes: dict = {}  # actor index -> node label, once it answered
        self.deaths = 0
        self.requeued = 0
        self.retried: list = []  # keys of the tasks running when their actor died (or raised)
        self.startup_s: Optional[float] = None

    def run(self, tasks: list) -> list:
        """Run ``tasks`` (largest first as given); returns those left unsent (a stop)."""
        ray = self.ray
        t0 = time.perf_counter()
        waiting = collections.deque(tasks)
        pings = {a.ready.remote(): i for i, a in enumerate(self.actors)}
        ready: set = set()
        lanes = {i: collections.deque() for i in range(len(self.actors))}  # refs in submission order
        flight: dict = {}  # ref -> (actor index, task)
        orphans: set = set()  # refs sent to an actor that died before it started them
        while True:
            if not self.stop():
                self._fill(waiting, ready, lanes, flight)
            elif not flight:
                break
            if not flight and not waiting:
                break
            if self.deadline is not None and time.time() > self.deadline:
                log.warning("deadline reached with %d tasks in flight: they are abandoned", len(flight))
                break
            if not flight and not ready and not pings:
                raise RuntimeError("no Ray actor is left to run the remaining videos")
            done, _ = ray.wait(list(flight) + list(pings), num_returns=1, timeout=1.0)
            for ref in done:
                if ref in pings:
                    i = pings.pop(ref)
                    try:
                        self.nodes[i] = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        if i not in self.nodes:  # it never started: its constructor failed
                            raise RuntimeError(f"a Ray actor could not start: {_cause(exc)}") from None
                        pings[self.actors[i].ready.remote()] = i  # still restarting
                        continue
                    ready.add(i)
                    if self.startup_s is None:
                        self.startup_s = time.perf_counter() - t0
                    continue
                i, task = flight.pop(ref)
                head = lanes[i][0]
                lanes[i].remove(ref)
                running = head is ref and ref not in orphans  # the one its actor was running
                log.debug("task %s back from actor %d (running: %s)", task.todo, i, running)
                try:
                    value = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                    if i in ready:
                        ready.discard(i)
                        orphans.update(r for r in lanes[i] if r is not head)  # queued behind: never started
                        self.deaths += 1
                        log.warning("Ray actor %d (node %s) died: %s; its videos are requeued", i,
                                    self.nodes.get(i), _cause(exc))
                        pings[self.actors[i].ready.remote()] = i
                    self._failed(task, waiting, charged=running, reason=f"its Ray actor died ({_cause(exc)})")
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if cause is not None and _is_storage(cause):
                        raise cause from None
                    self._failed(task, waiting, charged=True, reason=f"{type(cause or exc).__name__}: {cause or exc}")
                    continue
                task.finished = True
                self.on_result(task, value, self.nodes.get(i))
        return list(waiting)

    def _fill(self, waiting, ready, lanes, flight) -> None:
        for i in sorted(ready, key=lambda i: len(lanes[i])):
            while len(lanes[i]) < self.depth:
                task = next((t for t in waiting if t.after is None or t.after.finished), None)
                if task is None:
                    return
                waiting.remove(task)
                ref = self.call(self.actors[i], task)
                log.debug("task %s sent to actor %d", task.todo, i)
                lanes[i].append(ref)
                flight[ref] = (i, task)

    def _failed(self, task: Task, waiting, charged: bool, reason: str) -> None:
        keys = self.remaining(task)
        if not keys:
            task.finished = True  # its records were written before the actor went
            self.on_result(task, None, None)
            return
        task.todo = keys
        if charged:
            task.deaths += 1
            task.errors.append(reason)
            self.retried += [k for k in keys if k not in self.retried]
        if task.deaths >= self.max_deaths:
            task.finished = True
            self.on_give_up(task, keys, reason)
            return
        parts = self.split(task, keys) if charged and len(keys) > 1 else [task]
        for part in parts:
            part.deaths, part.errors = task.deaths, list(task.errors)
        self.requeued += len(keys)
        waiting.extendleft(reversed(parts))  # retried next, before fresh work


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_storage(exc: BaseException) -> bool:
    return is_storage_error(exc)
