"""2D face classifiers from timm, and NTechLab's clip variant of EfficientNet-B7.

* ``legacy_seresnext50_32x4d`` -- the Medics' 2D seed model as they built it: Cadene's
  SE-ResNeXt50 (timm's ``legacy_`` port, same keys and output) as ``backbone``, dropout
  0.5, ``fc``. Their published ``SRXT50_*.PTH`` loads into it as it is.
* ``seresnext50_32x4d`` -- timm's newer SE-ResNeXt50 (its stem max-pool pads differently,
  about 1.4 % off the Cadene output on the same weights); kept for runs trained with it.
* ``efficientnet_b0`` ... ``efficientnet_b7`` -- timm's ``tf_efficientnet_bN`` (the TF
  "SAME"-padded ports whose ImageNet weights the 1st place solution fine-tuned), at the
  sides Selim Seferbekov trained on; B7 with stochastic depth 0.2 as he used.
* ``efficientnet_b7_seq`` -- NTechLab (DFDC 3rd place) sequence model: every MBConv
  expansion 1x1 conv becomes a (3, 1, 1) temporal conv, so each block mixes a frame with
  its two neighbours; everything else runs per frame. Input ``(B, 3, T, H, W)``.

timm is imported inside the builders so ``import dfdc_fast.models`` stays light.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dfdc_fast.models.registry import ModelSpec, register_model


def _timm():
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - timm is in requirements.txt
        raise ImportError("the 2D models need timm: pip install timm") from exc
    return timm


def timm_model(arch: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """A randomly initialised timm model (weights come only from local files, see create_model)."""
    return _timm().create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)


@register_model("seresnext50_32x4d", ModelSpec(
    "seresnext50_32x4d", "2d", 256, 1, "imagenet", "SE-ResNeXt50 32x4d (timm), dropout 0.5 before the head", head="fc"))
def seresnext50_32x4d(*, num_classes: int = 1, drop_rate: float = 0.5, **kwargs: Any) -> nn.Module:
    return timm_model("seresnext50_32x4d", num_classes=num_classes, drop_rate=drop_rate, **kwargs)


class SingleHead(nn.Module):
    """A pooled-feature backbone, dropout, one linear head: the Medics' ``SingleHead``, whose
    state dict holds ``backbone.*`` and ``fc.*``."""

    def __init__(self, backbone: nn.Module, num_features: int, *, num_classes: int = 1, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


@register_model("legacy_seresnext50_32x4d", ModelSpec(
    "legacy_seresnext50_32x4d", "2d", 256, 1, "imagenet",
    "SE-ResNeXt50 32x4d as the Medics trained it (Cadene layout, timm legacy_), dropout 0.5, fc", head="fc"))
def legacy_seresnext50_32x4d(*, num_classes: int = 1, dropout: float = 0.5) -> nn.Module:
    backbone = timm_model("legacy_seresnext50_32x4d", num_classes=0)
    return SingleHead(backbone, backbone.num_features, num_classes=num_classes, dropout=dropout)


# Training sides per variant; B7 at 380 rather than its native 600, as the 1st place did.
EFFICIENTNET_SIDES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 380}


def _register_efficientnet(variant: str, side: int) -> None:
    name = f"efficientnet_{variant}"
    default_drop_path = 0.2 if variant == "b7" else 0.0

    def build(*, num_classes: int = 1, drop_path_rate: float = default_drop_path, **kwargs: Any) -> nn.Module:
        return timm_model(f"tf_efficientnet_{variant}", num_classes=num_classes, drop_path_rate=drop_path_rate, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"timm tf_efficientnet_{variant}, {side} px, stochastic depth {default_drop_path}."
    register_model(name, ModelSpec(name, "2d", side, 1, "imagenet", f"EfficientNet-{variant.upper()} (timm tf_ port)",
                                   head="classifier"))(build)
    globals()[name] = build


for _variant, _side in EFFICIENTNET_SIDES.items():
    _register_efficientnet(_variant, _side)


# --------------------------------------------------------------------------- sequence EfficientNet

TEMPORAL_INITS = ("mean", "center")
TEMPORAL_PADDINGS = ("replicate", "zeros")
SEQUENCE_OUTPUTS = ("clip", "frames")


def inflate_pointwise_weight(weight: torch.Tensor, init: str = "mean") -> torch.Tensor:
    """A 1x1 conv weight ``(O, I, 1, 1)`` as a (3, 1, 1) temporal weight ``(O, I, 3, 1, 1)``.

    ``mean``: each tap is weight / 3, so a clip of identical frames gives exactly the 2D
    response (NTechLab's initialisation). ``center``: the middle tap is the weight and the
    others zero, so any clip gives the 2D network applied frame by frame.
    """
    if weight.dim() != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"expected a 1x1 conv weight (O, I, 1, 1), got {tuple(weight.shape)}")
    if init == "mean":
        return weight.unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    if init == "center":
        out = weight.new_zeros(weight.shape[:2] + (3, 1, 1))
        out[:, :, 1] = weight
        return out
    raise ValueError(f"temporal_init must be one of {TEMPORAL_INITS}, got {init!r}")


class TemporalPointwiseConv(nn.Conv3d):
    """A 1x1 conv widened to (3, 1, 1) over time, inside a network that runs on frames.

    Takes and returns frame batches ``(B*T, C, H, W)`` (clip-major, as the wrapper folds
    them); ``frames`` is set by :class:`SequenceEfficientNet` before each forward. The
    parameter keeps the name and output of the 2D conv it replaces, so 2D ImageNet
    weights load after inflation.
    """

    def __init__(self, conv2d: nn.Conv2d, *, temporal_init: str = "mean", temporal_padding: str = "replicate"):
        super().__init__(conv2d.in_channels, conv2d.out_channels, (3, 1, 1), padding=(1, 0, 0),
                         bias=conv2d.bias is not None, padding_mode=temporal_padding,
                         device=conv2d.weight.device, dtype=conv2d.weight.dtype)
        self.frames = 1
        with torch.no_grad():
            self.weight.copy_(inflate_pointwise_weight(conv2d.weight, temporal_init))
            if conv2d.bias is not None:
                self.bias.copy_(conv2d.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames_total, channels, height, width = x.shape
        t = self.frames
        if frames_total % t:
            raise ValueError(f"{frames_total} frames do not split into clips of {t}")
        clip = x.reshape(frames_total // t, t, channels, height, width).transpose(1, 2)
        out = super().forward(clip)
        return out.transpose(1, 2).reshape(frames_total, self.out_channels, height, width)


class ClipDropPath(nn.Module):
    """Stochastic depth drawn per clip, not per frame.

    The temporal convs mix neighbouring frames, so dropping a block for some frames of a
    clip and not others would feed the next block a half-dropped mixture.
    """

    def __init__(self, drop_prob: float, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.scale_by_keep = scale_by_keep
        self.frames = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        t = self.frames
        mask = x.new_empty((x.shape[0] // t, 1) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if self.scale_by_keep and keep > 0:
            mask = mask / keep
        return (x.reshape((-1, t) + x.shape[1:]) * mask).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def _is_expansion_conv(block: nn.Module, inverted_residual: type) -> bool:
    # Only InvertedResidual: in timm's DepthwiseSeparableConv `conv_pw` is the projection
    # after the depthwise conv, not an expansion.
    conv = getattr(block, "conv_pw", None)
    return (isinstance(block, inverted_residual) and isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.out_channels != conv.in_channels)


class SequenceEfficientNet(nn.Module):
    """A timm EfficientNet turned into a clip classifier ``(B, 3, T, H, W) -> (B, classes)``.

    Frames are folded into the batch for the 2D layers; the temporal expansion convs
    unfold them. ``output="clip"``: features are averaged over time and space, then the 2D
    head (dropout, linear) gives ``(B, classes)``, i.e. the mean of per-frame logits when
    nothing mixes time. ``output="frames"``: the head runs on each frame's pooled features
    and gives ``(B, T, classes)``, one logit per frame, as NTechLab's model did (their
    video score pools every frame's probability).
    """

    def __init__(self, net2d: nn.Module, *, temporal_init: str = "mean", temporal_padding: str = "replicate",
                 output: str = "clip"):
        super().__init__()
        if temporal_init not in TEMPORAL_INITS:
            raise ValueError(f"temporal_init must be one of {TEMPORAL_INITS}, got {temporal_init!r}")
        if temporal_padding not in TEMPORAL_PADDINGS:
            raise ValueError(f"temporal_padding must be one of {TEMPORAL_PADDINGS}, got {temporal_padding!r}")
        if output not in SEQUENCE_OUTPUTS:
            raise ValueError(f"output must be one of {SEQUENCE_OUTPUTS}, got {output!r}")
        self.output = output
        for required in ("forward_features", "classifier", "blocks"):
            if not hasattr(net2d, required):
                raise TypeError(f"expected a timm EfficientNet (no {required!r} on {type(net2d).__name__})")
        self.net = net2d
        self.temporal_init = temporal_init
        self.temporal_conv_names: list[str] = []
        timm = _timm()
        from timm.models._efficientnet_blocks import InvertedResidual

        for name, block in list(net2d.named_modules()):
            if _is_expansion_conv(block, InvertedResidual):
                block.conv_pw = TemporalPointwiseConv(block.conv_pw, temporal_init=temporal_init,
                                                      temporal_padding=temporal_padding)
                self.temporal_conv_names.append(f"{name}.conv_pw")
            if isinstance(getattr(block, "drop_path", None), timm.layers.DropPath):
                old = block.drop_path
                block.drop_path = ClipDropPath(old.drop_prob, getattr(old, "scale_by_keep", True))
        if not self.temporal_conv_names:
            raise TypeError(f"no MBConv expansion convs found in {type(net2d).__name__}")

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Spatially pooled features of every frame ``(B, T, num_features)``."""
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        # Looked up on every call, not cached: DataParallel runs replicas of these modules.
        for module in self.modules():
            if isinstance(module, (TemporalPointwiseConv, ClipDropPath)):
                module.frames = frames
        flat = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        feats = self.net.forward_features(flat)
        return feats.mean(dim=(2, 3)).reshape(batch, frames, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled clip features ``(B, num_features)``."""
        return self.frame_features(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.frame_features(x) if self.output == "frames" else self.forward_features(x)
        drop_rate = float(getattr(self.net, "drop_rate", 0.0))
        if drop_rate > 0:
            pooled = F.dropout(pooled, p=drop_rate, training=self.training)
        return self.net.classifier(pooled)

    def adapt_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept the 2D parent's weights too: add the ``net.`` prefix, inflate the 1x1 convs."""
        out = dict(state_dict)
        if out and not any(k.startswith("net.") for k in out):
            out = {f"net.{k}": v for k, v in out.items()}
        for name in self.temporal_conv_names:
            key = f"net.{name}.weight"
            if key in out and out[key].dim() == 4:
                out[key] = inflate_pointwise_weight(out[key], self.temporal_init)
        return out


def inflate_efficientnet(net2d: nn.Module, *, temporal_init: str = "mean", temporal_padding: str = "replicate",
                         output: str = "clip") -> SequenceEfficientNet:
    """Wrap a timm EfficientNet as a sequence model; ``net2d`` is modified and owned by the result."""
    return SequenceEfficientNet(net2d, temporal_init=temporal_init, temporal_padding=temporal_padding, output=output)


def efficientnet_seq(variant: str = "tf_efficientnet_b0", *, num_classes: int = 1, temporal_init: str = "mean",
                     temporal_padding: str = "replicate", output: str = "clip",
                     **timm_kwargs: Any) -> SequenceEfficientNet:
    """NTechLab-style sequence EfficientNet from any timm EfficientNet ``variant``.

    ``temporal_padding`` is the Conv3d padding mode along time: ``replicate`` (our default)
    keeps the first and last frames consistent with the 2D net on a still clip; ``zeros``
    is the plain Conv3d behaviour, NTechLab's. ``output``: ``clip`` (one logit per clip,
    ours) or ``frames`` (one per frame, theirs).
    """
    net2d = timm_model(variant, num_classes=num_classes, **timm_kwargs)
    return inflate_efficientnet(net2d, temporal_init=temporal_init, temporal_padding=temporal_padding, output=output)


@register_model("efficientnet_b7_seq", ModelSpec(
    "efficientnet_b7_seq", "3d", 224, 7, "imagenet",
    "EfficientNet-B7 with (3,1,1) temporal expansion convs (NTechLab)", head="net.classifier"))
def efficientnet_b7_seq(*, num_classes: int = 1, drop_path_rate: float = 0.2, **kwargs: Any) -> SequenceEfficientNet:
    return efficientnet_seq("tf_efficientnet_b7", num_classes=num_classes, drop_path_rate=drop_path_rate, **kwargs)


@register_model("efficientnet_b0_seq", ModelSpec(
    "efficientnet_b0_seq", "3d", 224, 7, "imagenet",
    "EfficientNet-B0 with (3,1,1) temporal expansion convs: a small stand-in for efficientnet_b7_seq (CI, smoke runs)",
    head="net.classifier"))
def efficientnet_b0_seq(*, num_classes: int = 1, drop_path_rate: float = 0.0, **kwargs: Any) -> SequenceEfficientNet:
    return efficientnet_seq("tf_efficientnet_b0", num_classes=num_classes, drop_path_rate=drop_path_rate, **kwargs)


__all__ = ["timm_model", "efficientnet_b0_seq", "seresnext50_32x4d", "legacy_seresnext50_32x4d", "SingleHead", "EFFICIENTNET_SIDES", "TemporalPointwiseConv", "ClipDropPath",
           "SequenceEfficientNet", "inflate_efficientnet", "inflate_pointwise_weight", "efficientnet_seq",
           "efficientnet_b7_seq"] + [f"efficientnet_{v}" for v in EFFICIENTNET_SIDES]
