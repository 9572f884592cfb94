"""The training loop: GPU-decoded clips, augmentation on the device, AMP, DDP, exact resume.

One step (:class:`dfdc_fast.train.step.TrainStep`): a uint8 batch arrives on the device
(see :mod:`dfdc_fast.train.loaders`), becomes float ``[0, 1]``, is augmented per clip
(:class:`dfdc_fast.augment.ClipAugment`), optionally 3D-CutMixed, normalised the model's
way, and goes through the model under autocast, with no host read of device data: the
loss is read every ``log_every`` steps.
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

from dfdc_fast.files import FolderLock, make_dirs
from dfdc_fast.models.checkpoint import remove_checkpoint_temporaries
from dfdc_fast.runtime import AMP_MODES, amp_dtype  # noqa: F401  (AMP_MODES re-exported)
from dfdc_fast.train.config import TrainConfig, save_config
from dfdc_fast.errors import ConfigError, UserError
from dfdc_fast.train.data import (balanced_epoch, read_clip_index, read_crops_csv, read_pairs_csv, split_by_fold,
                                  split_samples, validate_samples)
from dfdc_fast.train.loaders import make_loader, plan_epoch, plan_pairs, resolve_loader
from dfdc_fast.train.metrics import append_metrics, plot_metrics, validation_problem, video_log_loss
from dfdc_fast.train.step import TrainStep, make_optimizer as _make_optimizer, to_unit_float  # noqa: F401

log = logging.getLogger("dfdc_fast.train")



@dataclass
class TrainResult:
    """What a run leaves: its folder, the last checkpoint and one metrics row per epoch."""

    out: str
    last_checkpoint: str | None
    metrics: list = field(default_factory=list)
    step: int = 0
    epoch: int = 0
    decode: dict = field(default_factory=dict)   # the loader's DecodeStats over this invocation


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


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    return _make_optimizer(config.optimizer, params, lr=config.lr, weight_decay=config.weight_decay, device=device)


def make_schedule(config: TrainConfig, optimizer, total_steps: int):
    """OneCycle (the Medics, stepped per batch), poly 0.9 (Selim), linear decay to 0 over the
    steps after the head-only warm-up (NTechLab: lr (1 - it / 100k)) or constant."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(1, total_steps),
                                                   pct_start=config.pct_start)
    if config.schedule == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max(1, total_steps), power=0.9)
    if config.schedule == "linear":
        span = max(1, total_steps - config.warmup_head_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / span))
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"schedule must be onecycle, poly, linear or constant, got {config.schedule!r}")


def make_augment(config: TrainConfig, kind: str, size: int, device: torch.device):
    """(train transform, eval transform) for the model kind, both on ``device``."""
    from dfdc_fast import augment

    options = dict(config.augment)
    if kind == "3d":
        options.pop("preset", None)
        cls, args = augment.ClipAugment, (size,)
        eval_tf = augment.medics_clip_eval(size)  # centre 224 of 256, or resize 128 + centre 112
    else:
        preset = options.pop("preset", "selim")
        if preset not in ("selim", "ianpan"):
            raise ConfigError(f"2D augment preset must be 'selim' or 'ianpan', got {preset!r}")
        cls, args = (augment.SelimImageAugment, (size,)) if preset == "selim" else (augment.IanPanImageAugment, ())
        eval_tf = None  # crops are letterboxed to the input size by the loader
    options = _options_for(cls, options, kind, config)
    train_tf = cls(*args, **options)
    return train_tf.to(device), (eval_tf.to(device) if eval_tf is not None else None)


def _options_for(cls, options: dict, kind: str, config: TrainConfig) -> dict:
    """The augment options ``cls`` takes. Options written for the other kind of model (a
    config's 3D clip settings when ``--model`` picks a 2D model) are left out with a warning,
    so the model's own augmentation is used; a key neither kind knows is an error."""
    import inspect

    from dfdc_fast import augment

    known = set(inspect.signature(cls.__init__).parameters) - {"self", "size"}
    others = set()
    for other in (augment.ClipAugment, augment.SelimImageAugment, augment.IanPanImageAugment):
        others |= set(inspect.signature(other.__init__).parameters) - {"self", "size"}
    foreign = sorted(k for k in options if k not in known and k in others)
    unknown = sorted(k for k in options if k not in known and k not in others)
    if unknown:
        import difflib

        close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        raise ConfigError(f"augment keys {unknown} are not options of {cls.__name__}"
                          + "".join(f"; {k}: did you mean {c[0]!r}?" for k, c in close.items() if c)
                          + f" (its options: {sorted(known)})")
    if foreign:
        log.warning("augment keys %s are not %s options (the config was written for another kind of model than "
                    "%s, a %s model); using %s's defaults for them", foreign, cls.__name__, config.model, kind,
                    cls.__name__)
    return {k: v for k, v in options.items() if k in known}


def epoch_order(samples, epoch: int, items: int, *, seed: int, mode: str) -> list[int]:
    """``items`` sample indices for one epoch: balanced draws, repeated with fresh shuffles
    when the data holds fewer items than the steps ask for."""
    order: list[int] = []
    k = 0
    while len(order) < items:
        order += balanced_epoch(samples, epoch * 1000 + k, seed=seed, mode=mode)
        k += 1
    return order[:items]


def pair_epoch_order(count: int, epoch: int, items: int, *, seed: int) -> list[int]:
    """``items`` pair indices for one epoch: shuffles of all pairs drawn from ``(seed, epoch)``."""
    import random

    if count < 1:
        return []
    order: list[int] = []
    k = 0
    while len(order) < items:
        idx = list(range(count))
        random.Random(seed * 100_003 + epoch * 1000 + k).shuffle(idx)
        order += idx
        k += 1
    return order[:items]


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
    from dfdc_fast.models import normalize

    model.eval()
    plan = plan_pairs(pairs, range(len(pairs)), indices=indices, batch_size=batch_size, train=False, seed=0, epoch=0,
                      drop_last=False)
    probs: list[torch.Tensor] = []
    for batch, *_ in loader.iterate(plan):
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
def predict_samples(model, samples, *, spec, frames: int, eval_tf, loader, batch_size: int,
                    device: torch.device, dtype) -> list[float]:
    """Probability of FAKE for each sample (clip window from frame 0, no augmentation); the
    probabilities stay on the device until the end (one host read)."""
    from dfdc_fast.models import normalize

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


def build_step(config: TrainConfig, device: torch.device, *, total_steps: int, world: int = 1, pretrained=True):
    """The model, its optimiser, schedule, scaler, augmentations and the :class:`TrainStep`
    that ties them, as :func:`train` builds them: ``(step, eval_tf)``. ``model`` and ``net``
    are ``step.model`` / ``step.net``."""
    from dfdc_fast.models import create_model, model_spec

    spec = model_spec(config.model)
    size = config.input_size or spec.input_size
    dtype = amp_dtype(config.amp, device)
    torch.manual_seed(config.seed)
    model_kwargs = dict(num_classes=1, **config.model_kwargs)
    model = create_model(config.model, pretrained=config.pretrained if pretrained else None, **model_kwargs).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d if spec.kind == "3d" else torch.channels_last)
    optimizer = make_optimizer(config, model.parameters(), device)
    schedule = make_schedule(config, optimizer, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if config.dataset == "pairs":  # NTechLab's pairs are augmented in the loader's workers
        train_tf, eval_tf = None, None
    else:
        train_tf, eval_tf = make_augment(config, spec.kind, size, device)
    cutout = None
    if config.cutout:
        from dfdc_fast.augment.cutout import SelimCutout

        cutout = SelimCutout(**config.cutout).to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    step = TrainStep(net, model, optimizer, schedule, scaler, spec=spec, train_tf=train_tf, device=device, dtype=dtype,
                     cutmix=config.cutmix, accumulate=config.accumulate, grad_clip=config.grad_clip,
                     channels_last=config.channels_last, world=world, loss=config.loss,
                     label_smoothing=config.label_smoothing, cutout=cutout, pair_mixup=config.pair_mixup,
                     warmup_head_steps=config.warmup_head_steps)
    return step, eval_tf


def train(config: TrainConfig, device: torch.device | str | None = None, stop_after_epochs: int | None = None) -> TrainResult:
    """Run (or resume) the training described by ``config`` on ``device``.

    ``stop_after_epochs`` ends this invocation early (after that many epochs of it); the
    schedule still spans ``config.epochs``, so a later call resumes where this one stopped.
    The output folder is held (:class:`~dfdc_fast.files.FolderLock`) while it runs.
    """
    locks: list = []
    try:
        result = _train(config, device, stop_after_epochs, locks)
    except BaseException:
        for lock in locks:
            lock.release(ok=False)
        raise
    for lock in locks:
        lock.release()
    return result


def _train(config: TrainConfig, device: torch.device | str | None, stop_after_epochs: int | None,
           locks: list) -> TrainResult:
    """The body of :func:`train` (``locks`` receives the folder lock it takes).
    """
    from dfdc_fast.models import load_checkpoint, model_spec, save_checkpoint

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, device = setup_distributed(device)
    main = rank == 0
    spec = model_spec(config.model)
    kind = spec.kind
    pairs = config.dataset == "pairs"
    frames = len(config.pair_frames) if pairs else (config.frames or spec.frames)
    size = config.input_size or spec.input_size
    dtype = amp_dtype(config.amp, device)
    if pairs and config.loader not in ("auto", "pyav"):
        raise ValueError(f"NTechLab's pairs are re-encoded and augmented in CPU workers: loader pyav, got {config.loader!r}")
    loader_name = "pyav" if pairs else resolve_loader(config.loader, device, kind)
    if config.log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {config.log_every}")
    if main:
        log.info("model %s (%s), %d frames at %d px, loader %s, amp %s, device %s, %d process(es)",
                 config.model, kind, frames, size, loader_name, dtype, device, world)

    samples = read_training_data(config, kind)
    validate_samples(samples, config.data)
    train_samples, val_samples = split_training_data(config, samples)
    if not train_samples:
        raise ValueError("no training samples left after the hold-out split")
    if main:
        if pairs:  # a pair scores its REAL clip (0) and its FAKE clip (1)
            val_videos = [v for p in val_samples for v in (p.real_video, p.fake_video)]
            val_labels = [y for _ in val_samples for y in (0, 1)]
        else:
            val_videos, val_labels = [s.video for s in val_samples], [s.label for s in val_samples]
        problem = validation_problem(val_videos, val_labels)
        if problem:  # once per run, not once per epoch
            log.warning("validation: %s", problem)
        elif not val_samples:
            log.info("no validation set (val_fraction 0, no val_parts, no val_fold): the val_* metrics stay empty")
    if main:  # one owner per folder: no other job, nor a second training, writes here
        locks.append(FolderLock(config.out, "train").acquire())
        removed = remove_checkpoint_temporaries(os.path.join(config.out, "checkpoints"))
        if removed:
            log.info("removed %d partial checkpoint files a killed save left", removed)
    make_dirs(os.path.join(config.out, "checkpoints"))
    if main:
        save_config(config, os.path.join(config.out, "config.yaml"))

    per_step = config.batch_size * config.accumulate * world
    epoch_items = len(train_samples) if pairs else len(balanced_epoch(train_samples, 0, seed=config.seed,
                                                                      mode=config.balance))
    steps_per_epoch = epoch_items // per_step
    if config.max_steps_per_epoch:  # a fixed number of steps, cycling through the data if it is short
        steps_per_epoch = config.max_steps_per_epoch
    if steps_per_epoch < 1:
        raise ValueError(f"an epoch holds {epoch_items} training items, fewer than one step of {per_step} "
                         f"(batch {config.batch_size} x accumulate {config.accumulate} x {world} process(es)); "
                         "lower --batch-size or extract more clips")
    step, eval_tf = build_step(config, device, total_steps=config.epochs * steps_per_epoch, world=world)
    model, optimizer, schedule, scaler = step.model, step.optimizer, step.schedule, step.scaler

    start_epoch, metrics = 0, []
    resume_from = latest_checkpoint(config.out) if config.resume else None
    if resume_from:
        try:
            ckpt = load_checkpoint(resume_from)
            for key in ("optimizer", "schedule", "rng", "epoch", "step"):
                if key not in ckpt.state:
                    raise ValueError(f"it holds no {key!r} state")
        except (ValueError, RuntimeError, EOFError, OSError) as exc:
            raise UserError(f"cannot resume from {resume_from}: {exc}. Delete that file to resume from the "
                            "checkpoint before it, or rerun with --no-resume to start over") from exc
        model.load_state_dict(ckpt.state_dict, strict=True)
        optimizer.load_state_dict(ckpt.state["optimizer"])
        schedule.load_state_dict(ckpt.state["schedule"])
        if ckpt.state.get("scaler"):
            scaler.load_state_dict(ckpt.state["scaler"])
        _set_rng_state(ckpt.state["rng"], device)
        start_epoch, step.steps = int(ckpt.state["epoch"]), int(ckpt.state["step"])
        if main:
            log.info("resumed from %s: epoch %d, step %d", resume_from, start_epoch, step.steps)

    model_kwargs = dict(num_classes=1, **config.model_kwargs)
    last = resume_from
    end_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    pair_options = dict(crop=config.pair_crop, min_size=config.pair_min_size, reencode=config.pair_reencode,
                        autoaugment=config.pair_autoaugment, same_aug=config.pair_same_aug) if pairs else None
    loader = make_loader(loader_name, device, config.workers, config.prefetch,
                         image_size=size if kind == "2d" and not pairs else None, pair_options=pair_options)
    try:
        for epoch in range(start_epoch, end_epoch):
            if pairs:
                order = pair_epoch_order(len(train_samples), epoch, steps_per_epoch * per_step, seed=config.seed)
                plan = plan_pairs(train_samples, order[rank::world], indices=config.pair_frames,
                                  batch_size=config.batch_size, train=True, seed=config.seed, epoch=epoch)
            else:
                order = epoch_order(train_samples, epoch, steps_per_epoch * per_step, seed=config.seed,
                                    mode=config.balance)
                plan = plan_epoch(train_samples, order[rank::world], frames=frames, batch_size=config.batch_size,
                                  train=True, seed=config.seed, epoch=epoch, cutout=bool(config.cutout))
            step.net.train()
            step.begin_epoch(config.seed, epoch, rank)
            decoded_before = loader.stats.to_dict()
            started = time.perf_counter()
            first_done = None
            seen = seen_first = 0
            bar = _progress(len(plan), f"epoch {epoch + 1}/{config.epochs}", config.progress and main)
            for i, (batch, labels, *extras) in enumerate(loader.iterate(plan)):
                step(batch, labels, extras[0] if extras else None)
                seen += len(batch)
                if first_done is None:  # time the first step apart: loader start-up, cuDNN autotuning
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    first_done, seen_first = time.perf_counter(), seen
                bar.update(1)
                if (i + 1) % config.log_every == 0:
                    bar.set_postfix(loss=f"{step.read():.4f}")  # the only host read of the loop
            bar.close()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ended = time.perf_counter()
            elapsed = ended - started
            loss_sum, loss_n = step.loss_totals()
            train_loss = _mean_across(loss_sum, loss_n, world, device)
            steady = ended - first_done if first_done is not None else 0.0
            row = {"epoch": epoch + 1, "steps": step.steps, "train_loss": round(train_loss, 6),
                   "lr": schedule.get_last_lr()[0], "clips_per_s": round(seen * world / elapsed, 2),
                   "epoch_s": round(elapsed, 2), "first_step_s": round((first_done or ended) - started, 3),
                   "steady_s": round(steady, 4),
                   "steady_clips_per_s": round((seen - seen_first) * world / steady, 2) if steady > 0 else "",
                   "decoded_per_delivered": _epoch_ratio(decoded_before, loader.stats.to_dict())}
            if main and val_samples:
                if pairs:
                    videos, labels, probs = predict_pairs(unwrap(step.net), val_samples, spec=spec,
                                                          indices=config.pair_frames, loader=loader,
                                                          batch_size=config.batch_size, device=device, dtype=dtype)
                else:
                    probs = predict_samples(unwrap(step.net), val_samples, spec=spec, frames=frames, eval_tf=eval_tf,
                                            loader=loader, batch_size=config.batch_size, device=device, dtype=dtype)
                    videos, labels = [s.video for s in val_samples], [s.label for s in val_samples]
                # val_balanced_log_loss is Selim's metric: (log loss on fakes + log loss on reals) / 2
                ll, bll, n = video_log_loss(videos, labels, probs)
                row.update(val_log_loss=round(ll, 6), val_balanced_log_loss=round(bll, 6), val_videos=n)
            if main:
                last = os.path.join(config.out, "checkpoints", f"epoch_{epoch + 1:03d}.pth")
                save_checkpoint(last, unwrap(step.net), model_name=config.model, model_kwargs=model_kwargs,
                                config=config.to_dict(),
                                state={"epoch": epoch + 1, "step": step.steps, "optimizer": optimizer.state_dict(),
                                       "schedule": schedule.state_dict(),
                                       "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                                       "rng": _rng_state(device), "metrics": row})
                append_metrics(os.path.join(config.out, "metrics.csv"), row)
                _plot(config)
                log.info("epoch %d: %s", epoch + 1, row)
            metrics.append(row)
            _barrier(world)
    finally:
        loader.close()
    return TrainResult(config.out, last, metrics, step.steps, end_epoch, loader.stats.to_dict())


def _plot(config: TrainConfig) -> None:
    """metrics.png from metrics.csv; a picture that cannot be drawn is logged, never fatal."""
    try:
        plot_metrics(os.path.join(config.out, "metrics.csv"), os.path.join(config.out, "metrics.png"),
                     title=f"{config.model}: {os.path.abspath(config.out)}")
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics.png not drawn: %s: %s", type(exc).__name__, exc)


def _epoch_ratio(before: dict, after: dict):
    """Decoded per delivered frame over one epoch ("" when the decoder does not report it)."""
    delivered = after["delivered_frames"] - before["delivered_frames"]
    decoded = (after["decoded_frames"] or 0) - (before["decoded_frames"] or 0)
    return round(decoded / delivered, 4) if delivered and decoded else ""


def _mean_across(total: torch.Tensor, count: int, world: int, device: torch.device) -> float:
    """The mean of a device sum over ``count`` items, across processes: one host read."""
    t = torch.stack([total.float(), torch.tensor(float(count), device=total.device)])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    total_f, count_f = t.tolist()
    return total_f / max(1.0, count_f)


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=True, dynamic_ncols=True)
