"""Foreign weights into dfdc_fast checkpoints: read without running code, map every key, record where from.

The DFDC winners published pickled ``torch.save`` files. :func:`read_foreign` opens them
with ``weights_only=True``, allowing only the numpy scalar and dtype globals that their
metadata needs (Selim's ``bce_best`` is a ``numpy.float64``); a file that needs anything
else is refused with the global named, and nothing in it runs. :class:`KeyMap` makes a
conversion strict on the source side (every key used once, or dropped with a reason);
:func:`write_converted` is strict on the target side (the model's every key filled, in
name and shape) and writes a checkpoint whose config holds the provenance.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from dfdc_fast.models.checkpoint import save_checkpoint
from dfdc_fast.models.registry import create_model, load_weights, model_spec

#: Bumped whenever a converter's mapping changes, so a converted file says which one made it.
CONVERSION_VERSION = 1


def _numpy_globals() -> list:
    """The numpy objects a pickled numpy scalar refers to, under the names numpy 1.x
    (the 2020 files) and 2.x write."""
    from numpy._core import multiarray

    out: list = [(multiarray.scalar, "numpy._core.multiarray.scalar"),
                 (multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            out.append(getattr(dtypes, name))
    return out


def read_foreign(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` allowing only numpy scalars and dtypes.

    Raises ``ValueError`` naming the global when the file needs any other (a class, a
    function: something that would run on load).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        name = found.group(1) if found else f"unknown ({str(exc).strip().splitlines()[-1][:200]})"
        raise ValueError(f"{path}: refused, it needs the global {name}, which is not a numpy scalar or dtype "
                         "(loading it would run code from the file)") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file has several error types
        raise ValueError(f"{path}: cannot be read as torch weights ({type(exc).__name__}: {exc})") from None


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plain_metadata(value: Any) -> Any:
    """Numpy scalars as Python numbers, so the checkpoint's config stays plain data."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


class KeyMap:
    """The source state dict, handed out key by key; :meth:`finish` refuses any key that
    was neither taken nor dropped with a reason."""

    def __init__(self, source: Mapping[str, torch.Tensor], name: str):
        bad = [k for k, v in source.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad or not source:
            raise ValueError(f"{name}: not a state dict (entries that are not named tensors: {bad[:3]})")
        self.source, self.name = dict(source), name
        self.taken: set[str] = set()
        self.dropped: dict[str, str] = {}

    def keys(self) -> list[str]:
        return list(self.source)

    def take(self, key: str) -> torch.Tensor:
        if key not in self.source:
            raise ValueError(f"{self.name}: expected key {key!r} is missing")
        if key in self.taken:
            raise ValueError(f"{self.name}: key {key!r} mapped twice")
        self.taken.add(key)
        return self.source[key]

    def drop(self, key: str, why: str) -> None:
        if key not in self.source:
            raise ValueError(f"{self.name}: key {key!r} to drop is missing")
        self.dropped[key] = why

    def finish(self) -> dict[str, str]:
        left = [k for k in self.source if k not in self.taken and k not in self.dropped]
        if left:
            more = f" (+{len(left) - 5} more)" if len(left) > 5 else ""
            raise ValueError(f"{self.name}: {len(left)} source keys neither used nor dropped on purpose: "
                             f"{', '.join(left[:5])}{more}")
        return dict(self.dropped)


@dataclass
class Converted:
    """What a converter makes of one published file."""

    model_name: str
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)      # input_size, crop rules: what inference reads
    dropped: dict[str, str] = field(default_factory=dict)     # source key -> why it is not used
    metadata: dict[str, Any] = field(default_factory=dict)    # the file's own entries (epoch, bce_best)
    source_dtypes: list[str] = field(default_factory=list)


def two_class_head_to_one(weight: torch.Tensor, bias: torch.Tensor, fake: int = 0, real: int = 1):
    """A 2-class softmax head as one logit of FAKE: softmax_fake = sigmoid(z_fake - z_real)
    exactly, so the logit's weights are ``w_fake - w_real`` and ``b_fake - b_real``."""
    if weight.shape[0] != 2 or bias.shape != (2,):
        raise ValueError(f"expected a 2-class head, got weight {tuple(weight.shape)} and bias {tuple(bias.shape)}")
    w, b = weight.double(), bias.double()  # the difference in float64, cast once to the model's dtype
    return (w[fake] - w[real]).unsqueeze(0), (b[fake] - b[real]).reshape(1)


def prepare_converted(converted: Converted, source: str | os.PathLike, *, recipe: str) -> tuple[torch.nn.Module, dict]:
    """``converted`` loaded strictly into its model (every key filled, shapes equal; floating
    tensors cast to the model's dtype), and the checkpoint config with the provenance."""
    source = os.fspath(source)
    with torch.device("meta"):
        model = create_model(converted.model_name, **converted.model_kwargs)
    own = model.state_dict()
    state = {}
    for key, value in converted.state_dict.items():
        target = own.get(key)
        if target is not None and value.is_floating_point() and target.is_floating_point():
            value = value.to(target.dtype)
        state[key] = value.contiguous()
    load_weights(model, state, head=None, source=f"{source} ({recipe} conversion)", assign=True)
    provenance = {
        "source_file": os.path.basename(source),
        "sha256": sha256(source),
        "recipe": recipe,
        "conversion_version": CONVERSION_VERSION,
        "source_dtypes": sorted(set(converted.source_dtypes)),
        "dropped_keys": converted.dropped,
        "source_metadata": {k: plain_metadata(v) for k, v in converted.metadata.items()},
    }
    config = {"input_size": model_spec(converted.model_name).input_size, **converted.config, "provenance": provenance}
    return model, config


def write_converted(converted: Converted, source: str | os.PathLike, out_path: str | os.PathLike, *,
                    recipe: str) -> str:
    """:func:`prepare_converted`, then the checkpoint written atomically; returns its path."""
    model, config = prepare_converted(converted, source, recipe=recipe)
    save_checkpoint(out_path, model, model_name=converted.model_name, model_kwargs=converted.model_kwargs,
                    config=config)
    return os.fspath(out_path)


def dtypes_of(state: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})


__all__ = ["CONVERSION_VERSION", "Converted", "KeyMap", "read_foreign", "sha256", "two_class_head_to_one",
           "write_converted", "prepare_converted", "plain_metadata", "dtypes_of"]
