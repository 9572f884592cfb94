"""The ``pyav`` loader: DataLoader worker processes decode each item on the CPU.

A clip window is decoded from the keyframe before it
(:func:`dfdc_fast.train.windows.decode_window`), a 2D crop is letterboxed (with Selim's
cut-out inputs when asked), one of NTechLab's pairs is prepared by
:class:`~dfdc_fast.augment.pairs.PairAugment`; batches are pinned, and on a GPU a side
stream copies them ahead into device batches (timm's PrefetchLoader idea).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from dfdc_fast.augment.pairs import PairAugment, PairOptions
from dfdc_fast.train.batch import Batch, WindowCounts
from dfdc_fast.train.plan import EpochPlan, Item, PairItem
from dfdc_fast.train.windows import DecodeStats, decode_window, expected_decoded, packet_index


def _decode_frames(path: str, indices: list) -> np.ndarray:
    """The frames ``indices`` of a clip, decoded from the keyframe before them."""
    frames, _, _ = decode_window(path, indices)
    return frames


def _clip_shape(path: str) -> tuple:
    index = packet_index(path)
    return index.num_frames, index.height, index.width


def pair_augment(options: dict | PairOptions | None) -> PairAugment:
    """NTechLab's pair preparation reading clips with the keyframe-seeking decoder."""
    return PairAugment(options, decode=_decode_frames, probe=_clip_shape)


def read_item(item, image_size: int | None = None, out: np.ndarray | None = None,
              pair_options: dict | PairOptions | PairAugment | None = None) -> tuple:
    """Decode one item on the CPU: ``(frames, decoded, expected, seek_misses, extras)``; a window
    ``(T, H, W, 3)`` from the keyframe before it, a letterboxed image (``decoded`` None), or a
    pair ``(2, T, H, W, 3)`` (:class:`~dfdc_fast.augment.pairs.PairAugment`). ``extras`` is None
    or a dict of arrays (cut-out inputs)."""
    if isinstance(item, PairItem):
        augment = pair_options if isinstance(pair_options, PairAugment) else pair_augment(pair_options)
        return augment(item), None, 0, 0, None
    if item.window is None:
        from PIL import Image

        from dfdc_fast.crops.resize import letterbox

        with Image.open(item.path) as im:
            image = torch.from_numpy(np.asarray(im.convert("RGB")).copy())
        h, w = image.shape[:2]
        extras = None
        if item.diff is not None:
            extras = cutout_inputs(item, h, w, image_size)
        image = letterbox(image, image_size) if image_size else image
        return image.numpy(), None, 0, 0, extras
    frames, decoded, misses = decode_window(item.path, item.window, out=out)
    return frames, decoded, expected_decoded(packet_index(item.path), item.window), misses, None


def cutout_inputs(item: Item, h: int, w: int, size: int | None) -> dict:
    """Selim's cut-out inputs of a crop, in its letterboxed pixels: landmarks, whether it has
    them, the six bit masks' kept diff pixels (counted at native size), the bit masks' split
    point and the letterbox scale."""
    from dfdc_fast.augment.cutout import bit_mask_counts

    if size:
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (size - nh) // 2, (size - nw) // 2
        sx, sy = nw / w, nh / h
    else:
        scale, top, left, sx, sy = 1.0, 0, 0, 1.0, 1.0
    diff = None
    if item.diff:
        from PIL import Image

        with Image.open(item.diff) as im:
            diff = np.asarray(im.convert("L"))
    has = item.landmarks is not None
    points = np.asarray(item.landmarks if has else [0.0] * 10, dtype=np.float32).reshape(5, 2)
    points = (points + 0.5) * np.array([sx, sy], np.float32) + np.array([left, top], np.float32)  # pixel centres
    mid = w // 2  # his split, width for both axes
    return {"landmarks": points, "has_landmarks": np.bool_(has), "diff_counts": bit_mask_counts(diff, h, w),
            "bit_mid": np.array([left + mid * sx, top + mid * sy], np.float32), "scale": np.float32(scale)}


class _ItemDataset(torch.utils.data.Dataset):
    """Decodes the :class:`Item` it is indexed with (the batch sampler hands out items)."""

    def __init__(self, image_size: int | None, pair_options: dict | PairOptions | None = None):
        self.image_size = image_size
        self.pairs = pair_augment(pair_options)

    def __getitem__(self, item: Item):
        frames, decoded, expected, misses, extras = read_item(item, self.image_size, pair_options=self.pairs)
        return torch.from_numpy(frames), item.label, decoded, expected, misses, extras


class _PlanBatches:
    """A batch sampler over whichever plan is current (persistent workers keep their dataset)."""

    def __init__(self):
        self.plan: EpochPlan | None = None

    def __iter__(self):
        for k in range(len(self.plan)):
            yield self.plan.batch(k)

    def __len__(self) -> int:
        return len(self.plan)


def _collate(batch) -> Batch:
    frames, labels, decoded, expected, misses, extras = zip(*batch)
    stacked = None
    if extras[0] is not None:
        stacked = {k: torch.from_numpy(np.stack([e[k] for e in extras])) for k in extras[0]}
    return Batch(torch.stack(frames), torch.tensor(labels, dtype=torch.float32), stacked,
                 WindowCounts(list(decoded), list(expected), list(misses)))


class DevicePrefetcher:
    """Copies host batches to ``device`` on a side stream, ``depth`` batches ahead of the
    consumer (timm's PrefetchLoader idea); a pass-through on the CPU."""

    def __init__(self, device: torch.device, depth: int = 2):
        self.device, self.depth = device, max(1, depth)

    def __call__(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if self.device.type != "cuda":
            yield from batches
            return
        stream = torch.cuda.Stream(self.device)
        ahead: list[Batch] = []
        for host_batch in batches:
            with torch.cuda.stream(stream):
                ahead.append(host_batch.to(self.device, non_blocking=True))
            if len(ahead) > self.depth:
                yield self._hand_over(stream, ahead.pop(0))
        while ahead:
            yield self._hand_over(stream, ahead.pop(0))

    def _hand_over(self, stream, batch: Batch) -> Batch:
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(stream)
        batch.record_stream(current)
        return batch


class PyavLoader:
    """CPU decoding in DataLoader worker processes (persistent across epochs), pinned batches,
    and on a GPU a side-stream prefetch of ``prefetch`` device batches. 2D images are
    letterboxed to ``image_size``."""

    name = "pyav"

    def __init__(self, device: torch.device, workers: int = 2, prefetch: int = 2, image_size: int | None = None,
                 pair_options: dict | None = None):
        self.device = torch.device(device)
        self.stats = DecodeStats()
        self._sampler = _PlanBatches()
        self._loader = torch.utils.data.DataLoader(
            _ItemDataset(image_size, pair_options), batch_sampler=self._sampler, num_workers=workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=prefetch if workers else None,
        )
        self._prefetch = DevicePrefetcher(self.device, prefetch)

    def iterate(self, plan: EpochPlan) -> Iterator[Batch]:
        if len(plan) == 0:
            return
        self._sampler.plan = plan
        for batch in self._prefetch(iter(self._loader)):
            counts = batch.counts
            for d, e, m in zip(counts.decoded, counts.expected, counts.misses):
                if d is not None:
                    self.stats.add(d, batch.frames.shape[1], e, m)
            yield batch

    def close(self) -> None:
        it = getattr(self._loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._loader._iterator = None
