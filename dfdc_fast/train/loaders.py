"""Batches of face clips (or crops) on the training device.

Every loader yields ``(frames, labels)``: uint8 ``(B, T, H, W, 3)`` clips (``(B, H, W, 3)``
images for 2D) and float labels ``(B,)``, both on ``device``. Which clips, and the random
window inside each, depend only on ``(seed, epoch, position)``, so every loader gives the
same batches and a resumed run replays the epoch it stopped in.

* ``pyav``: a torch DataLoader decoding on CPU workers, pinned memory, one non-blocking copy.
* ``nvdec``: threads with one NVDEC session each decode straight into GPU memory.
* ``dali``: a DALI pipeline (``fn.decoders.video`` on the GPU) fed the clips' bytes and windows.
"""
from __future__ import annotations

import queue
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dfdc_fast.crops.resize import letterbox
from dfdc_fast.train.data import Sample, clip_start

LOADERS = ("auto", "pyav", "nvdec", "dali")


def window_indices(sample: Sample, length: int, rng: random.Random | None) -> list[int]:
    """Frame numbers of one clip window; a clip shorter than ``length`` repeats its last frame.
    The clip's length comes from the index, or from its header when the index lacks it."""
    if sample.frames > 0:
        n = sample.frames
    else:
        from dfdc_fast.io import read_header

        n = read_header(sample.path).num_frames
    start = clip_start(n, length, rng)
    idx = list(range(start, min(start + length, n)))
    return idx + [idx[-1]] * (length - len(idx))


def sample_rng(seed: int, epoch: int, position: int, train: bool) -> random.Random | None:
    """The random source of one item (None in validation: windows start at frame 0)."""
    return random.Random((seed * 1_000_003 + epoch) * 10_000_019 + position) if train else None


def read_item(sample: Sample, length: int, rng: random.Random | None, image_size: int | None,
              device: torch.device | str = "cpu", decoder: str = "pyav") -> torch.Tensor:
    """Decode one sample: a clip window ``(length, H, W, 3)`` or a letterboxed image."""
    if sample.frames == 0 and sample.path.lower().endswith((".jpg", ".jpeg", ".png")):
        from PIL import Image

        with Image.open(sample.path) as im:
            image = torch.from_numpy(np.asarray(im.convert("RGB")).copy())
        return letterbox(image, image_size) if image_size else image
    from dfdc_fast.io import Indices, read_video

    return read_video(sample.path, Indices(window_indices(sample, length, rng)), device=device, decoder=decoder).frames


class ClipDataset(torch.utils.data.Dataset):
    """Items of one epoch in a fixed order (``order`` from :func:`~dfdc_fast.train.data.balanced_epoch`)."""

    def __init__(self, samples: Sequence[Sample], order: Sequence[int], *, frames: int, image_size: int | None,
                 train: bool, seed: int, epoch: int):
        self.samples, self.order = samples, list(order)
        self.frames, self.image_size, self.train, self.seed, self.epoch = frames, image_size, train, seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int):
        s = self.samples[self.order[position]]
        rng = sample_rng(self.seed, self.epoch, position, self.train)
        return read_item(s, self.frames, rng, self.image_size), torch.tensor(float(s.label))


class PyavLoader:
    """DataLoader over :class:`ClipDataset`: CPU decode in worker processes, pinned batches."""

    name = "pyav"

    def __init__(self, dataset: ClipDataset, batch_size: int, device: torch.device, workers: int = 2,
                 drop_last: bool = True):
        self.device = device
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=drop_last,
            pin_memory=device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if workers else None,
        )

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for frames, labels in self._loader:
            yield frames.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


class NvdecLoader:
    """GPU decode with one NVDEC session per thread; clips never touch host memory.

    Each thread keeps its own reader (PyNvVideoCodec sessions are not shared across
    threads); ``prefetch`` batches are decoded ahead of the training step.
    """

    name = "nvdec"

    def __init__(self, dataset: ClipDataset, batch_size: int, device: torch.device, workers: int = 4,
                 prefetch: int = 2, drop_last: bool = True):
        if device.type != "cuda":
            raise ValueError("loader='nvdec' needs a CUDA device")
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.workers, self.prefetch, self.drop_last = workers, prefetch, drop_last
        self._local = threading.local()

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _read(self, position: int) -> torch.Tensor:
        from dfdc_fast.io.nvdec import NvdecReader
        from dfdc_fast.io import Indices

        if not hasattr(self._local, "reader"):
            self._local.reader = NvdecReader(self.device)
        ds = self.dataset
        s = ds.samples[ds.order[position]]
        idx = window_indices(s, ds.frames, sample_rng(ds.seed, ds.epoch, position, ds.train))
        frames = self._local.reader.read(s.path, Indices(idx)).frames
        torch.cuda.current_stream(self.device).synchronize()  # the batch is stacked on another thread
        return frames

    def __iter__(self):
        ds = self.dataset
        labels = torch.tensor([float(ds.samples[i].label) for i in ds.order])
        with ThreadPoolExecutor(self.workers) as pool:
            pending: queue.Queue = queue.Queue()
            batches = [list(range(b * self.batch_size, min((b + 1) * self.batch_size, len(ds))))
                       for b in range(len(self))]
            for b in batches[: self.prefetch]:
                pending.put((b, [pool.submit(self._read, p) for p in b]))
            for k in range(len(batches)):
                b, futures = pending.get()
                if k + self.prefetch < len(batches):
                    nb = batches[k + self.prefetch]
                    pending.put((nb, [pool.submit(self._read, p) for p in nb]))
                clips = torch.stack([f.result() for f in futures])
                yield clips, labels[b].to(self.device, non_blocking=True)


class DaliLoader:
    """DALI's GPU video decoder fed each clip's bytes and window (one pipeline run per batch).

    Unverified on a GPU: the GPU sessions so far could not carry DALI's 199 MB wheel.
    """

    name = "dali"

    def __init__(self, dataset: ClipDataset, batch_size: int, device: torch.device, workers: int = 4,
                 drop_last: bool = True):
        from dfdc_fast.io.dali import import_dali

        if device.type != "cuda":
            raise ValueError("loader='dali' decodes H.264 only on a CUDA device")
        dali, fn, types = import_dali()
        self.dataset, self.batch_size, self.device, self.drop_last = dataset, batch_size, device, drop_last

        @dali.pipeline_def(batch_size=batch_size, num_threads=workers, device_id=device.index or 0,
                           exec_dynamic=True, prefetch_queue_depth=1)
        def pipe():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, device="cpu")
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1, device="cpu")
            return fn.decoders.video(encoded, frames=frames, device="mixed")

        self._pipe = pipe()
        self._pipe.build()

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        ds = self.dataset
        for b in range(len(self)):
            positions = list(range(b * self.batch_size, min((b + 1) * self.batch_size, len(ds))))
            samples = [ds.samples[ds.order[p]] for p in positions]
            windows = [np.asarray(window_indices(s, ds.frames, sample_rng(ds.seed, ds.epoch, p, ds.train)), dtype=np.int32)
                       for s, p in zip(samples, positions)]
            if len(samples) < self.batch_size:  # DALI batches are fixed-size: pad, then cut
                pad = self.batch_size - len(samples)
                samples, windows = samples + [samples[-1]] * pad, windows + [windows[-1]] * pad
            self._pipe.feed_input("encoded", [np.fromfile(s.path, dtype=np.uint8) for s in samples])
            self._pipe.feed_input("frames", windows)
            (out,) = self._pipe.run()
            clips = torch.from_dlpack(out.as_tensor())[: len(positions)]
            labels = torch.tensor([float(s.label) for s in samples[: len(positions)]], device=self.device)
            yield clips, labels


def resolve_loader(name: str, device: torch.device, kind: str) -> str:
    """The loader ``auto`` means: DALI, else NVDEC, on a GPU for clips; PyAV otherwise."""
    if name not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {name!r}")
    if name != "auto":
        if kind == "2d" and name != "pyav":
            raise ValueError("2D crops are JPEG images: use loader='pyav' (a CPU DataLoader) for them")
        return name
    if device.type != "cuda" or kind == "2d":
        return "pyav"
    from dfdc_fast.io.dali import dali_available
    from dfdc_fast.io.nvdec import nvdec_available

    if dali_available():
        return "dali"
    if nvdec_available():
        return "nvdec"
    raise ImportError("loader='auto' on a GPU needs DALI (`pip install nvidia-dali-cuda130`) or PyNvVideoCodec "
                      "(`pip install pynvvideocodec`); or pass loader='pyav' to decode on the CPU")


def make_loader(name: str, dataset: ClipDataset, batch_size: int, device: torch.device, workers: int,
                drop_last: bool = True):
    """Build the loader ``name`` (already resolved) over one epoch's dataset."""
    if name == "pyav":
        return PyavLoader(dataset, batch_size, device, workers, drop_last)
    if name == "nvdec":
        return NvdecLoader(dataset, batch_size, device, max(1, workers), drop_last=drop_last)
    if name == "dali":
        return DaliLoader(dataset, batch_size, device, max(1, workers), drop_last)
    raise ValueError(f"unknown loader {name!r}")
