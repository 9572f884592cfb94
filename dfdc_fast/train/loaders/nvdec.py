"""The ``nvdec`` loader: decoder processes fill a ring of uint8 batches in GPU memory.

Spawned worker processes, each owning one PyNvVideoCodec session, decode windows by frame
index straight into ring slots the training process shares with them (CUDA IPC); no frame
passes through host memory. With ``decoder="pyav"`` the same processes and ring run in
host shared memory with CPU decoding, which is how the CPU tests check the ring protocol.
The NVDEC path is unverified on a GPU.
"""
from __future__ import annotations

import queue
import time
import traceback
from typing import Iterator, Sequence

import torch

from dfdc_fast.train.batch import Batch
from dfdc_fast.train.plan import EpochPlan
from dfdc_fast.train.windows import DecodeStats, decode_window, expected_decoded, packet_index


class NvdecWindowDecoder:
    """One PyNvVideoCodec session (reused across clips) decoding windows by frame index on
    the GPU, converting NV12 to RGB with the stream's matrix (:mod:`dfdc_fast.io.color`)
    straight into a caller's device tensor. Unverified on a GPU."""

    def __init__(self, device: torch.device | str):
        from dfdc_fast.io.nvdec import import_pynvvideocodec

        self._nvc = import_pynvvideocodec()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"NVDEC decodes into CUDA memory; device must be cuda, got {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device)
        self._decoder = None
        self._colour: dict = {}

    def _open(self, path: str):
        nvc = self._nvc
        if self._decoder is None:
            self._decoder = nvc.SimpleDecoder(path, gpu_id=self.device.index, cuda_stream=self.stream.cuda_stream,
                                              use_device_memory=True, output_color_type=nvc.OutputColorType.NATIVE)
        else:
            self._decoder.reconfigure_decoder(path)
        return self._decoder

    def _colour_of(self, path: str) -> tuple[str, bool]:
        if path not in self._colour:
            from dfdc_fast.io import read_header

            info = read_header(path)
            if info.rotation:
                raise ValueError(f"{path}: rotated clips are not supported by the training loaders (rotation {info.rotation})")
            self._colour[path] = (info.color_matrix, info.full_range)
        return self._colour[path]

    def decode_into(self, path: str, window: Sequence[int], out: torch.Tensor, wait_event=None) -> None:
        from dfdc_fast.io import VideoDecodeError
        from dfdc_fast.io.color import nv12_to_rgb

        matrix, full_range = self._colour_of(path)
        unique = sorted(set(int(i) for i in window))
        try:
            decoder = self._open(path)
            frames = decoder.get_batch_frames_by_index(unique)
        except Exception as exc:  # PyNvVideoCodec raises plain Exception
            self._decoder = None
            raise VideoDecodeError(path, f"NVDEC failed on frames {unique[0]}..{unique[-1]}: {exc}") from exc
        if len(frames) != len(unique):  # it drops out-of-range indices with a warning only
            raise VideoDecodeError(path, f"NVDEC returned {len(frames)} frames for {len(unique)} indices")
        h, w = out.shape[1:3]
        rows: dict[int, list[int]] = {}
        for r, f in enumerate(window):
            rows.setdefault(int(f), []).append(r)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            if wait_event is not None:
                self.stream.wait_event(wait_event)  # the consumer is done with this ring slot
            for f, frame in zip(unique, frames):
                src = torch.from_dlpack(frame)
                if src.dim() == 3 and src.shape[-1] == 1:
                    src = src[..., 0]
                first = rows[f][0]
                nv12_to_rgb(src, h, w, matrix, full_range, out=out[first])
                for r in rows[f][1:]:
                    out[r].copy_(out[first])
        self.stream.synchronize()  # in the worker process: the slot is complete before it is reported


class _PyavWindowDecoder:
    """The CPU stand-in of :class:`NvdecWindowDecoder` (same ring protocol, host memory)."""

    def decode_into(self, path: str, window: Sequence[int], out: torch.Tensor, wait_event=None) -> tuple[int, int]:
        _, decoded, misses = decode_window(path, window, out=out.numpy())
        return decoded, misses


def _ring_worker(rank: int, decoder_name: str, device: str, ring: torch.Tensor, events: list, tasks, done) -> None:
    """A decoder process: takes ``(batch, slot, row, path, window)`` tasks, fills ``ring[slot, row]``."""
    torch.set_num_threads(1)
    try:
        if decoder_name == "nvdec":
            torch.cuda.set_device(torch.device(device))
            decoder = NvdecWindowDecoder(device)
        else:
            decoder = _PyavWindowDecoder()
    except BaseException:
        done.put(("fatal", rank, traceback.format_exc()))
        return
    while True:
        task = tasks.get()
        if task is None:
            break
        k, slot, row, path, window = task
        try:
            got = decoder.decode_into(path, window, ring[slot, row], events[slot] if events else None)
            decoded, misses = got if got is not None else (None, 0)
            expected = expected_decoded(packet_index(path), window)
            done.put((k, row, decoded, expected, misses, None))
        except BaseException:
            done.put((k, row, None, 0, 0, traceback.format_exc()))


class NvdecLoader:
    """Decoder processes (``spawn``), each with its own NVDEC session, fill a ring of
    ``prefetch + 1`` uint8 batches in GPU memory shared by CUDA IPC.

    The training process yields ring slots in order and records an inter-process CUDA event
    when the step that used a slot has been queued; a worker's stream waits on that event
    before it overwrites the slot, so neither side blocks the host. A yielded batch is valid
    until the next one is requested (clone it to keep it).

    ``decoder="pyav"`` runs the same processes and ring in host shared memory with CPU
    decoding: that is how the CPU test suite checks the ring protocol. The NVDEC path is
    unverified on a GPU.
    """

    name = "nvdec"

    def __init__(self, device: torch.device, workers: int = 4, prefetch: int = 2, decoder: str = "nvdec",
                 timeout_s: float = 300.0):
        self.device = torch.device(device)
        if decoder not in ("nvdec", "pyav"):
            raise ValueError(f"decoder must be 'nvdec' or 'pyav', got {decoder!r}")
        if decoder == "nvdec":
            if self.device.type != "cuda":
                raise ValueError("loader='nvdec' decodes into GPU memory: it needs a CUDA device")
            from dfdc_fast.io.nvdec import import_pynvvideocodec

            import_pynvvideocodec()  # fail here, naming the package, not in every worker
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
        elif self.device.type != "cpu":
            raise ValueError("the ring loader's 'pyav' decoder fills host memory: use device='cpu'")
        self.decoder, self.workers, self.slots = decoder, max(1, workers), max(1, prefetch) + 1
        self.timeout_s = timeout_s
        self.stats = DecodeStats()
        self._ring = None
        self._events: list = []
        self._procs: list = []
        self._tasks = self._done = None

    def _start(self, plan: EpochPlan) -> None:
        first = packet_index(plan.items[0].path)
        t = len(plan.items[0].window)
        shape = (self.slots, plan.batch_size, t, first.height, first.width, 3)
        if self._ring is not None and tuple(self._ring.shape) == shape:
            return
        self.close()
        if self.device.type == "cuda":
            self._ring = torch.empty(shape, dtype=torch.uint8, device=self.device)
            self._events = [torch.cuda.Event(interprocess=True) for _ in range(self.slots)]
            for e in self._events:
                e.record(torch.cuda.current_stream(self.device))
        else:
            self._ring = torch.empty(shape, dtype=torch.uint8).share_memory_()
            self._events = []
        ctx = torch.multiprocessing.get_context("spawn")
        self._tasks, self._done = ctx.Queue(), ctx.Queue()
        self._procs = [ctx.Process(target=_ring_worker, daemon=True, name=f"dfdc-{self.decoder}-{r}",
                                   args=(r, self.decoder, str(self.device), self._ring, self._events,
                                         self._tasks, self._done)) for r in range(self.workers)]
        for p in self._procs:
            p.start()

    def _dispatch(self, plan: EpochPlan, k: int, slot: int) -> int:
        items = plan.batch(k)
        for row, it in enumerate(items):
            if it.window is None:
                raise ValueError("loader='nvdec' decodes clips; 2D crops need loader='pyav'")
            if len(it.window) != self._ring.shape[2]:
                raise ValueError(f"{it.path}: a {len(it.window)}-frame window in a ring of {self._ring.shape[2]}")
            self._tasks.put((k, slot, row, it.path, it.window))
        return len(items)

    def _collect(self, pending: dict, k: int) -> None:
        """Wait until every row of batch ``k`` is decoded; results of later batches are kept."""
        deadline = time.monotonic() + self.timeout_s
        while pending[k][0] > 0:
            try:
                msg = self._done.get(timeout=1.0)
            except queue.Empty:
                dead = [p.name for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"decoder process(es) {dead} died (exit codes "
                                       f"{[p.exitcode for p in self._procs if not p.is_alive()]})")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"batch {k}: no decoded clip for {self.timeout_s:.0f} s")
                continue
            if msg[0] == "fatal":
                raise RuntimeError(f"decoder process {msg[1]} could not start:\n{msg[2]}")
            b, row, decoded, expected, misses, error = msg
            if error:
                raise RuntimeError(f"decoding batch {b}, row {row} failed in a decoder process:\n{error}")
            pending[b][0] -= 1
            self.stats.add(decoded, self._ring.shape[2], expected, misses)

    def iterate(self, plan: EpochPlan) -> Iterator[Batch]:
        n = len(plan)
        if n == 0:
            return
        self._start(plan)
        labels = plan.labels().to(self.device, non_blocking=True)
        pending: dict = {}
        for k in range(min(self.slots, n)):
            pending[k] = [self._dispatch(plan, k, k % self.slots)]
        try:
            for k in range(n):
                self._collect(pending, k)
                rows = len(plan.batch(k))
                slot = k % self.slots
                yield Batch(self._ring[slot, :rows], labels[k * plan.batch_size:k * plan.batch_size + rows])
                # the step that read this slot is queued: let workers overwrite it after it ran
                if self._events:
                    self._events[slot].record(torch.cuda.current_stream(self.device))
                nxt = k + self.slots
                if nxt < n:
                    pending[nxt] = [self._dispatch(plan, nxt, slot)]
                del pending[k]
        except BaseException:
            self.close()  # tasks of an abandoned epoch must not fill the ring later
            raise
        if pending:
            self.close()

    def close(self) -> None:
        for _ in self._procs:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self._procs = []
        self._ring = None
        self._events = []

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
