"""Checkpoints that rebuild their own model: weights plus the registry name and arguments.

Everything in the file loads with ``torch.load(weights_only=True)`` (tensors, dicts,
lists, tuples, strings, numbers), so opening a checkpoint never runs pickled code. The
write goes to a temporary file in the same folder and is renamed over the target, so a
crash mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from dfdc_fast.models.registry import create_model, load_weights

log = logging.getLogger(__name__)
FORMAT = "dfdc_fast.checkpoint/1"
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``state`` is whatever training state the writer passed."""

    format: str
    model_name: str
    model_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the model, its arguments, the weights' size, where training was and the
        library versions (never the tensors themselves)."""
        tensors = [v for v in self.state_dict.values() if isinstance(v, torch.Tensor)]
        numel = sum(t.numel() for t in tensors)
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors})
        where = ", ".join(f"{k}={self.state[k]}" for k in ("epoch", "step") if isinstance(self.state.get(k), int))
        extra = sorted(k for k in self.state if k not in ("epoch", "step"))
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items()))
        return (f"Checkpoint({self.model_name!r}, kwargs={self.model_kwargs!r}, "
                f"weights={len(tensors)} tensors, {_count(numel)} values, {nbytes / 2**20:.1f} MiB "
                f"{'/'.join(dtypes) or '-'}" + (f", {where}" if where else "")
                + (f", state=[{', '.join(extra)}]" if extra else "")
                + (f", config={len(self.config)} keys" if self.config else "")
                + f", versions=({versions}), format={self.format!r})")


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DataParallel/DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def _versions() -> dict[str, str]:
    # Package metadata, not imports: recording timm's version must not import timm.
    out = {"torch": str(torch.__version__), "python": platform.python_version()}
    for package in ("torchvision", "timm", "dfdc_fast"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    try:
        import dfdc_fast

        out["dfdc_fast"] = dfdc_fast.__version__
    except Exception:  # pragma: no cover - metadata answer above stands
        pass
    return out


def _check_loadable(value: Any, where: str, *, tensors: bool) -> Any:
    """Refuse what weights_only loading would reject, naming where it sits."""
    if isinstance(value, _SCALARS):
        return value
    if tensors and isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: keys must be str or int, got {type(key).__name__} {key!r}")
            out[key] = _check_loadable(item, f"{where}[{key!r}]", tensors=tensors)
        return out
    if isinstance(value, (list, tuple)):
        items = [_check_loadable(item, f"{where}[{i}]", tensors=tensors) for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    what = "plain data and tensors" if tensors else "JSON-like plain data (dict, list, str, int, float, bool, None)"
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a checkpoint holds only {what} "
                    "(convert numpy values with .tolist() or torch.from_numpy)")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, model_name: str,
                    model_kwargs: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
                    state: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights and how to rebuild it, atomically.

    ``model_kwargs`` are the :func:`create_model` arguments (e.g. ``{"num_classes": 1}``);
    ``config`` is the run's configuration; ``state`` anything needed to resume
    (optimizer/scheduler/scaler state dicts, epoch, step, RNG states).
    """
    model_kwargs = dict(model_kwargs or {})
    model_kwargs.pop("pretrained", None)  # the weights are in this file now
    payload = {
        "format": FORMAT,
        "model_name": str(model_name),
        "model_kwargs": _check_loadable(model_kwargs, "model_kwargs", tensors=False),
        "state_dict": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "config": _check_loadable(dict(config or {}), "config", tensors=False),
        "versions": _versions(),
        "state": _check_loadable(dict(state or {}), "state", tensors=True),
    }
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def remove_checkpoint_temporaries(folder: str) -> int:
    """Remove the temporaries a killed :func:`save_checkpoint` left in ``folder`` (call it
    while holding the folder: a save in progress writes one); returns how many."""
    import re

    n = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        if re.fullmatch(r"\..+\.[A-Za-z0-9_]{6,}\.tmp", name):
            try:
                os.remove(os.path.join(folder, name))
                n += 1
            except FileNotFoundError:
                pass
    return n


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading)."""
    path = os.fspath(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors have several types across torch versions
        raise ValueError(f"{path}: not a dfdc_fast checkpoint (cannot be loaded with weights_only=True: "
                         f"{type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not a dfdc_fast checkpoint (expected format {FORMAT!r}, found {found!r}); "
                         "plain state dicts go through create_model(name, pretrained=path)")
    for key, kind in (("model_name", str), ("model_kwargs", dict), ("state_dict", dict)):
        if not isinstance(obj.get(key), kind):
            raise ValueError(f"{path}: checkpoint entry {key!r} is missing or not a {kind.__name__}")
    return Checkpoint(format=obj["format"], model_name=obj["model_name"], model_kwargs=obj["model_kwargs"],
                      state_dict=obj["state_dict"], config=obj.get("config") or {},
                      versions=obj.get("versions") or {}, state=obj.get("state") or {})


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the checkpoint's model, load its weights strictly, move it to ``device``, eval mode.

    The model is built on the meta device and takes the file's tensors as its parameters,
    so no time goes into a random initialisation that the weights would overwrite (about
    two thirds of loading an ensemble on a CPU). A model that cannot be built that way
    (a tensor computed at construction that the file lacks) is built normally.
    """
    checkpoint = load_checkpoint(path)
    source = os.fspath(path)
    model = _build_on_meta(checkpoint)
    if model is not None:
        load_weights(model, checkpoint.state_dict, head=None, source=source, assign=True)
        if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
            log.info("%s: %s keeps tensors outside its state dict; built with a normal initialisation",
                     source, checkpoint.model_name)
            model = None
    if model is None:
        model = create_model(checkpoint.model_name, **checkpoint.model_kwargs)
        load_weights(model, checkpoint.state_dict, head=None, source=source)
    return model.to(device).eval(), checkpoint


def _build_on_meta(checkpoint: Checkpoint) -> nn.Module | None:
    try:
        with torch.device("meta"):
            return create_model(checkpoint.model_name, **checkpoint.model_kwargs)
    except Exception as exc:  # noqa: BLE001 - some constructors compute values; build those normally
        log.info("%s cannot be built on the meta device (%s: %s)", checkpoint.model_name, type(exc).__name__, exc)
        return None
