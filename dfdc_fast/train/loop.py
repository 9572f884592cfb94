"""The training loop: GPU-decoded clips, augmentation on the device, AMP, DDP, exact resume.

One step (:class:`dfdc_fast.train.step.TrainStep`): a uint8 batch arrives on the device
(see :mod:`dfdc_fast.train.loaders`), becomes float ``[0, 1]``, is augmented per clip
(:class:`dfdc_fast.augment.ClipAugment`), optionally 3D-CutMixed, normalised the model's
way, and goes through the model under autocast, with no host read of device data: the
loss is read every ``log_every`` steps.
Every epoch ends with validation (DFDC log loss per video), a checkpoint holding everything
needed to continue (weights, optimiser, schedule, scaler, RNG, step), a metrics CSV row
and a PNG plot (which checkpoints stay: :mod:`dfdc_fast.train.checkpoints`). Epoch order,
clip windows and augmentation draw from ``(seed, epoch)``, so a run resumed from a
checkpoint continues exactly as if it had not stopped. What differs between clips, crops
and pairs lives in their task objects (:mod:`dfdc_fast.train.task`), not in this loop.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch

from dfdc_fast.errors import ConfigError, UserError
from dfdc_fast.files import FolderLock, make_dirs
from dfdc_fast.models import load_checkpoint, model_spec, save_checkpoint
from dfdc_fast.models.checkpoint import BEST, remove_checkpoint_temporaries
from dfdc_fast.runtime import AMP_MODES, amp_dtype  # noqa: F401  (AMP_MODES re-exported)
from dfdc_fast.train.checkpoints import (CheckpointKeeper, changed_settings, checkpoint_dir, clear_run, epoch_path,
                                         refuse_changes, resume_source)
from dfdc_fast.train.config import TrainConfig, save_config
from dfdc_fast.train.data import balanced_epoch, split_samples, validate_samples  # noqa: F401 (re-exported)
from dfdc_fast.train.loaders import make_loader, resolve_loader
from dfdc_fast.train.plan import epoch_order, pair_epoch_order, plan_epoch, plan_pairs  # noqa: F401 (re-exported)
from dfdc_fast.train.metrics import append_metrics, plot_metrics, validation_problem, video_log_loss
from dfdc_fast.train.step import TrainStep, make_optimizer as _make_optimizer, to_unit_float  # noqa: F401
from dfdc_fast.train.task import (make_task, predict_pairs, predict_samples, read_training_data,  # noqa: F401
                                  split_training_data)

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
    nothing_to_do: str = ""                      # why this invocation trained nothing (a finished run)


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


def latest_checkpoint(out: str) -> str | None:
    """The checkpoint a rerun in ``out`` resumes from (see :func:`resume_source`)."""
    return resume_source(out)


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


def build_step(config: TrainConfig, device: torch.device, *, total_steps: int, world: int = 1, pretrained=True):
    """The model, its optimiser, schedule, scaler, augmentations and the :class:`TrainStep`
    that ties them, as :func:`train` builds them: ``(step, eval_tf)``. ``model`` and ``net``
    are ``step.model`` / ``step.net``. With ``pretrained`` the starting weights
    (``config.pretrained`` or ``config.resume_from``) are loaded and stated in one log line;
    without, the model keeps its initialisation (a resumed run loads its checkpoint)."""
    from dfdc_fast.models import create_model, model_spec, to_channels_last

    spec = model_spec(config.model)
    size = config.input_size or spec.input_size
    dtype = amp_dtype(config.amp, device)
    torch.manual_seed(config.seed)
    model_kwargs = dict(num_classes=1, **config.model_kwargs)
    try:
        model = create_model(config.model, **model_kwargs)
    except TypeError as exc:  # a model_kwargs key the builder does not take
        raise ConfigError(f"model_kwargs {config.model_kwargs} do not fit {config.model}: {exc}") from None
    if pretrained:
        log.info("weights: %s", load_start_weights(model, config, spec))
    model = model.to(device)
    if config.channels_last:
        model = to_channels_last(model)
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



def load_start_weights(model, config: TrainConfig, spec) -> str:
    """Load the weights a new run starts from into ``model``; what was loaded, in words."""
    from dfdc_fast.models import load_checkpoint, load_pretrained, load_weights

    total = len(model.state_dict())
    if config.resume_from:
        ckpt = load_checkpoint(config.resume_from)
        if ckpt.model_name != config.model:
            raise ConfigError(f"--resume-from {config.resume_from} holds a {ckpt.model_name} model, not {config.model}")
        load_weights(model, ckpt.state_dict, head=None, source=config.resume_from)
        where = f", epoch {ckpt.state['epoch']} of its run" if isinstance(ckpt.state.get("epoch"), int) else ""
        return f"{config.resume_from}{where}: all {total} tensors (a new run: fresh optimiser and schedule)"
    if config.pretrained:
        skipped = load_pretrained(model, config.pretrained, head=spec.head)
        if skipped:
            return (f"{config.pretrained}: {total - len(skipped)} of {total} tensors; classifier "
                    f"{', '.join(skipped)} at its initialisation")
        return f"{config.pretrained}: all {total} tensors"
    return f"random init (seed {config.seed}; no --pretrained file)"


def train(config: TrainConfig, device: torch.device | str | None = None, stop_after_epochs: int | None = None) -> TrainResult:
    """Run (or resume, or extend) the training described by ``config`` on ``device``.

    ``stop_after_epochs`` ends this invocation early (after that many epochs of it); the
    schedule still spans ``config.epochs``, so a later call resumes where this one stopped.
    A folder holding a run resumes it when the settings agree (see
    :mod:`dfdc_fast.train.checkpoints`), and a finished one has nothing to do. The output
    folder is held (:class:`~dfdc_fast.files.FolderLock`) while it runs.
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
    """The body of :func:`train` (``locks`` receives the folder lock it takes)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, device = setup_distributed(device)
    main = rank == 0
    spec = model_spec(config.model)
    task = make_task(config, spec)
    dtype = amp_dtype(config.amp, device)
    loader_name = task.loader_name(lambda name: resolve_loader(name, device, spec.kind))
    if main:
        log.info("model %s (%s), %d frames at %d px, loader %s, amp %s, device %s, %d process(es)",
                 config.model, spec.kind, task.frames, task.size, loader_name, dtype, device, world)
    train_samples, val_samples = _read_samples(config, task, main)
    per_step = config.batch_size * config.accumulate * world
    steps_per_epoch = _steps_per_epoch(config, task.epoch_items(train_samples), per_step, world)

    # what the folder holds decides before anything is written: resume, extend, refuse, or nothing to do
    resume_from = resume_source(config.out) if config.resume else None
    ckpt = _resumable(resume_from, config) if resume_from else None
    total_steps = config.epochs * steps_per_epoch
    if ckpt is not None:
        done_epoch, done_steps = int(ckpt.state["epoch"]), int(ckpt.state["step"])
        if done_epoch == config.epochs:
            return TrainResult(config.out, resume_from, [], done_steps, done_epoch, {},
                               nothing_to_do=_nothing_to_do(config, done_epoch))  # the CLI prints it
        total_steps = done_steps + (config.epochs - done_epoch) * steps_per_epoch  # the epochs left at this length
    if main:  # one owner per folder: no other job, nor a second training, writes here
        locks.append(FolderLock(config.out, "train").acquire())
        removed = remove_checkpoint_temporaries(checkpoint_dir(config.out))
        if removed:
            log.info("removed %d partial checkpoint files a killed save left", removed)
    make_dirs(checkpoint_dir(config.out))
    if main and not config.resume:
        removed = clear_run(config.out)
        if removed:
            log.info("overwrite: removed %d files of the run that was in %s", removed, config.out)
    if main:
        save_config(config, os.path.join(config.out, "config.yaml"))

    step, eval_tf = build_step(config, device, total_steps=total_steps, world=world, pretrained=ckpt is None)
    start_epoch, keeper = 0, CheckpointKeeper(config.out, config.checkpoint_keep)
    if ckpt is not None:
        start_epoch, keeper = _restore(step, ckpt, config, device, total_steps, steps_per_epoch, main)
        if main:
            log.info("resumed from %s: epoch %d, step %d", resume_from, start_epoch, step.steps)
    end_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    loader = make_loader(loader_name, device, config.workers, config.prefetch, **task.loader_options())
    last, metrics = resume_from, []
    try:
        for epoch in range(start_epoch, end_epoch):
            plan = task.plan(train_samples, epoch, steps_per_epoch * per_step, rank=rank, world=world)
            row = _train_epoch(step, loader, plan, config, epoch, rank=rank, world=world, device=device)
            if main and val_samples:
                # val_balanced_log_loss is Selim's metric: (log loss on fakes + log loss on reals) / 2
                ll, bll, n = video_log_loss(*task.predict(unwrap(step.net), val_samples, loader=loader,
                                                          eval_tf=eval_tf, device=device, dtype=dtype))
                row.update(val_log_loss=round(ll, 6), val_balanced_log_loss=round(bll, 6), val_videos=n)
            if main:
                last = _save_epoch(step, keeper, config, row, device, total_steps)
                log.info("epoch %d: %s", epoch + 1, row)
            metrics.append(row)
            _barrier(world)
    finally:
        loader.close()
    return TrainResult(config.out, last, metrics, step.steps, end_epoch, loader.stats.to_dict())


def _read_samples(config: TrainConfig, task, main: bool) -> tuple[list, list]:
    """(train, val) samples of ``task``, every file checked; a degenerate hold-out warned about once."""
    samples = task.read()
    validate_samples(samples, config.data)
    train_samples, val_samples = task.split(samples)
    if not train_samples:
        raise ValueError("no training samples left after the hold-out split")
    if main:
        problem = validation_problem(*task.truth(val_samples))
        if problem:  # once per run, not once per epoch
            log.warning("validation: %s", problem)
        elif not val_samples:
            log.info("no validation set (val_fraction 0, no val_parts, no val_fold): the val_* metrics stay empty "
                     "and best.pth is the last epoch")
    return train_samples, val_samples


def _steps_per_epoch(config: TrainConfig, epoch_items: int, per_step: int, world: int) -> int:
    steps = config.max_steps_per_epoch or epoch_items // per_step  # a fixed number cycles through short data
    if steps < 1:
        raise ValueError(f"an epoch holds {epoch_items} training items, fewer than one step of {per_step} "
                         f"(batch {config.batch_size} x accumulate {config.accumulate} x {world} process(es)); "
                         "lower --batch-size or extract more clips")
    return steps


def _resumable(path: str, config: TrainConfig):
    """The checkpoint a rerun continues from, once its settings are known to agree with ``config``."""
    try:
        ckpt = load_checkpoint(path)
        for key in ("optimizer", "schedule", "rng", "epoch", "step"):
            if key not in ckpt.state:
                raise ValueError(f"it holds no {key!r} state")
    except (ValueError, RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"cannot resume from {path}: {exc}. Rerun with --overwrite (--no-resume) to start "
                        "over, or --resume-from FILE to start a new run from a checkpoint's weights") from exc
    refuse_changes(changed_settings(ckpt.config, config), config.out)
    done = int(ckpt.state["epoch"])
    if done > config.epochs:
        raise ConfigError(f"{config.out} holds a run that has finished {done} epochs: epochs {config.epochs} "
                          f"would end before it (raise --epochs to extend it, or --overwrite to start over)")
    return ckpt


def _nothing_to_do(config: TrainConfig, done_epoch: int) -> str:
    best = os.path.join(checkpoint_dir(config.out), BEST)
    return (f"nothing to do: {config.out} has finished its {done_epoch} epochs"
            + (f" (best: {best})" if os.path.exists(best) else "")
            + "; raise --epochs to extend it, or --overwrite to start over")


def _restore(step: TrainStep, ckpt, config: TrainConfig, device: torch.device, total_steps: int,
             steps_per_epoch: int, main: bool) -> tuple[int, CheckpointKeeper]:
    """Load a run's state into ``step`` (weights, optimiser, schedule, scaler, RNG, step count);
    a run made longer gets its schedule rebuilt. Returns (epoch to start at, its keeper)."""
    step.model.load_state_dict(ckpt.state_dict, strict=True)
    step.optimizer.load_state_dict(ckpt.state["optimizer"])
    step.schedule.load_state_dict(ckpt.state["schedule"])
    if ckpt.state.get("scaler"):
        step.scaler.load_state_dict(ckpt.state["scaler"])
    _set_rng_state(ckpt.state["rng"], device)
    done_epoch, step.steps = int(ckpt.state["epoch"]), int(ckpt.state["step"])
    if main:
        log.info("weights: resumed from its checkpoint of epoch %d", done_epoch)
    recorded_total = int(ckpt.state.get("total_steps") or _recorded_total(ckpt.config, steps_per_epoch))
    if recorded_total != total_steps:
        before = step.schedule.get_last_lr()[0]
        step.schedule = rebuild_schedule(config, step.optimizer, total_steps, step.steps)
        if main:
            log.info("extending %s: %d -> %d steps (epochs %s, %d steps per epoch from here); the %s schedule is "
                     "rebuilt for %d steps and continues at step %d (lr %.3g -> %.3g)", config.out, recorded_total,
                     total_steps, config.epochs, steps_per_epoch, config.schedule, total_steps, step.steps, before,
                     step.schedule.get_last_lr()[0])
    keeper = CheckpointKeeper(config.out, config.checkpoint_keep, full=done_epoch, best=ckpt.state.get("best"))
    return done_epoch, keeper


def _train_epoch(step: TrainStep, loader, plan, config: TrainConfig, epoch: int, *, rank: int, world: int,
                 device: torch.device) -> dict:
    """One epoch of training steps over ``plan``; its metrics row (loss, lr, throughput)."""
    step.net.train()
    step.begin_epoch(config.seed, epoch, rank)
    decoded_before = loader.stats.to_dict()
    started = time.perf_counter()
    first_done = None
    seen = seen_first = 0
    bar = _progress(len(plan), f"epoch {epoch + 1}/{config.epochs}", config.progress and rank == 0)
    for i, batch in enumerate(loader.iterate(plan)):
        step(batch.frames, batch.labels, batch.extras)
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
    return {"epoch": epoch + 1, "steps": step.steps, "train_loss": round(train_loss, 6),
            "lr": step.schedule.get_last_lr()[0], "clips_per_s": round(seen * world / elapsed, 2),
            "epoch_s": round(elapsed, 2), "first_step_s": round((first_done or ended) - started, 3),
            "steady_s": round(steady, 4),
            "steady_clips_per_s": round((seen - seen_first) * world / steady, 2) if steady > 0 else "",
            "decoded_per_delivered": _epoch_ratio(decoded_before, loader.stats.to_dict())}


def _save_epoch(step: TrainStep, keeper: CheckpointKeeper, config: TrainConfig, row: dict, device: torch.device,
                total_steps: int) -> str:
    """The epoch's checkpoint (everything resuming needs), retention, metrics.csv and .png;
    returns the path naming the newest checkpoint."""
    epoch = int(row["epoch"])
    best = keeper.update_best(row)
    save_checkpoint(epoch_path(config.out, epoch), unwrap(step.net), model_name=config.model,
                    model_kwargs=dict(num_classes=1, **config.model_kwargs), config=config.to_dict(),
                    state={"epoch": epoch, "step": step.steps, "optimizer": step.optimizer.state_dict(),
                           "schedule": step.schedule.state_dict(),
                           "scaler": step.scaler.state_dict() if step.scaler.is_enabled() else {},
                           "rng": _rng_state(device), "metrics": row, "best": best, "total_steps": total_steps})
    last = keeper.commit(epoch)
    append_metrics(os.path.join(config.out, "metrics.csv"), row)
    _plot(config)
    return last


def _recorded_total(recorded: dict, steps_per_epoch: int) -> int:
    """The schedule length of a run whose checkpoints predate ``total_steps`` in their state."""
    epochs = int(recorded.get("epochs") or 0)
    per_epoch = recorded.get("max_steps_per_epoch") or steps_per_epoch
    return epochs * int(per_epoch)


def rebuild_schedule(config: TrainConfig, optimizer, total_steps: int, steps_done: int):
    """A schedule for ``total_steps``, advanced to where a run of ``steps_done`` optimiser
    steps is (the head-only warm-up steps leave it where it is), as timm recomputes its
    schedule from the epoch when a run is extended."""
    import warnings

    for group in optimizer.param_groups:  # the rates a new schedule starts from, not the decayed ones
        if "initial_lr" in group:
            group["lr"] = group["initial_lr"]
    schedule = make_schedule(config, optimizer, total_steps)
    with warnings.catch_warnings():  # stepping without optimiser steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(max(0, steps_done - config.warmup_head_steps)):
            schedule.step()
    return schedule


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
