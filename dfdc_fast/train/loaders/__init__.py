"""Batches of face clips (or crops, or pairs) on the training device, decoded only around their window.

Every loader takes an :class:`~dfdc_fast.train.plan.EpochPlan` and delivers the same
:class:`~dfdc_fast.train.batch.Batch` objects for it (uint8 ``(B, T, H, W, 3)`` clips,
``(B, H, W, 3)`` images, float labels ``(B,)``) on ``device``, so the loaders are
interchangeable and a resumed run replays the epoch it stopped in:

* ``pyav`` (:mod:`.pyav`): DataLoader worker processes decoding on the CPU;
* ``nvdec`` (:mod:`.nvdec`): decoder processes filling a ring of batches in GPU memory;
* ``dali`` (:mod:`.dali`): DALI's video decoder fed each window.

Loaders live for the whole run (worker processes start once), :meth:`iterate` goes
through one plan, and :attr:`stats` counts decoded against delivered frames. The names
of the single module this package replaces are all importable from here.
"""
from __future__ import annotations

import torch

from dfdc_fast.augment.pairs import PairAugment, PairOptions
from dfdc_fast.train.batch import Batch, WindowCounts
from dfdc_fast.train.config import LOADERS
from dfdc_fast.train.loaders.dali import DaliLoader
from dfdc_fast.train.loaders.nvdec import NvdecLoader, NvdecWindowDecoder
from dfdc_fast.train.loaders.pyav import DevicePrefetcher, PyavLoader, cutout_inputs, pair_augment, read_item
from dfdc_fast.train.plan import (IMAGE_SUFFIXES, EpochPlan, Item, PairItem, epoch_order, pair_epoch_order, plan_epoch,
                                  plan_pairs, sample_rng, window_indices)
from dfdc_fast.train.windows import DecodeStats, decode_window, expected_decoded, packet_index  # noqa: F401


def read_pair(item: PairItem, options: dict | PairOptions | None = None):
    """One of NTechLab's pairs prepared as ``options`` say (:class:`PairAugment`)."""
    return pair_augment(options)(item)


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


def make_loader(name: str, device: torch.device, workers: int, prefetch: int = 2, image_size: int | None = None,
                pair_options: PairOptions | dict | None = None):
    """Build the loader ``name`` (already resolved); it serves every epoch of a run.
    ``image_size`` letterboxes 2D crops, ``pair_options`` prepares NTechLab's pairs (PyAV
    loader only: both decode and augment in its CPU worker processes)."""
    device = torch.device(device)
    if pair_options is not None and name != "pyav":
        raise ValueError(f"NTechLab's pairs are re-encoded and augmented in CPU workers: use loader='pyav', got {name!r}")
    if name == "pyav":
        return PyavLoader(device, workers, prefetch, image_size, pair_options)
    if name == "nvdec":
        return NvdecLoader(device, max(1, workers), prefetch)
    if name == "dali":
        return DaliLoader(device, max(1, workers), prefetch)
    raise ValueError(f"unknown loader {name!r}; allowed: pyav, nvdec, dali")


__all__ = ["Batch", "DaliLoader", "DevicePrefetcher", "EpochPlan", "IMAGE_SUFFIXES", "Item", "LOADERS", "NvdecLoader",
           "NvdecWindowDecoder", "PairAugment", "PairItem", "PairOptions", "PyavLoader", "WindowCounts", "cutout_inputs",
           "epoch_order", "make_loader", "pair_epoch_order", "plan_epoch", "plan_pairs", "read_item", "read_pair",
           "resolve_loader", "sample_rng", "window_indices", "DecodeStats", "decode_window", "expected_decoded",
           "packet_index"]
