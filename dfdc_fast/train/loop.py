"""The training loop: GPU-decoded clips, augmentation on the device, AMP, DDP, exact resume.

One step: a uint8 batch arrives on the device (see :mod:`dfdc_fast.train.loaders`), becomes
float ``[0, 1]``, is augmented per clip (:class:`dfdc_fast.augment.ClipAugment`), optionally
3D-CutMixed, normalised the model's way, and goes through the model under autocast.
Every epoch ends with validation (DFDC log loss per video), a checkpoint holding everything
needed to continue (weights, optimiser, schedule, scaler, RNG, step), a metrics CSV row
and a PNG plot. Epoch order, clip windows and augmentation draw from ``(seed, epoch)``, so a
run resumed from a checkpoint continues exactly as if it had not stopped.
"""
from __future__ import annotations

import glob
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dfdc_fast.runtime import AMP_MODES, amp_dtype  # noqa: F401  (AMP_MODES re-exported)
from dfdc_fast.train.config import TrainConfig, save_config
from dfdc_fast.train.data import balanced_epoch, read_clip_index, split_samples
from dfdc_fast.train.loaders import ClipDataset, make_loader, resolve_loader
from dfdc_fast.train.metrics import append_metrics, plot_metrics, video_log_loss

log = logging.getLogger("dfdc_fast.train")



@dataclass
class TrainResult:
    """What a run leaves: its folder, the last checkpoint and one metrics row per epoch."""

    out: str
    last_checkpoint: str | None
    metrics: list = field(default_factory=list)
    step: int = 0
    epoch: int = 0


def setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device) under torchrun (``WORLD_SIZE`` > 1), else (0, 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, 3, T, H, W)`` in [0, 1]; images ``(B, H, W, 3)`` -> ``(B, 3, H, W)``."""
    x = frames.permute(0, 4, 1, 2, 3) if frames.dim() == 5 else frames.permute(0, 3, 1, 2)
    return x.float().div_(255.0)


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be adamw, adam or sgd, got {config.optimizer!r}")


def make_schedule(config: TrainConfig, optimizer, total_steps: int):
    """OneCycle (the Medics, stepped per batch), poly 0.9 (Selim) or constant."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(1, total_steps),
                                                   pct_start=config.pct_start)
    if config.schedule == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max(1, total_steps), power=0.9)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"schedule must be onecycle, poly or constant, got {config.schedule!r}")


def make_augment(config: TrainConfig, kind: str, size: int, device: torch.device):
    """(train transform, eval transform) for the model kind, both on ``device``."""
    from dfdc_fast import augment

    options = dict(config.augment)
    if kind == "3d":
        train_tf = augment.ClipAugment(size, **options)
        eval_tf = augment.medics_clip_eval(size)  # centre 224 of 256, or resize 128 + centre 112
    else:
        preset = options.pop("preset", "selim")
        if preset == "selim":
            train_tf = augment.SelimImageAugment(size, **options)
        elif preset == "ianpan":
            train_tf = augment.IanPanImageAugment(**options)
        else:
            raise ValueError(f"2D augment preset must be 'selim' or 'ianpan', got {preset!r}")
        eval_tf = None  # crops are letterboxed to the input size by the loader
    return train_tf.to(device), (eval_tf.to(device) if eval_tf is not None else None)


def epoch_order(samples, epoch: int, items: int, *, seed: int, mode: str) -> list[int]:
    """``items`` sample indices for one epoch: balanced draws, repeated with fresh shuffles
    when the data holds fewer items than the steps ask for."""
    order: list[int] = []
    k = 0
    while len(order) < items:
        order += balanced_epoch(samples, epoch * 1000 + k, seed=seed, mode=mode)
        k += 1
    return order[:items]


def latest_checkpoint(out: str) -> str | None:
    paths = sorted(glob.glob(os.path.join(out, "checkpoints", "epoch_*.pth")))
    return paths[-1] if paths else None


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def predict_samples(model, samples, *, spec, frames: int, size: int, eval_tf, loader_name: str, batch_size: int,
                    device: torch.device, workers: int, dtype) -> list[float]:
    """Probability of FAKE for each sample (clip window from frame 0, no augmentation)."""
    from dfdc_fast.models import normalize

    model.eval()
    ds = ClipDataset(samples, range(len(samples)), frames=frames, image_size=size if spec.kind == "2d" else None,
                     train=False, seed=0, epoch=0)
    probs: list[float] = []
    for batch, _ in make_loader(loader_name, ds, batch_size, device, workers, drop_last=False):
        x = to_unit_float(batch)
        if eval_tf is not None:
            x = eval_tf(x)
        x = normalize(x, spec)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            logits = model(x)
        probs += torch.sigmoid(logits.float().reshape(len(x), -1)[:, 0]).tolist()
    return probs


def train(config: TrainConfig, device: torch.device | str | None = None, stop_after_epochs: int | None = None) -> TrainResult:
    """Run (or resume) the training described by ``config`` on ``device``.

    ``stop_after_epochs`` ends this invocation early (after that many epochs of it); the
    schedule still spans ``config.epochs``, so a later call resumes where this one stopped.
    """
    from dfdc_fast.augment import cutmix3d, mixed_bce_loss
    from dfdc_fast.models import create_model, load_checkpoint, model_spec, normalize, save_checkpoint

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, device = setup_distributed(device)
    main = rank == 0
    spec = model_spec(config.model)
    kind = spec.kind
    frames = config.frames or spec.frames
    size = config.input_size or spec.input_size
    dtype = amp_dtype(config.amp, device)
    loader_name = resolve_loader(config.loader, device, kind)
    if main:
        log.info("model %s (%s), %d frames at %d px, loader %s, amp %s, device %s, %d process(es)",
                 config.model, kind, frames, size, loader_name, dtype, device, world)

    samples = read_clip_index(config.data, kind)
    train_samples, val_samples = split_samples(samples, val_parts=config.val_parts, val_fraction=config.val_fraction,
                                               seed=config.seed)
    if not train_samples:
        raise ValueError("no training samples left after the hold-out split")
    os.makedirs(os.path.join(config.out, "checkpoints"), exist_ok=True)
    if main:
        save_config(config, os.path.join(config.out, "config.yaml"))

    torch.manual_seed(config.seed)
    model_kwargs = dict(num_classes=1, **config.model_kwargs)
    model = create_model(config.model, pretrained=config.pretrained, **model_kwargs).to(device)
    memory_format = torch.channels_last_3d if kind == "3d" else torch.channels_last
    if config.channels_last:
        model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(config, model.parameters(), device)

    per_step = config.batch_size * config.accumulate * world
    epoch_items = len(balanced_epoch(train_samples, 0, seed=config.seed, mode=config.balance))
    steps_per_epoch = epoch_items // per_step
    if config.max_steps_per_epoch:  # a fixed number of steps, cycling through the data if it is short
        steps_per_epoch = config.max_steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"an epoch holds {epoch_items} training items, fewer than one step of {per_step} "
                         f"(batch {config.batch_size} x accumulate {config.accumulate} x {world} process(es)); "
                         "lower --batch-size or extract more clips")
    schedule = make_schedule(config, optimizer, config.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    start_epoch, step, metrics = 0, 0, []
    resume_from = latest_checkpoint(config.out) if config.resume else None
    if resume_from:
        ckpt = load_checkpoint(resume_from)
        model.load_state_dict(ckpt.state_dict, strict=True)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        schedule.load_state_dict(ckpt.state["schedule"])
        if ckpt.state.get("scaler"):
            scaler.load_state_dict(ckpt.state["scaler"])
        _set_rng_state(ckpt.state["rng"], device)
        start_epoch, step = int(ckpt.state["epoch"]), int(ckpt.state["step"])
        if main:
            log.info("resumed from %s: epoch %d, step %d", resume_from, start_epoch, step)

    train_tf, eval_tf = make_augment(config, kind, size, device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)

    last = resume_from
    end_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    for epoch in range(start_epoch, end_epoch):
        order = epoch_order(train_samples, epoch, steps_per_epoch * per_step, seed=config.seed, mode=config.balance)
        order = order[rank::world]
        dataset = ClipDataset(train_samples, order, frames=frames, image_size=size if kind == "2d" else None,
                              train=True, seed=config.seed, epoch=epoch)
        loader = make_loader(loader_name, dataset, config.batch_size, device, config.workers)
        generator = torch.Generator(device).manual_seed(config.seed * 1_000_003 + epoch * 1009 + rank)
        net.train()
        started, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
        bar = _progress(len(loader), f"epoch {epoch + 1}/{config.epochs}", config.progress and main)
        optimizer.zero_grad(set_to_none=True)
        for i, (batch, labels) in enumerate(loader):
            x = train_tf(to_unit_float(batch), generator=generator)
            x = normalize(x, spec)
            mixed = None
            if config.cutmix and kind == "3d" and torch.rand((), generator=generator, device=device).item() < config.cutmix:
                mixed = cutmix3d(x, labels, generator=generator)
                x = mixed.clips
            if config.channels_last:
                x = x.contiguous(memory_format=memory_format)
            sync = (i + 1) % config.accumulate == 0
            with (net.no_sync() if world > 1 and not sync else nullcontext()):
                with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                    logits = net(x)
                logits = logits.float().reshape(len(x), -1)[:, 0]
                loss = mixed_bce_loss(logits, mixed) if mixed is not None else \
                    F.binary_cross_entropy_with_logits(logits, labels)
                scaler.scale(loss / config.accumulate).backward()
            if sync:
                if config.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                schedule.step()
                step += 1
            loss_sum += float(loss.detach())
            loss_n += 1
            seen += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}")
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        train_loss = _mean_across(loss_sum, loss_n, world, device)

        row = {"epoch": epoch + 1, "steps": step, "train_loss": round(train_loss, 6),
               "lr": schedule.get_last_lr()[0], "clips_per_s": round(seen * world / elapsed, 2), "epoch_s": round(elapsed, 2)}
        if main and val_samples:
            probs = predict_samples(unwrap(net), val_samples, spec=spec, frames=frames, size=size, eval_tf=eval_tf,
                                    loader_name=loader_name, batch_size=config.batch_size, device=device,
                                    workers=config.workers, dtype=dtype)
            ll, bll, n = video_log_loss([s.video for s in val_samples], [s.label for s in val_samples], probs)
            row.update(val_log_loss=round(ll, 6), val_balanced_log_loss=round(bll, 6), val_videos=n)
        if main:
            last = os.path.join(config.out, "checkpoints", f"epoch_{epoch + 1:03d}.pth")
            save_checkpoint(last, unwrap(net), model_name=config.model, model_kwargs=model_kwargs,
                            config=config.to_dict(),
                            state={"epoch": epoch + 1, "step": step, "optimizer": optimizer.state_dict(),
                                   "schedule": schedule.state_dict(),
                                   "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                                   "rng": _rng_state(device), "metrics": row})
            append_metrics(os.path.join(config.out, "metrics.csv"), row)
            plot_metrics(os.path.join(config.out, "metrics.csv"), os.path.join(config.out, "metrics.png"))
            log.info("epoch %d: %s", epoch + 1, row)
        metrics.append(row)
        _barrier(world)
    return TrainResult(config.out, last, metrics, step, end_epoch)


def _mean_across(total: float, count: int, world: int, device: torch.device) -> float:
    if world > 1:
        import torch.distributed as dist

        t = torch.tensor([total, float(count)], device=device)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / max(1, count)


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False, dynamic_ncols=True)
