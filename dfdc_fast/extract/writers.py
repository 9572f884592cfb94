"""Writing each video's files, then its JSON (which marks the video done).

Clips go to a pool of encoder processes (libx264 with one thread per clip scales with
processes); ``encoders=0`` writes in this process. At most ``max_pending`` videos wait
for their files, which holds the engine back when the encoders are the bottleneck. Every
file is atomic and checked (:mod:`dfdc_fast.files`); a full disk raises
:class:`~dfdc_fast.files.StorageError` out of :meth:`Writers.finished`, and the video whose
files failed gets no JSON, so the next run redoes it.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import Iterable, Iterator, Optional

import torch

from dfdc_fast.crops import write_mp4
from dfdc_fast.files import is_storage_error, verify_image, write_bytes, write_json
from dfdc_fast.runtime import child_of_job, children_ignore_sigint


def encode_clip(path: str, frames: torch.Tensor, fps: float, crf: int, keyint: int) -> float:
    t0 = time.perf_counter()
    write_mp4(path, frames, fps, crf=crf, keyint=keyint)
    return time.perf_counter() - t0


def encode_png(image) -> bytes:
    """PNG bytes of a uint8 ``(h, w, 3)`` RGB or ``(h, w)`` grey image (OpenCV's encoder and
    defaults, as Selim's ``cv2.imwrite``)."""
    import cv2
    import numpy as np

    arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # RGB -> BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {arr.shape}")
    return buf.tobytes()


def write_files(files: list) -> float:
    """Write ``(path, data)`` files: bytes as they are, images (tensors/arrays) as PNG."""
    t0 = time.perf_counter()
    for path, data in files:
        write_bytes(path, data if isinstance(data, (bytes, bytearray)) else encode_png(data), verify_image)
    return time.perf_counter() - t0


def _encoder_init(parent_pid: int) -> None:
    child_of_job(parent_pid)  # dies with the job, leaves Ctrl-C to it
    torch.set_num_threads(1)


def default_encoders(device: str, workers) -> int:
    """Encoder processes: the cores the engine's workers leave free, at least two."""
    from dfdc_fast.engine import default_workers

    cores = default_workers("cpu")
    if torch.device(device).type == "cuda":
        return max(2, cores - (workers if workers is not None else default_workers(device)))
    return max(2, cores)


class Writers:
    """Files of each video, then its JSON, written as soon as they are done (from the pool's
    callbacks, so a video's record is on disk even while this process is busy with the
    next video, and a job killed then loses none that finished)."""

    def __init__(self, encoders: int, crf: int, keyint: int, max_pending: int):
        self.crf, self.keyint, self.max_pending = crf, keyint, max_pending
        self.pool = None
        if encoders > 0:
            import torch.multiprocessing as tmp

            self.pool = ProcessPoolExecutor(encoders, mp_context=tmp.get_context("spawn"), initializer=_encoder_init,
                                            initargs=(os.getpid(),))
        self.pending: collections.deque = collections.deque()  # (record, json path, futures, files, stale)
        self._written: collections.deque = collections.deque()  # records written, not yet handed out
        self._lock = threading.RLock()
        self._error: Optional[BaseException] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=exc[0] is not None)

    def submit(self, record: dict, json_path: str, clips: list, crops: list, stale: Iterable[str] = ()) -> None:
        """Write ``clips`` and ``crops``, then the record; ``stale`` are files of an earlier
        record of the video that the new one no longer has (removed once it is written)."""
        jobs = [(encode_clip, (p, f, fps, self.crf, self.keyint)) for p, f, fps in clips]
        jobs += [(write_files, (crops,))] if crops else []  # a video without files is written at once
        files = [p for p, _, _ in clips] + [p for p, _ in crops]
        if self.pool is None:
            futures = [_run_now(fn, *args) for fn, args in jobs]
        else:
            with children_ignore_sigint():  # the pool starts its processes on demand
                futures = [self.pool.submit(fn, *args) for fn, args in jobs]
        with self._lock:
            self.pending.append((record, json_path, futures, files, set(stale) - set(files)))
        for f in futures:
            f.add_done_callback(self._drain)
        self._drain()

    def _drain(self, _=None) -> None:
        with self._lock:
            while self.pending and self._error is None and all(f.done() for f in self.pending[0][2]):
                try:
                    self._write(*self.pending[0])
                except BaseException as exc:  # noqa: BLE001 - raised in the job's thread by finished()
                    self._error = exc
                    return
                self._written.append(self.pending.popleft()[0])

    def _write(self, record: dict, json_path: str, futures: list, files: list, stale: set) -> None:
        errors, busy = [], 0.0
        for f in futures:
            try:
                busy += f.result()
            except Exception as exc:  # noqa: BLE001 - a failed write is this video's error...
                if is_storage_error(exc):
                    raise  # ...unless the disk is at fault: then the run must stop
                errors.append(f"{type(exc).__name__}: {exc}")
        record.setdefault("timings_s", {})["encode"] = round(busy, 4)
        if errors:  # a failed video keeps no files: none is counted or indexed as a clip
            record.update(status="error", error=f"writing outputs: {errors[0]}", clips=[], crops=[])
            stale = stale | set(files)
        write_json(json_path, record)
        for path in stale:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        try:
            os.remove(started_path(json_path))
        except FileNotFoundError:
            pass

    def finished(self, block: bool) -> Iterator[dict]:
        """Records of the videos written since the last call, oldest first; waits for all
        (``block``) or until at most ``max_pending`` videos wait for their files."""
        while True:
            self._drain()
            with self._lock:
                if self._error is not None:
                    raise self._error
                written = list(self._written)
                self._written.clear()
                head = self.pending[0][2] if self.pending and (block or len(self.pending) > self.max_pending) else None
            yield from written
            if head is None:
                return
            wait(head)


def started_path(json_path: str) -> str:
    """The marker a video's run leaves until its record is written (see the job's resume)."""
    return json_path[:-len(".json")] + ".started"


def _run_now(fn, *args) -> Future:
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001
        future.set_exception(exc)
    return future
