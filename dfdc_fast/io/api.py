"""One reading API over the backends: ``read_video``, ``open_reader``, ``read_videos``."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import os
import threading
from typing import Iterable, Iterator, Union

import torch

from dfdc_fast.io.base import VideoReader
from dfdc_fast.io.errors import VideoDecodeError
from dfdc_fast.io.selectors import SelectorLike
from dfdc_fast.io.types import Video

log = logging.getLogger("dfdc_fast.io")

DECODERS = ("auto", "nvdec", "dali", "pyav")


def resolve_decoder(decoder: str, device: torch.device | str = "cpu", *, announce: bool = True) -> str:
    """The concrete backend for ``decoder`` on ``device``.

    ``auto`` picks ``nvdec`` for a CUDA device when PyNvVideoCodec works, then ``dali``,
    else ``pyav`` (CPU decoding, frames then copied to the device); it logs what it chose.
    A named backend is returned as is and fails at use if it is not installed.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}; allowed: {', '.join(DECODERS)}")
    if decoder != "auto":
        return decoder
    device = torch.device(device)
    if device.type == "cuda":
        from dfdc_fast.io import nvdec

        if nvdec.nvdec_available():
            choice, why = "nvdec", "CUDA device and PyNvVideoCodec available"
        else:
            from dfdc_fast.io.dali import dali_available

            problem = nvdec.nvdec_problem() or "PyNvVideoCodec unusable"
            if dali_available() and torch.cuda.is_available():
                choice, why = "dali", f"CUDA device, NVDEC unusable ({problem}), DALI available"
            else:
                choice, why = "pyav", f"no GPU decoder usable: {problem}; DALI not usable either; decoding on the CPU"
    else:
        choice, why = "pyav", f"device is {device.type}"
    if announce:
        _announce(choice, why)
    return choice


def check_decoder(decoder: str, device: torch.device | str = "cpu") -> None:
    """Refuse, in one line, a named backend this machine cannot run (before a job writes
    anything), instead of every video failing with the same error later. ``auto`` always
    works: it falls back to PyAV, and says so."""
    from dfdc_fast.errors import ConfigError, DeviceUnavailable

    if decoder not in DECODERS:
        raise ConfigError(f"--decoder {decoder!r}; allowed: {', '.join(DECODERS)}")
    device = torch.device(device)
    if decoder == "nvdec":
        if device.type != "cuda":
            raise ConfigError(f"--decoder nvdec decodes into GPU memory: it needs --device cuda, got {device}")
        from dfdc_fast.io.nvdec import nvdec_problem

        problem = nvdec_problem()
        if problem is not None:
            raise DeviceUnavailable(f"--decoder nvdec: {problem}; --decoder pyav decodes on the CPU")
    elif decoder == "dali":
        from dfdc_fast.io.dali import import_dali

        try:
            import_dali()
        except ImportError as exc:
            raise DeviceUnavailable(f"--decoder dali: {str(exc).strip().splitlines()[0]}") from None


_announced: set = set()


def _announce(choice: str, why: str) -> None:
    key = (choice, why)
    if key not in _announced:
        _announced.add(key)
        (log.warning if "CPU" in why else log.info)("decoder=auto chose %r (%s)", choice, why)


def open_reader(decoder: str = "auto", device: torch.device | str = "cpu", **options) -> VideoReader:
    """A reusable reader for ``decoder`` on ``device`` (see :func:`read_video` for the layout).

    Options are backend specific: ``threads`` (pyav), ``batch``/``cache_size`` (nvdec),
    ``num_threads`` (dali).
    """
    name = resolve_decoder(decoder, device)
    if name == "pyav":
        from dfdc_fast.io.pyav import PyAVReader

        return PyAVReader(device, **options)
    if name == "nvdec":
        from dfdc_fast.io.nvdec import NvdecReader

        return NvdecReader(device, **options)
    from dfdc_fast.io.dali import DaliReader

    return DaliReader(device, **options)


_local = threading.local()


def _cached_reader(decoder: str, device: torch.device) -> VideoReader:
    """One reader per (thread, backend, device): decoder sessions are reused across calls."""
    cache = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = {}
    key = (decoder, str(device))
    if key not in cache:
        cache[key] = open_reader(decoder, device)
    return cache[key]


def read_video(
    path: Union[str, os.PathLike],
    frames: SelectorLike = None,
    *,
    device: torch.device | str = "cpu",
    decoder: str = "auto",
) -> Video:
    """Decode frames of one video.

    Args:
        path: a video file.
        frames: which frames: ``None`` (all), ``Every(n)``, ``First(n)``, ``Evenly(k)``,
            ``Chunk(i, size=150)``, ``Indices([...])`` or a list of ints.
        device: where the frames are returned. With ``nvdec``/``dali`` on a CUDA device the
            frames never pass through host memory.
        decoder: ``"auto" | "nvdec" | "dali" | "pyav"``.

    Returns:
        :class:`Video` with ``frames`` uint8 ``(T, H, W, 3)`` RGB on ``device`` (display
        orientation: portrait stays portrait, rotation metadata applied), ``indices`` the
        absolute frame numbers, and ``info`` (fps, size, frame count, rotation, codec).

    Raises:
        VideoDecodeError: missing, empty, truncated, non-video, audio-only or corrupt file.
        ValueError: a bad argument, or a selection that does not fit the video.
        ImportError: the chosen backend is not installed (the message says what to install).
    """
    device = torch.device(device)
    return _cached_reader(resolve_decoder(decoder, device), device).read(path, frames)


ReadResult = Union[Video, VideoDecodeError]


def read_videos(
    paths: Iterable[Union[str, os.PathLike]],
    frames: SelectorLike = None,
    *,
    device: torch.device | str = "cpu",
    decoder: str = "auto",
    workers: int = 1,
    prefetch: int = 2,
    catch_all: bool = False,
) -> Iterator[tuple[str, ReadResult]]:
    """Decode many videos, ``workers`` at a time, yielding ``(path, Video)`` in input order.

    Each worker thread owns one reader, so ``decoder="nvdec", workers=N`` runs N NVDEC
    sessions at once. A bad video yields ``(path, VideoDecodeError)`` instead of stopping
    the run; with ``catch_all=True`` so does any other exception (jobs that must finish,
    like inference, record it as the video's error). At most ``workers * prefetch``
    decoded videos are held in memory.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    device = torch.device(device)
    name = resolve_decoder(decoder, device)

    def work(path) -> tuple[str, ReadResult]:
        path = os.fspath(path)
        try:
            return path, _cached_reader(name, device).read(path, frames)
        except VideoDecodeError as exc:
            return path, exc
        except Exception as exc:
            if not catch_all:
                raise
            return path, exc

    if workers == 1:
        for p in paths:
            yield work(p)
        return
    pending: collections.deque = collections.deque()
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"dfdc-{name}") as pool:
        for p in paths:
            pending.append(pool.submit(work, p))
            if len(pending) >= workers * prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
