"""The ``dali`` loader: one DALI pipeline per epoch decodes each clip's window.

An external source hands ``fn.decoders.video`` each clip's bytes and frame numbers (NVDEC
on a GPU, ``"mixed"``; the CPU backend decodes only VP8/VP9/MJPEG), and DALI's prefetch
queue keeps decoded batches ahead; they are copied into torch tensors on the consumer's
stream. The GPU path is unverified on a GPU.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from dfdc_fast.train.batch import Batch
from dfdc_fast.train.plan import EpochPlan
from dfdc_fast.train.windows import DecodeStats, expected_decoded, packet_index


class _DaliWindows:
    """The external source of one epoch: each batch's encoded clips and window frame numbers."""

    def __init__(self, plan: EpochPlan, stats: DecodeStats):
        self.plan, self.stats, self.k = plan, stats, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.k >= len(self.plan):
            raise StopIteration
        items = self.plan.batch(self.k)
        self.k += 1
        encoded = [np.fromfile(it.path, dtype=np.uint8) for it in items]
        windows = [np.asarray(it.window, dtype=np.int32) for it in items]
        for it in items:
            self.stats.add(None, len(it.window), expected_decoded(packet_index(it.path), it.window))
        return encoded, windows


class DaliLoader:
    """A DALI pipeline per epoch: ``fn.decoders.video`` (NVDEC on a GPU, ``"mixed"``; the CPU
    backend decodes only VP8/VP9/MJPEG) decodes each clip's window, with DALI's prefetch
    queue of ``prefetch`` batches; batches are copied into torch tensors on the consumer's
    stream. The GPU path is unverified on a GPU."""

    name = "dali"

    def __init__(self, device: torch.device, workers: int = 4, prefetch: int = 2):
        from dfdc_fast.io.dali import import_dali

        self._dali, self._fn, self._types = import_dali()
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.workers, self.prefetch = max(1, workers), max(1, prefetch)
        self.stats = DecodeStats()

    def _check_codecs(self, plan: EpochPlan) -> None:
        from dfdc_fast.io.dali import DALI_CPU_CODECS

        if any(it.window is None for it in plan.items[:1]):
            raise ValueError("loader='dali' decodes clips; 2D crops need loader='pyav'")
        if self.device.type != "cuda":
            for path in sorted({it.path for it in plan.items}):
                codec = packet_index(path).codec
                if codec not in DALI_CPU_CODECS:
                    raise ValueError(f"{path}: DALI decodes {codec!r} only on a GPU (its CPU decoder handles "
                                     f"{sorted(DALI_CPU_CODECS)}); use loader='pyav' on the CPU")

    def _pipeline(self, plan: EpochPlan):
        dali, fn, types = self._dali, self._fn, self._types
        gpu = self.device.type == "cuda"
        source = _DaliWindows(plan, self.stats)

        @dali.pipeline_def(batch_size=plan.batch_size, num_threads=self.workers,
                           device_id=self.device.index if gpu else None, prefetch_queue_depth=self.prefetch,
                           exec_dynamic=True)
        def pipe():
            encoded, frames = fn.external_source(source=source, num_outputs=2, batch=True,
                                                 dtype=[types.UINT8, types.INT32], ndim=[1, 1], device="cpu")
            return fn.decoders.video(encoded, frames=frames, device="mixed" if gpu else "cpu")

        p = pipe()
        p.build()
        return p

    def iterate(self, plan: EpochPlan) -> Iterator[Batch]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        n = len(plan)
        if n == 0:
            return
        self._check_codecs(plan)
        labels = plan.labels().to(self.device, non_blocking=True)
        pipe = self._pipeline(plan)
        try:
            for k in range(n):
                try:
                    (out,) = pipe.run()
                except StopIteration:
                    raise RuntimeError(f"DALI ended the epoch after {k} of {n} batches") from None
                rows = len(plan.batch(k))
                if len(out) != rows:
                    raise RuntimeError(f"DALI returned {len(out)} clips for a batch of {rows}")
                if not out.is_dense_tensor():
                    raise ValueError("clips of one batch differ in size; extract every clip with one --clip-size")
                dense = out.as_tensor()
                frames = torch.empty(tuple(dense.shape()), dtype=torch.uint8, device=self.device)
                stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
                feed_ndarray(dense, frames, cuda_stream=stream)
                yield Batch(frames, labels[k * plan.batch_size:k * plan.batch_size + rows])
        finally:
            del pipe

    def close(self) -> None:
        pass
