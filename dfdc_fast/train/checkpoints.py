"""A run folder's checkpoints: which one a rerun resumes, what it may change, what is kept.

After each epoch ``checkpoints/epoch_NNN.pth`` holds everything needed to continue
(weights, optimiser, schedule, scaler, RNG); ``last.pth`` is that same file (a hard link,
no second copy) and ``best.pth`` the epoch with the lowest balanced validation log loss.
The epoch before loses its optimiser state, which only resuming needs, and only the
newest ``checkpoint_keep`` epoch files stay: a 40-epoch B7 run keeps a few files, not 20 GB.

A rerun of the same command resumes. It may raise ``epochs`` (or ``max_steps_per_epoch``)
to extend the run, and change where and how it runs (:data:`RUN_KEYS`); any other changed
setting is refused, naming each key with its old and new value.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
import shutil

from dfdc_fast.errors import ConfigError
from dfdc_fast.models import drop_state
from dfdc_fast.models.checkpoint import BEST, LAST, RUN_CHECKPOINTS
from dfdc_fast.train.config import LENGTH_KEYS, RUN_KEYS, TrainConfig

log = logging.getLogger("dfdc_fast.train")

#: what only resuming needs; dropped from an epoch's file once a newer one exists
RESUME_STATE = ("optimizer", "schedule", "scaler", "rng")
#: the metrics best.pth is chosen by, in order of preference; without validation, the last epoch
BEST_METRICS = ("val_balanced_log_loss", "val_log_loss")
_EPOCH = re.compile(r"epoch_(\d+)\.pth$")


def checkpoint_dir(out: str) -> str:
    return os.path.join(out, RUN_CHECKPOINTS)


def epoch_path(out: str, epoch: int) -> str:
    return os.path.join(checkpoint_dir(out), f"epoch_{epoch:03d}.pth")


def epoch_files(out: str) -> dict[int, str]:
    """``{epoch: path}`` of the epoch files in ``out``."""
    files = {}
    for path in glob.glob(os.path.join(checkpoint_dir(out), "epoch_*.pth")):
        match = _EPOCH.search(os.path.basename(path))
        if match:
            files[int(match.group(1))] = path
    return dict(sorted(files.items()))


def resume_source(out: str) -> str | None:
    """The file a rerun resumes from: the newest epoch file (``last.pth`` names it), or
    ``last.pth`` alone when the epoch files were not kept; None for a new run."""
    files = epoch_files(out)
    newest = files[max(files)] if files else None
    last = os.path.join(checkpoint_dir(out), LAST)
    if os.path.exists(last) and not (newest and os.path.samefile(last, newest)):
        return last
    return newest


def changed_settings(recorded: dict, config: TrainConfig) -> list[tuple[str, object, object]]:
    """``(key, recorded value, new value)`` for every setting that differs from the run's,
    leaving out :data:`RUN_KEYS` and :data:`LENGTH_KEYS`. Keys the run's config lacks (written
    before they existed) count as their defaults."""
    defaults = TrainConfig().to_dict()
    changed = []
    for key, value in config.to_dict().items():
        if key in RUN_KEYS or key in LENGTH_KEYS:
            continue
        before = recorded.get(key, defaults[key])
        if isinstance(before, tuple):
            before = list(before)
        if before != value:
            changed.append((key, before, value))
    return changed


def refuse_changes(changes: list, out: str) -> None:
    """Raise one line naming every changed key, its recorded and its new value, and the two
    ways forward."""
    if not changes:
        return
    listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes)
    raise ConfigError(f"{out} holds a run trained with other settings ({listed}): rerun with its settings to resume "
                      f"it (raising --epochs extends it), --overwrite to start over in {out}, or "
                      f"--resume-from {os.path.join(checkpoint_dir(out), LAST)} -o NEW_FOLDER to start a new run "
                      "from its weights")


def clear_run(out: str) -> int:
    """Remove what a run left in ``out`` (epoch files, last/best, metrics); how many files went."""
    paths = list(epoch_files(out).values())
    paths += [os.path.join(checkpoint_dir(out), n) for n in (LAST, BEST)]
    paths += [os.path.join(out, n) for n in ("metrics.csv", "metrics.png")]
    removed = 0
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
            removed += 1
    return removed


def epoch_score(row: dict) -> tuple[int, float]:
    """How good an epoch is, lower better: (which metric, its value); without a finite
    validation metric, the epoch itself, so the newest wins."""
    for rank, key in enumerate(BEST_METRICS):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return rank, float(value)
    return len(BEST_METRICS), -float(row["epoch"])


def _link(src: str, dst: str) -> None:
    """``dst`` names the same file as ``src`` (a hard link; a copy where links are not
    allowed), replaced atomically."""
    tmp = f"{dst}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class CheckpointKeeper:
    """Keeps ``out``'s checkpoints after each epoch: ``last.pth``, ``best.pth``, the newest
    ``keep`` epoch files, optimiser state only in the newest.

    ``full`` is the epoch whose file still holds resume state (the one a run resumed
    from); ``best`` the ``{"epoch", "metric", "value"}`` record the checkpoints carry."""

    def __init__(self, out: str, keep: int, *, full: int | None = None, best: dict | None = None):
        self.out, self.keep, self.full, self.best = out, keep, full, dict(best) if best else None

    def update_best(self, row: dict) -> dict:
        """The best record after epoch ``row['epoch']`` (to be saved inside its checkpoint)."""
        rank, value = epoch_score(row)
        metric = BEST_METRICS[rank] if rank < len(BEST_METRICS) else "last epoch"
        if self.best is None or (rank, value) < (self.best["rank"], self.best["value"]):
            self.best = {"epoch": int(row["epoch"]), "metric": metric, "rank": rank, "value": value}
        return dict(self.best)

    def commit(self, epoch: int) -> str:
        """After ``epoch_path(out, epoch)`` was written whole: point last.pth (and best.pth
        when it is the best) at it, take the optimiser state out of the epoch before, drop
        epoch files beyond ``keep``. Returns the path that names the newest checkpoint."""
        folder = checkpoint_dir(self.out)
        path = epoch_path(self.out, epoch)
        last, best = os.path.join(folder, LAST), os.path.join(folder, BEST)
        _link(path, last)
        previous = self.full if self.full is not None and self.full != epoch else None
        if previous is not None:
            old = epoch_path(self.out, previous)
            if os.path.exists(old):
                drop_state(old, RESUME_STATE)
                if self.best and self.best["epoch"] == previous:
                    _link(old, best)
            elif self.best and self.best["epoch"] == previous and os.path.exists(best):
                drop_state(best, RESUME_STATE)  # best.pth alone held that epoch (keep 0)
        if self.best and self.best["epoch"] == epoch:
            _link(path, best)
        for number, old in epoch_files(self.out).items():
            if number <= epoch - self.keep:
                os.remove(old)
        self.full = epoch
        return path if os.path.exists(path) else last
