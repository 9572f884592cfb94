"""NVIDIA DALI decoding: ``fn.decoders.video`` on NVDEC (``device`` cuda, DALI's "mixed"
backend) or on the CPU (VP8/VP9/MJPEG only: DALI's bundled FFmpeg has no H.264).

:class:`DaliReader` serves ``read_video``; :func:`sequence_pipeline` builds the batched
clip reader that training uses (random or fixed clip starts over many files).

The GPU path is unverified until a GPU session runs ``tests/test_io_cuda.py``.
"""
from __future__ import annotations

from dfdc_fast.errors import DeviceUnavailable

import os
from typing import Sequence

import numpy as np
import torch

from dfdc_fast.io.base import VideoReader, rotate, with_count
from dfdc_fast.io.errors import VideoDecodeError, check_readable
from dfdc_fast.io.header import read_header
from dfdc_fast.io.selectors import SelectorLike, as_selector
from dfdc_fast.io.types import Video

#: Codecs DALI's CPU video decoder handles (its FFmpeg is built without H.264/HEVC).
DALI_CPU_CODECS = {"vp8", "vp9", "mjpeg"}

_INSTALL_HINT = "The 'dali' decoder needs NVIDIA DALI: `pip install nvidia-dali-cuda130` (CUDA 13 driver)."


def import_dali():
    """Import DALI's Python package or raise an ImportError that says what to install."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
    except (ImportError, RuntimeError, OSError) as exc:
        raise ImportError(f"{_INSTALL_HINT} Import failed with: {exc}") from exc
    return dali, fn, types


def dali_available() -> bool:
    try:
        import_dali()
    except ImportError:
        return False
    return True


def _to_torch(tensor, device: torch.device) -> torch.Tensor:
    """A DALI sample (CPU or GPU) as a torch tensor on ``device`` (DLPack on the GPU)."""
    if device.type == "cuda":
        return torch.from_dlpack(tensor).to(device)
    return torch.from_numpy(np.array(tensor)).to(device)


class DaliReader(VideoReader):
    """Decode single videos with DALI's ``fn.decoders.video``.

    The pipeline is built once per reader and fed each file's bytes and the frame
    indices to decode, so a reader is reused across videos like the other backends.
    """

    name = "dali"

    def __init__(self, device: torch.device | str = "cpu", num_threads: int = 2):
        super().__init__(device)
        self._dali, self._fn, self._types = import_dali()
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceUnavailable("decoder='dali' on a CUDA device needs a visible GPU")
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
        self.num_threads = num_threads
        self._pipe = None

    def _pipeline(self):
        if self._pipe is not None:
            return self._pipe
        dali, fn, types = self._dali, self._fn, self._types
        gpu = self.device.type == "cuda"

        @dali.pipeline_def(batch_size=1, num_threads=self.num_threads, device_id=self.device.index if gpu else None,
                           exec_dynamic=True, prefetch_queue_depth=1)
        def pipe():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, device="cpu")
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1, device="cpu")
            return fn.decoders.video(encoded, frames=frames, device="mixed" if gpu else "cpu")

        self._pipe = pipe()
        self._pipe.build()
        return self._pipe

    def read(self, path: str | os.PathLike, frames: SelectorLike = None) -> Video:
        path = check_readable(path)
        header = read_header(path, count_frames=True)  # DALI needs indices up front
        if self.device.type != "cuda" and header.codec not in DALI_CPU_CODECS:
            raise VideoDecodeError(
                path, f"DALI decodes {header.codec!r} only on the GPU (its CPU decoder handles {sorted(DALI_CPU_CODECS)})"
            )
        indices = as_selector(frames).resolve(header.num_frames)
        if indices.size == 0:
            raise VideoDecodeError(path, "no frame selected")
        pipe = self._pipeline()
        data = np.fromfile(path, dtype=np.uint8)
        try:
            pipe.feed_input("encoded", [data])
            pipe.feed_input("frames", [indices.astype(np.int32)])
            (out,) = pipe.run()
        except RuntimeError as exc:
            self._pipe = None  # a failed run can leave the pipeline in an error state
            raise VideoDecodeError(path, f"DALI decoding failed: {str(exc).strip().splitlines()[0]}") from exc
        clip = _to_torch(out[0], self.device)
        if clip.dim() != 4 or clip.shape[0] != indices.size:
            raise VideoDecodeError(path, f"DALI returned {tuple(clip.shape)} for {indices.size} frames")
        clip = rotate(clip, header.rotation)
        return Video(clip, torch.from_numpy(indices.copy()), with_count(header, header.num_frames, True), self.name)

    def close(self) -> None:
        self._pipe = None


def sequence_pipeline(
    files: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    sequence_length: int = 32,
    stride: int = 1,
    batch_size: int = 8,
    device: torch.device | str = "cuda",
    random_shuffle: bool = True,
    shard_id: int = 0,
    num_shards: int = 1,
    num_threads: int = 4,
    seed: int = 0,
):
    """A built DALI pipeline that yields batches of clips ``(B, F, H, W, 3)`` uint8 RGB
    (plus labels) from many files, each clip starting at a random position.

    Clips shorter than ``sequence_length`` are padded by repeating their last frame, so no
    file is dropped. Use :func:`iterate_sequences` to get torch tensors. On the CPU it
    decodes VP8/VP9/MJPEG only.
    """
    dali, fn, types = import_dali()
    device = torch.device(device)
    gpu = device.type == "cuda"
    files = [os.fspath(f) for f in files]
    if not files:
        raise ValueError("sequence_pipeline needs at least one file")
    labels = list(labels) if labels is not None else [0] * len(files)
    if len(labels) != len(files):
        raise ValueError(f"{len(files)} files but {len(labels)} labels")

    @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads,
                       device_id=(device.index or 0) if gpu else None, seed=seed)
    def pipe():
        video, label = fn.experimental.readers.video(
            filenames=files, labels=labels, sequence_length=sequence_length, stride=stride,
            step=-1, random_shuffle=random_shuffle, shard_id=shard_id, num_shards=num_shards,
            pad_mode="edge", device="gpu" if gpu else "cpu", name="Reader",
        )
        return video, label

    p = pipe()
    p.build()
    return p


def iterate_sequences(pipe, device: torch.device | str = "cuda"):
    """Yield ``(clips, labels)`` torch tensors from :func:`sequence_pipeline`, one epoch."""
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    it = DALIGenericIterator([pipe], ["video", "label"], reader_name="Reader", last_batch_policy=LastBatchPolicy.PARTIAL)
    for batch in it:
        yield batch[0]["video"], batch[0]["label"].reshape(-1)
