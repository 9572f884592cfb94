"""Batches of face clips (or crops) on the training device, decoded only around their window.

An epoch is an :class:`EpochPlan`: for every position, the clip, its label and the frame
numbers of its window, which depend only on ``(seed, epoch, position)``. Every loader
delivers the same plan as the same uint8 batches ``(B, T, H, W, 3)`` (``(B, H, W, 3)``
images for 2D) with float labels ``(B,)``, on ``device``, so the loaders are
interchangeable and a resumed run replays the epoch it stopped in.

* ``pyav``: DataLoader worker processes decode each window on the CPU from the keyframe
  before it (:func:`dfdc_fast.train.windows.decode_window`) into pinned batches; on a GPU a
  side stream copies them ahead into a ring of device batches.
* ``nvdec``: spawned worker processes, each owning one PyNvVideoCodec session, decode
  windows by frame index straight into a ring of uint8 batches in GPU memory that the
  training process shares with them (CUDA IPC); no frame passes through host memory.
* ``dali``: one DALI pipeline per epoch: an external source hands ``fn.decoders.video``
  each clip's bytes and window (NVDEC on a GPU; VP8/VP9/MJPEG only on the CPU), and DALI's
  prefetch queue keeps decoded batches ahead on the device.

Loaders live for the whole run (worker processes start once), :meth:`iterate` goes
through one plan, and :attr:`stats` counts decoded against delivered frames.
"""
from __future__ import annotations

import logging
import os
import queue
import random
import time
import traceback
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from dfdc_fast.train.data import Sample, clip_start
from dfdc_fast.train.windows import DecodeStats, decode_window, expected_decoded, packet_index

log = logging.getLogger("dfdc_fast.train")

LOADERS = ("auto", "pyav", "nvdec", "dali")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def window_indices(sample: Sample, length: int, rng: random.Random | None) -> list[int]:
    """Frame numbers of one clip window; a clip shorter than ``length`` repeats its last frame.
    The clip's length comes from the index, or from its packet index when the index lacks it."""
    n = sample.frames if sample.frames > 0 else packet_index(sample.path).num_frames
    start = clip_start(n, length, rng)
    idx = list(range(start, min(start + length, n)))
    return idx + [idx[-1]] * (length - len(idx))


def sample_rng(seed: int, epoch: int, position: int, train: bool) -> random.Random | None:
    """The random source of one item (None in validation: windows start at frame 0)."""
    return random.Random((seed * 1_000_003 + epoch) * 10_000_019 + position) if train else None


# ---------------------------------------------------------------------------------------------
# the plan of an epoch


@dataclass(frozen=True)
class Item:
    """One position of an epoch: a clip and its window (``window`` None for a 2D image).
    A 2D image with ``diff`` not None also returns Selim's cut-out inputs (landmarks, the
    kept diff pixels of each bit mask; ``diff`` "" when it has no mask)."""

    path: str
    label: float
    window: tuple | None = None
    landmarks: tuple | None = None
    diff: str | None = None


@dataclass(frozen=True)
class PairItem:
    """One of NTechLab's pairs: frames ``indices`` of the REAL and the FAKE clip, augmented
    alike from ``seed`` (training) or centre-cropped (``train`` False)."""

    real: str
    fake: str
    indices: tuple
    seed: int
    train: bool
    label: float = 0.5  # the target is drawn in the step (mixup); kept for the plan's labels


@dataclass
class EpochPlan:
    """Every item of one epoch, in order, and how they are cut into batches."""

    items: list
    batch_size: int
    drop_last: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def __len__(self) -> int:
        n = len(self.items)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch(self, k: int) -> list:
        return self.items[k * self.batch_size:(k + 1) * self.batch_size]

    @property
    def kind(self) -> str:
        if self.items and isinstance(self.items[0], PairItem):
            return "pairs"
        return "2d" if self.items and self.items[0].window is None else "3d"

    def labels(self) -> torch.Tensor:
        return torch.tensor([it.label for it in self.items], dtype=torch.float32)


def plan_epoch(samples: Sequence[Sample], order: Sequence[int], *, frames: int, batch_size: int, train: bool,
               seed: int, epoch: int, drop_last: bool = True, cutout: bool = False) -> EpochPlan:
    """The :class:`EpochPlan` of ``samples[order]``: windows drawn from ``(seed, epoch, position)``
    in training, starting at frame 0 in validation (``train=False``). ``cutout``: 2D items
    also deliver Selim's cut-out inputs."""
    items = []
    for position, i in enumerate(order):
        s = samples[i]
        if s.frames == 0 and s.path.lower().endswith(IMAGE_SUFFIXES):
            items.append(Item(s.path, float(s.label), landmarks=s.landmarks, diff=s.diff or "") if cutout
                         else Item(s.path, float(s.label)))
        else:
            rng = sample_rng(seed, epoch, position, train)
            items.append(Item(s.path, float(s.label), tuple(window_indices(s, frames, rng))))
    return EpochPlan(items, batch_size, drop_last)


def plan_pairs(pairs: Sequence, order: Sequence[int], *, indices: Sequence[int], batch_size: int, train: bool,
               seed: int, epoch: int, drop_last: bool = True) -> EpochPlan:
    """The :class:`EpochPlan` of NTechLab's pairs ``pairs[order]``: each item's augmentation
    (and re-encode) seed depends on ``(seed, epoch, position)`` only."""
    items = []
    for position, i in enumerate(order):
        p = pairs[i]
        rng = sample_rng(seed, epoch, position, True)
        items.append(PairItem(p.real, p.fake, tuple(int(k) for k in indices), rng.getrandbits(62), train))
    return EpochPlan(items, batch_size, drop_last)


def read_item(item, image_size: int | None = None, out: np.ndarray | None = None,
              pair_options: dict | None = None) -> tuple:
    """Decode one item on the CPU: ``(frames, decoded, expected, seek_misses, extras)``; a window
    ``(T, H, W, 3)`` from the keyframe before it, a letterboxed image (``decoded`` None), or a
    pair ``(2, T, H, W, 3)``. ``extras`` is None or a dict of arrays (cut-out inputs)."""
    if isinstance(item, PairItem):
        return read_pair(item, pair_options or {}), None, 0, 0, None
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


_AUTOAUGMENT: dict = {}


def _autoaugment(crop: tuple):
    """timm's AutoAugment ``original-mstd0.5`` as NTechLab built it (translate 45% of the
    shorter crop side, ImageNet mean fill); one per process."""
    key = tuple(crop)
    if key not in _AUTOAUGMENT:
        from timm.data.auto_augment import auto_augment_transform

        mean = (0.485, 0.456, 0.406)
        _AUTOAUGMENT[key] = auto_augment_transform(
            "original-mstd0.5", {"translate_const": int(min(crop) * 0.45), "img_mean": tuple(round(255 * x) for x in mean)})
    return _AUTOAUGMENT[key]


def read_pair(item: PairItem, options: dict) -> np.ndarray:
    """uint8 ``(2, T, ch, cw, 3)``: the REAL and FAKE frames of a pair after NTechLab's
    training pipeline (re-encode with p 0.5, shorter side to ``min_size``, flip, random
    ``crop``, AutoAugment), one random state for both clips; validation: resize and centre
    crop only. ``options``: crop, min_size, reencode (Reencode kwargs), autoaugment, same_aug."""
    import random

    import cv2

    from dfdc_fast.augment.reencode import Reencode, map_indices, reencode

    rng = random.Random(item.seed)
    crop = tuple(int(v) for v in options.get("crop", (224, 192)))
    min_size = int(options.get("min_size", 224))
    index = packet_index(item.real)
    n, h, w = index.num_frames, index.height, index.width
    params = None
    if item.train and options.get("reencode"):
        params = Reencode(**options["reencode"]).sample(rng, 30.0, h, w)  # their clips: 30 fps
    clips = []
    for path in (item.real, item.fake):
        if params is None:
            frames, _, _ = decode_window(path, list(item.indices))
        else:
            whole, _, _ = decode_window(path, list(range(n)))
            coded = reencode(whole, 30.0, params)
            frames = coded[map_indices(item.indices, n, len(coded))]
        clips.append(frames)
    if clips[0].shape != clips[1].shape:
        raise ValueError(f"pair clips differ in shape: {item.real} {clips[0].shape}, {item.fake} {clips[1].shape}")
    t, fh, fw = clips[0].shape[:3]
    scale = min_size / min(fh, fw)
    nh, nw = max(crop[0], round(fh * scale)), max(crop[1], round(fw * scale))
    same = bool(options.get("same_aug", True))
    p_aa = float(options.get("autoaugment", 0.0)) if item.train else 0.0

    def draw():
        if not item.train:
            return False, (nh - crop[0]) // 2, (nw - crop[1]) // 2, False, 0
        return (rng.random() < 0.5, rng.randint(0, nh - crop[0]), rng.randint(0, nw - crop[1]), rng.random() < p_aa,
                rng.getrandbits(62))

    states = [draw()] * t if same else [draw() for _ in range(t)]
    out = np.empty((2, t, crop[0], crop[1], 3), dtype=np.uint8)
    for c, frames in enumerate(clips):
        for i in range(t):
            flip, y0, x0, aa, aa_seed = states[i]
            img = cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_LINEAR)  # albumentations' SmallestMaxSize
            if flip:
                img = img[:, ::-1]
            img = np.ascontiguousarray(img[y0:y0 + crop[0], x0:x0 + crop[1]])
            if aa:
                from PIL import Image

                random.seed(aa_seed)  # timm's AutoAugment draws from `random`: the same ops on every frame
                img = np.asarray(_autoaugment(crop)(Image.fromarray(img)))
            out[c, i] = img
    return out


# ---------------------------------------------------------------------------------------------
# pyav: DataLoader workers on the CPU


class _ItemDataset(torch.utils.data.Dataset):
    """Decodes the :class:`Item` it is indexed with (the batch sampler hands out items)."""

    def __init__(self, image_size: int | None, pair_options: dict | None = None):
        self.image_size = image_size
        self.pair_options = pair_options or {}

    def __getitem__(self, item: Item):
        frames, decoded, expected, misses, extras = read_item(item, self.image_size, pair_options=self.pair_options)
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


def _collate(batch):
    frames, labels, decoded, expected, misses, extras = zip(*batch)
    stats = (list(decoded), list(expected), list(misses))
    if extras[0] is not None:
        stats += ({k: torch.from_numpy(np.stack([e[k] for e in extras])) for k in extras[0]},)
    return torch.stack(frames), torch.tensor(labels, dtype=torch.float32), stats


class DevicePrefetcher:
    """Copies host batches to ``device`` on a side stream, ``depth`` batches ahead of the
    consumer (timm's PrefetchLoader idea); a pass-through on the CPU."""

    def __init__(self, device: torch.device, depth: int = 2):
        self.device, self.depth = device, max(1, depth)

    def __call__(self, batches: Iterator):
        if self.device.type != "cuda":
            yield from batches
            return
        stream = torch.cuda.Stream(self.device)
        ahead: list = []
        for host_batch in batches:
            frames, labels, extra = host_batch
            with torch.cuda.stream(stream):
                if len(extra) > 3:  # cut-out inputs travel with the batch
                    extra = extra[:3] + ({k: v.to(self.device, non_blocking=True) for k, v in extra[3].items()},)
                ahead.append((frames.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), extra))
            if len(ahead) > self.depth:
                yield self._hand_over(stream, ahead.pop(0))
        while ahead:
            yield self._hand_over(stream, ahead.pop(0))

    def _hand_over(self, stream, batch):
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(stream)
        frames, labels, extra = batch
        frames.record_stream(current)
        labels.record_stream(current)
        for v in (extra[3].values() if len(extra) > 3 else ()):
            v.record_stream(current)
        return frames, labels, extra


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

    def iterate(self, plan: EpochPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if len(plan) == 0:
            return
        self._sampler.plan = plan
        for frames, labels, (decoded, expected, misses, *extras) in self._prefetch(iter(self._loader)):
            for d, e, m in zip(decoded, expected, misses):
                if d is not None:
                    self.stats.add(d, frames.shape[1], e, m)
            yield (frames, labels, extras[0]) if extras else (frames, labels)

    def close(self) -> None:
        it = getattr(self._loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._loader._iterator = None


# ---------------------------------------------------------------------------------------------
# nvdec: decoder processes writing into a shared ring of device batches


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

    def iterate(self, plan: EpochPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
                yield self._ring[slot, :rows], labels[k * plan.batch_size:k * plan.batch_size + rows]
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


# ---------------------------------------------------------------------------------------------
# dali: fn.decoders.video fed windows


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

    def iterate(self, plan: EpochPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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
                yield frames, labels[k * plan.batch_size:k * plan.batch_size + rows]
        finally:
            del pipe

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------


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
                pair_options: dict | None = None):
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
