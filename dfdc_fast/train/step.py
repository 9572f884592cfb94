"""One training step that never waits for the device.

A step turns a uint8 batch into float, augments each clip on the device, optionally 3D-CutMixes
the batch, normalises it, runs forward and backward under autocast and steps the optimiser.
Nothing in it reads a device value on the host:

* the loss is summed into a device tensor; :meth:`TrainStep.read` returns the running mean
  with one host read, which the loop does every ``log_every`` steps and at the end of an epoch;
* augmentation and CutMix parameters are drawn from a CPU generator (seeded per epoch) and
  copied to the device without waiting, and whether a batch gets CutMix is drawn on the host
  (a ``random.Random`` per epoch); CutMix's lambda stays a device tensor inside the loss;
* the optimiser is torch's fused implementation where it has one, whose step counters live
  on the device (the for-each one reads them on the host).

Exceptions, by design or outside this module: ``amp: fp16`` (``GradScaler.step`` reads
whether gradients overflowed, one sync per step; bf16, the default on GPUs that have it,
needs no scaler), and Gaussian noise augmentation (``noise_p > 0``), whose per-batch seed
``dfdc_fast.augment`` passes through ``.cpu()`` and ``int()``: with the CPU generator used
here those are host-side values, not device syncs, though the CPU op counter counts them.
"""
from __future__ import annotations

import random
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from dfdc_fast.models.registry import memory_format_of


def to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, 3, T, H, W)`` in [0, 1]; images ``(B, H, W, 3)`` -> ``(B, 3, H, W)``."""
    x = frames.permute(0, 4, 1, 2, 3) if frames.dim() == 5 else frames.permute(0, 3, 1, 2)
    return x.float().div_(255.0)


def make_optimizer(name: str, params, *, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, Adam (fused: no host read of the step counter) or SGD with Nesterov momentum."""
    params = list(params)
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay,
                               fused=device.type in ("cuda", "cpu"))
    raise ValueError(f"optimizer must be adamw, adam or sgd, got {name!r}")


class TrainStep:
    """The optimisation step of :func:`dfdc_fast.train.train`, with no host read of device data.

    Args:
        net: the module to call (DDP/compiled wrapper or the model itself).
        model: the plain model (for gradient clipping).
        optimizer, schedule, scaler: stepped every ``accumulate`` calls.
        spec: the model's :class:`~dfdc_fast.models.ModelSpec` (normalisation).
        train_tf: the augmentation module (``forward(x, generator=)``).
        dtype: autocast dtype, or None for fp32.
        cutmix: probability that a batch gets 3D CutMix (clips only).
    """

    def __init__(self, net, model, optimizer, schedule, scaler, *, spec, train_tf, device: torch.device,
                 dtype=None, cutmix: float = 0.0, accumulate: int = 1, grad_clip: float | None = None,
                 channels_last: bool = True, world: int = 1, loss: str = "bce", label_smoothing: float = 0.0,
                 cutout=None, pair_mixup: bool = True, warmup_head_steps: int = 0):
        self.net, self.model, self.optimizer, self.schedule, self.scaler = net, model, optimizer, schedule, scaler
        self.spec, self.train_tf, self.device, self.dtype = spec, train_tf, torch.device(device), dtype
        self.cutmix, self.accumulate, self.grad_clip = float(cutmix), int(accumulate), grad_clip
        self.channels_last, self.world = channels_last, world
        if loss not in ("bce", "balanced_bce"):
            raise ValueError(f"loss must be bce or balanced_bce, got {loss!r}")
        self.loss, self.label_smoothing, self.cutout = loss, float(label_smoothing), cutout
        self.pair_mixup, self.warmup_head_steps = bool(pair_mixup), int(warmup_head_steps)
        self._head = model.get_submodule(spec.head) if self.warmup_head_steps else None
        self._warm = False
        self.steps = 0           # optimiser steps taken, over the whole run
        self._loss_sum = torch.zeros((), device=self.device)
        self._items = 0          # batches summed into _loss_sum since begin_epoch
        self._micro = 0
        self.generator = torch.Generator()
        self._mix_rng = random.Random(0)

    def begin_epoch(self, seed: int, epoch: int, rank: int = 0) -> None:
        """Seed this epoch's draws from ``(seed, epoch, rank)`` and reset the running loss."""
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + rank)
        self._mix_rng = random.Random((seed * 1_000_003 + epoch) * 31 + rank)
        self._loss_sum.zero_()
        self._items = 0
        self._micro = 0
        self.optimizer.zero_grad(set_to_none=True)

    def _phase(self) -> None:
        """NTechLab's warm-up: the first ``warmup_head_steps`` steps train only the head, with
        the backbone in eval mode; then everything trains, with a fresh optimiser state."""
        warm = self.steps < self.warmup_head_steps
        if warm:
            self.model.eval()
            self._head.train()
            if not self._warm:
                head = {id(p) for p in self._head.parameters()}
                for p in self.model.parameters():
                    p.requires_grad_(id(p) in head)
        elif self._warm:
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.model.train()
            self.optimizer.state.clear()  # they switched to a new optimiser over all parameters
        self._warm = warm

    def _pairs(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """NTechLab's pair mixup: uint8 ``(B, 2, T, H, W, 3)`` REAL/FAKE frames -> the model's
        input ``(1 - t) real + t fake`` and target ``t``, t ~ Beta(0.5, 0.5) per pair (t = 0 and
        1 for the two halves of a doubled batch without mixup)."""
        from dfdc_fast.augment._common import Sampler

        b, _, t, h, w, _ = batch.shape
        x = batch.permute(0, 1, 5, 2, 3, 4).float().div_(255.0)  # (B, 2, 3, T, H, W)
        if self.pair_mixup:
            target = Sampler(self.generator, self.device).beta(0.5, 0.5, b).to(x.dtype)
            weight = target.view(b, 1, 1, 1, 1)
            x = (1.0 - weight) * x[:, 0] + weight * x[:, 1]
        else:
            x = torch.cat([x[:, 0], x[:, 1]])
            target = torch.cat([torch.zeros(b, device=x.device), torch.ones(b, device=x.device)])
        if self.spec.kind == "2d":  # frame models: every frame is an image with the pair's target
            n = x.shape[0]
            x = x.permute(0, 2, 1, 3, 4).reshape(n * t, 3, h, w)
            target = target.repeat_interleave(t)
        return x, target

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing:
            labels = labels.clamp(self.label_smoothing, 1.0 - self.label_smoothing)
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels)
        # Selim: BCE over the batch's fakes and over its reals, averaged (a class that is absent adds 0)
        each = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        fake = (labels > 0.5).to(each.dtype)
        real = 1.0 - fake
        return ((each * fake).sum() / fake.sum().clamp_min(1.0) + (each * real).sum() / real.sum().clamp_min(1.0)) / 2

    def __call__(self, batch: torch.Tensor, labels: torch.Tensor, extras: dict | None = None) -> bool:
        """Train on one uint8 batch; True when the optimiser stepped (every ``accumulate`` calls).
        ``extras``: Selim's cut-out inputs of a 2D batch (see :class:`dfdc_fast.augment.SelimCutout`)."""
        from dfdc_fast.augment import cutmix3d, mixed_bce_loss
        from dfdc_fast.models import normalize

        if self.warmup_head_steps:
            self._phase()
        if batch.dim() == 6:  # NTechLab's pairs: augmented in the loader, mixed here
            x, labels = self._pairs(batch)
        else:
            x = to_unit_float(batch)
            if self.cutout is not None:
                if extras is None:
                    raise ValueError("cutout needs the loader's cut-out inputs (dataset crops_csv)")
                x, _ = self.cutout(x, extras["landmarks"], extras["has_landmarks"], labels, extras["diff_counts"],
                                   extras["bit_mid"], extras["scale"], generator=self.generator)
            x = self.train_tf(x, generator=self.generator)
        x = normalize(x, self.spec)
        mixed = None
        if self.cutmix and self.spec.kind == "3d" and self._mix_rng.random() < self.cutmix:
            mixed = cutmix3d(x, labels, generator=self.generator)
            x = mixed.clips
        if self.channels_last:
            x = x.contiguous(memory_format=memory_format_of(x))  # by rank: a sequence B7 takes 5-D clips
        self._micro += 1
        sync = self._micro % self.accumulate == 0
        with (self.net.no_sync() if self.world > 1 and not sync else nullcontext()):
            with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext():
                logits = self.net(x)
            logits = logits.float().reshape(len(x), -1)[:, 0]
            loss = mixed_bce_loss(logits, mixed) if mixed is not None else self._loss(logits, labels)
            self.scaler.scale(loss / self.accumulate).backward()
        self._loss_sum.add_(loss.detach())
        self._items += 1
        if not sync:
            return False
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        if self.steps > self.warmup_head_steps:  # NTechLab's schedule starts after the warm-up
            self.schedule.step()
        return True

    def read(self) -> float:
        """Mean training loss since :meth:`begin_epoch`, in this process: one host read."""
        return float(self._loss_sum) / max(1, self._items)

    def loss_totals(self) -> tuple[torch.Tensor, int]:
        """(device sum of batch losses, batches) since :meth:`begin_epoch`, without a read."""
        return self._loss_sum, self._items
