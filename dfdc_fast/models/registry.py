"""Model registry: one name per architecture, with what its inputs must look like.

The trainer, the inference job and checkpoints refer to models by name only, so the
name must be enough to rebuild the network and to prepare its input (clip length, side,
pixel scaling). :class:`ModelSpec` carries those facts; :func:`create_model` builds.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

log = logging.getLogger(__name__)

NORMALIZATIONS = ("i3d", "none", "imagenet")
KINDS = ("3d", "2d")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model expects.

    ``kind`` is ``"3d"`` for clip input ``(B, 3, T, H, W)`` and ``"2d"`` for image input
    ``(B, 3, H, W)``; ``frames`` is the training clip length (1 for 2D); ``normalization``
    names the pixel scaling :func:`normalize` applies. ``head`` is the module path of the
    classifier, i.e. the parameters a fine-tune from another label set replaces.
    """

    name: str
    kind: str
    input_size: int
    frames: int
    normalization: str
    description: str = ""
    head: str = "fc"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.input_size <= 0 or self.frames <= 0:
            raise ValueError(f"input_size and frames must be positive, got {self.input_size}, {self.frames}")
        if self.kind == "2d" and self.frames != 1:
            raise ValueError(f"a 2d model takes one frame, got frames={self.frames}")


Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}
_SPECS: dict[str, ModelSpec] = {}


def register_model(name: str, spec: ModelSpec) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(*, num_classes, **kwargs) -> nn.Module`` as ``name``."""
    if spec.name != name:
        raise ValueError(f"spec.name {spec.name!r} differs from the registered name {name!r}")

    def decorator(builder: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        _SPECS[name] = spec
        return builder

    return decorator


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_BUILDERS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model."""
    _check_name(name)
    return _SPECS[name]


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")


def create_model(name: str, *, num_classes: int = 1, pretrained: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model that returns logits ``(B, num_classes)``.

    ``pretrained`` is a local file only (a state dict, a dfdc_fast checkpoint, or a dict
    holding ``"state_dict"``/``"model"``); nothing is ever downloaded. Its classifier is
    skipped when its shape differs from ``num_classes`` (the Kinetics/ImageNet head of a
    backbone being fine-tuned), every other key must match exactly.
    """
    _check_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if pretrained is False:
        pretrained = None
    if pretrained is True:
        raise ValueError("pretrained=True is not supported: pass a local file path (weights are never downloaded)")
    model = _BUILDERS[name](num_classes=num_classes, **kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained, head=_SPECS[name].head)
    return model


# --------------------------------------------------------------------------- weights

def extract_state_dict(obj: Any, source: str = "weights") -> dict[str, torch.Tensor]:
    """The state dict inside what ``torch.load`` returned, with DDP/compile prefixes removed."""
    if isinstance(obj, Mapping) and not _looks_like_state_dict(obj):
        fmt = obj.get("format")
        if isinstance(fmt, str) and fmt.startswith("dfdc_fast.checkpoint/"):
            obj = obj.get("state_dict")
        else:
            for key in ("state_dict", "model"):
                if isinstance(obj.get(key), Mapping):
                    obj = obj[key]
                    break
    if not isinstance(obj, Mapping) or not _looks_like_state_dict(obj):
        raise ValueError(f"{source}: no state dict found (expected a dict of tensors, a dfdc_fast checkpoint, "
                         "or a dict with a 'state_dict' or 'model' entry)")
    out = {}
    for key, value in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _looks_like_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) for k in obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _head_keys(model: nn.Module, head: str) -> set[str]:
    prefix = head + "."
    return {k for k in model.state_dict() if k.startswith(prefix)}


def _sample(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, head: str | None = None,
                 source: str = "weights", assign: bool = False) -> list[str]:
    """Load ``state_dict`` into ``model``; every key must match in name and shape.

    With ``head`` given, the classifier keys under that module path may be absent, or
    be skipped when their shapes differ (a head for another number of classes). Returns
    the skipped keys. Any other difference raises :class:`ValueError` naming the keys.
    ``assign=True`` takes the file's tensors as the parameters (for a model built on the
    meta device, which has no values to copy into); keys the file lacks then get zeros
    (BatchNorm's counters) and a head left to its initialisation is refused.
    """
    adapt = getattr(model, "adapt_state_dict", None)
    if callable(adapt):
        state_dict = adapt(state_dict)
    own = model.state_dict()
    head_keys = _head_keys(model, head) if head else set()
    skipped = sorted(k for k in head_keys if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape))
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state_dict and k not in head_keys
                  and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    # BatchNorm counters are absent from files written before torch 0.4.1 (e.g. the public
    # I3D and 3D-ResNet Kinetics weights); BatchNorm itself fills them in, they hold no weights.
    missing = [k for k in own if k not in state_dict and k not in head_keys and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_sample(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_sample(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {_sample(mismatched)}")
        raise ValueError(f"{source} do not fit {type(model).__name__}: " + "; ".join(parts))
    not_loaded = sorted(set(skipped) | (head_keys - set(state_dict)))
    # A complete dict, loaded strictly: the file's tensors, plus the model's own values for
    # exactly the keys allowed to differ (a re-initialised head, absent BatchNorm counters).
    complete = {k: (own[k] if k in not_loaded or k not in state_dict else state_dict[k]) for k in own}
    if assign:
        if not_loaded:
            raise ValueError(f"{source}: cannot assign weights, the classifier {_sample(not_loaded)} has no values")
        complete = {k: (torch.zeros(v.shape, dtype=v.dtype) if v.is_meta else v) for k, v in complete.items()}
    model.load_state_dict(complete, strict=True, assign=assign)
    if not_loaded:
        log.info("%s: classifier left at its initialisation (%s)", source, _sample(not_loaded))
    return not_loaded


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, head: str | None) -> list[str]:
    """Load a local weights file into ``model`` (see :func:`load_weights`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"pretrained weights file not found: {path!r} (pass a local file path; nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors have several types across torch versions
        raise ValueError(f"{path}: cannot be read as weights ({type(exc).__name__}: {exc})") from exc
    return load_weights(model, extract_state_dict(obj, path), head=head, source=path)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with every 4-D tensor in ``channels_last`` and every 5-D one in
    ``channels_last_3d``: the format follows each weight's rank, not the model's kind (a
    sequence B7 is a "3d" model whose convs are mostly 2-D, with 3-D temporal ones)."""
    def convert(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        return t

    return model._apply(convert)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The channels-last format for an input of ``x``'s rank (4-D images, 5-D clips)."""
    return torch.channels_last_3d if x.dim() == 5 else torch.channels_last


# --------------------------------------------------------------------------- inputs

@functools.lru_cache(maxsize=64)
def _imagenet_constants(device: torch.device, dtype: torch.dtype, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Filled on the device itself (scalar fills), so not even the first call copies from the host.
    # Made outside inference mode: cached inference tensors could not be saved for a later backward.
    shape = (1, 3) + (1,) * (ndim - 2)
    with torch.inference_mode(False), torch.no_grad():
        mean = torch.empty(3, device=device, dtype=dtype)
        std = torch.empty(3, device=device, dtype=dtype)
        for c in range(3):
            mean[c].fill_(IMAGENET_MEAN[c])
            std[c].fill_(IMAGENET_STD[c])
    return mean.view(shape), std.view(shape)


def normalize(x: torch.Tensor, spec_or_name: ModelSpec | str) -> torch.Tensor:
    """Scale pixels in [0, 1] (channels at dim 1) to what the model was trained on.

    ``i3d``: ``x * 2 - 1``; ``none``: ``x * 255`` (raw 0..255 values); ``imagenet``:
    ``(x - mean) / std``. Runs on ``x``'s device and dtype; returns a new tensor.
    """
    spec = spec_or_name if isinstance(spec_or_name, ModelSpec) else model_spec(spec_or_name)
    if not torch.is_floating_point(x):
        raise TypeError(f"normalize expects floats in [0, 1], got {x.dtype} (divide uint8 frames by 255 first)")
    if x.dim() not in (4, 5) or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) or (B, 3, T, H, W), got {tuple(x.shape)}")
    if spec.normalization == "i3d":
        return x * 2 - 1
    if spec.normalization == "none":
        return x * 255
    mean, std = _imagenet_constants(x.device, x.dtype, x.dim())
    return (x - mean) / std

