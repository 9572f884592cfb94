"""What each kind of training sample needs from the loop: the task objects.

A task owns what differs between NTechLab's pairs, 2D crops and 3D clips: which file it
reads its samples from, how many items an epoch holds, the epoch's plan (order, windows,
augmentation seeds), what the loader is told and how the hold-out is scored. The loop in
:func:`dfdc_fast.train.train` is the same for all three and never asks which one it has.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from dfdc_fast.augment.pairs import PairOptions
from dfdc_fast.models import ModelSpec, normalize
from dfdc_fast.train.config import TrainConfig
from dfdc_fast.train.data import (balanced_epoch, read_clip_index, read_crops_csv, read_pairs_csv, split_by_fold,
                                  split_samples)
from dfdc_fast.train.plan import EpochPlan, epoch_order, pair_epoch_order, plan_epoch, plan_pairs
from dfdc_fast.train.step import to_unit_float


def read_training_data(config: TrainConfig, kind: str) -> list:
    """The samples ``config.dataset`` names: index.csv clips or crops, Selim's crops.csv or
    NTechLab's pairs.csv."""
    if config.dataset == "pairs":
        return read_pairs_csv(config.data)
    if config.dataset == "crops_csv":
        if kind != "2d":
            raise ValueError(f"dataset crops_csv holds 2D crops, but {config.model} is a {kind} model")
        return read_crops_csv(config.data)
    return read_clip_index(config.data, kind)


def split_training_data(config: TrainConfig, samples: list) -> tuple[list, list]:
    """(train, val): fold ``val_fold`` held out (Selim's 0), else DFDC parts / a fraction of
    the original-video groups; validation keeps crops of frames that are multiples of
    ``val_frame_every`` (Selim: 20)."""
    if config.val_fold is not None:
        train, val = split_by_fold(samples, config.val_fold)
    else:
        train, val = split_samples(samples, val_parts=config.val_parts, val_fraction=config.val_fraction,
                                   seed=config.seed)
    if config.val_frame_every:
        val = [s for s in val if getattr(s, "frame", -1) >= 0 and s.frame % config.val_frame_every == 0]
    return train, val


@torch.no_grad()
def predict_pairs(model, pairs, *, spec, indices, loader, batch_size: int, device: torch.device, dtype):
    """``(videos, labels, probs)``: each pair's REAL and FAKE clip scored apart (centre crop,
    no mixup; a frame model's frames averaged), labels 0 and 1."""
    model.eval()
    plan = plan_pairs(pairs, range(len(pairs)), indices=indices, batch_size=batch_size, train=False, seed=0, epoch=0,
                      drop_last=False)
    probs: list[torch.Tensor] = []
    for batch in loader.iterate(plan):
        batch = batch.frames
        b, two, t, h, w, _ = batch.shape
        x = batch.reshape(b * two, t, h, w, 3).permute(0, 4, 1, 2, 3).float().div_(255.0)  # (2B, 3, T, H, W)
        if spec.kind == "2d":
            x = x.permute(0, 2, 1, 3, 4).reshape(b * two * t, 3, h, w)
        x = normalize(x, spec)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            logits = model(x)
        p = torch.sigmoid(logits.float().reshape(len(x), -1)[:, 0])
        probs.append(p.reshape(b * two, -1).mean(1) if spec.kind == "2d" else p)
    flat = torch.cat(probs).tolist() if probs else []
    videos = [v for p in pairs for v in (p.real_video, p.fake_video)]
    labels = [y for _ in pairs for y in (0, 1)]
    return videos, labels, flat


@torch.no_grad()
def predict_samples(model, samples, *, spec, frames: int, eval_tf, loader, batch_size: int,
                    device: torch.device, dtype) -> list[float]:
    """Probability of FAKE for each sample (clip window from frame 0, no augmentation); the
    probabilities stay on the device until the end (one host read)."""
    model.eval()
    plan = plan_epoch(samples, range(len(samples)), frames=frames, batch_size=batch_size, train=False, seed=0,
                      epoch=0, drop_last=False)
    probs: list[torch.Tensor] = []
    for batch, _ in loader.iterate(plan):
        x = to_unit_float(batch)
        if eval_tf is not None:
            x = eval_tf(x)
        x = normalize(x, spec)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            logits = model(x)
        probs.append(torch.sigmoid(logits.float().reshape(len(x), -1)[:, 0]))
    return torch.cat(probs).tolist() if probs else []


class ClipTask:
    """Face clips of ``index.csv`` for a 3D model: balanced epochs of random windows,
    validation on each clip's first window."""

    kind = "clips"

    def __init__(self, config: TrainConfig, spec: ModelSpec):
        self.config, self.spec = config, spec
        self.frames = config.frames or spec.frames
        self.size = config.input_size or spec.input_size

    def read(self) -> list:
        return read_training_data(self.config, self.spec.kind)

    def split(self, samples: list) -> tuple[list, list]:
        return split_training_data(self.config, samples)

    def truth(self, val: list) -> tuple[list, list]:
        """(video, label) of each scored hold-out item."""
        return [s.video for s in val], [s.label for s in val]

    def epoch_items(self, train: list) -> int:
        return len(balanced_epoch(train, 0, seed=self.config.seed, mode=self.config.balance))

    def loader_name(self, resolve) -> str:
        return resolve(self.config.loader)

    def loader_options(self) -> dict:
        return {}

    def plan(self, train: list, epoch: int, items: int, *, rank: int = 0, world: int = 1) -> EpochPlan:
        c = self.config
        order = epoch_order(train, epoch, items, seed=c.seed, mode=c.balance)
        return plan_epoch(train, order[rank::world], frames=self.frames, batch_size=c.batch_size, train=True,
                          seed=c.seed, epoch=epoch, cutout=bool(c.cutout))

    def predict(self, model, val: list, *, loader, eval_tf, device: torch.device, dtype) -> tuple[list, list, list]:
        probs = predict_samples(model, val, spec=self.spec, frames=self.frames, eval_tf=eval_tf, loader=loader,
                                batch_size=self.config.batch_size, device=device, dtype=dtype)
        return (*self.truth(val), probs)


class CropTask(ClipTask):
    """Face crops for a 2D model (``index.csv`` crops, or Selim's ``crops.csv`` with
    landmarks and diffs for his cut-outs), letterboxed to the input size by the loader."""

    kind = "crops"

    def loader_options(self) -> dict:
        return {"image_size": self.size}


class PairTask(ClipTask):
    """NTechLab's aligned REAL/FAKE pairs: every pair once per epoch, reshuffled; both clips
    prepared alike in the loader's CPU workers; a pair scores its REAL (0) and FAKE (1) clip."""

    kind = "pairs"

    def __init__(self, config: TrainConfig, spec: ModelSpec):
        super().__init__(config, spec)
        self.frames = len(config.pair_frames)

    def truth(self, val: list) -> tuple[list, list]:
        return [v for p in val for v in (p.real_video, p.fake_video)], [y for _ in val for y in (0, 1)]

    def epoch_items(self, train: list) -> int:
        return len(train)

    def loader_name(self, resolve) -> str:
        return "pyav"  # re-encode and augmentation run in its CPU workers (the config allows no other)

    def loader_options(self) -> dict:
        c = self.config
        return {"pair_options": PairOptions(crop=tuple(c.pair_crop), min_size=c.pair_min_size, reencode=c.pair_reencode,
                                            autoaugment=c.pair_autoaugment, same_aug=c.pair_same_aug)}

    def plan(self, train: list, epoch: int, items: int, *, rank: int = 0, world: int = 1) -> EpochPlan:
        c = self.config
        order = pair_epoch_order(len(train), epoch, items, seed=c.seed)
        return plan_pairs(train, order[rank::world], indices=c.pair_frames, batch_size=c.batch_size, train=True,
                          seed=c.seed, epoch=epoch)

    def predict(self, model, val: list, *, loader, eval_tf, device: torch.device, dtype) -> tuple[list, list, list]:
        return predict_pairs(model, val, spec=self.spec, indices=self.config.pair_frames, loader=loader,
                             batch_size=self.config.batch_size, device=device, dtype=dtype)


def make_task(config: TrainConfig, spec: ModelSpec) -> ClipTask:
    """The task of ``config``'s samples: pairs, crops (a 2D model) or clips."""
    if config.dataset == "pairs":
        return PairTask(config, spec)
    return CropTask(config, spec) if spec.kind == "2d" else ClipTask(config, spec)


__all__ = ["ClipTask", "CropTask", "PairTask", "make_task", "predict_pairs", "predict_samples", "read_training_data",
           "split_training_data"]
