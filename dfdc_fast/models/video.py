"""3D CNNs over face clips ``(B, 3, T, H, W)``: the Medics' (DFDC 5th place) seed models.

* :func:`i3d` -- Inception-3D (Carreira & Zisserman 2017). Module names follow the
  widely used PyTorch port (``Conv3d_1a_7x7``, ``Mixed_3b.b1a``, ``logits.conv3d`` ...)
  so its Kinetics state dicts load as they are.
* :func:`r3d_34` -- 3D ResNet-34 of Hara et al. (2018) with the parameter-free type-A
  shortcut; names follow their code (``conv1``, ``layer1.0.bn2``, ``fc``).
* :func:`mc3_18`, :func:`r2plus1d_18` -- torchvision's video ResNets with a new ``fc``.

All end in global average pooling by default, so any clip length and side that survives
the strides works (I3D: T >= 8 and H, W >= 32 keep every stage non-empty and meaningful);
I3D also has the Medics' windowed head (``head_pool="windows"``), which their weights need.
Normalisation per model is the Medics': I3D ``x * 2 - 1``, Res34 raw 0..255, MC3 and
R(2+1)D ImageNet.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dfdc_fast.models.registry import ModelSpec, register_model

# --------------------------------------------------------------------------- I3D

def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding for one dimension: output = ceil(size / stride), extra on the far side."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad wants W, H, T
        pads.extend(_same_padding(int(size), k, s))
    return F.pad(x, pads) if any(pads) else x


def _triple(v) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


class ConvUnit3d(nn.Module):
    """Conv3d + BatchNorm3d + ReLU with TF "SAME" padding computed from the input size.

    The padding depends on the actual size, so odd clip lengths and sides give the same
    output sizes TensorFlow gave when the Kinetics weights were trained.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel=1, stride=1, *,
                 batch_norm: bool = True, activation: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        # eps/momentum of the TF original (momentum 0.01 in PyTorch's convention).
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.activation else x


class MaxPoolSame3d(nn.Module):
    """Max pooling with TF "SAME" padding (zeros: every pool here follows a ReLU)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock3d(nn.Module):
    """Four parallel branches concatenated on channels.

    ``widths`` = [1x1, 1x1 -> 3x3 (reduce, out), 1x1 -> 3x3 (reduce, out), pool -> 1x1].
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = ConvUnit3d(in_channels, w0, 1)
        self.b1a = ConvUnit3d(in_channels, w1a, 1)
        self.b1b = ConvUnit3d(w1a, w1b, 3)
        self.b2a = ConvUnit3d(in_channels, w2a, 1)
        self.b2b = ConvUnit3d(w2a, w2b, 3)
        self.b3a = MaxPoolSame3d(3, 1)
        self.b3b = ConvUnit3d(in_channels, w3, 1)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# name -> (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj): Table of the I3D / GoogLeNet papers.
I3D_INCEPTION_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


I3D_HEAD_POOLS = ("global", "windows")
#: The Medics' (piergiaj's) head: average windows of 2 x 7 x 7 with stride 1, a logit per window.
I3D_WINDOW = (2, 7, 7)


class InceptionI3d(nn.Module):
    """Inflated Inception-v1 for clips; logits from a 1x1x1 conv after pooling.

    ``head_pool="global"`` averages the whole feature map (ours: any clip length and side).
    ``"windows"`` is the head the Medics trained (piergiaj's port): ``AvgPool3d([2, 7, 7],
    stride 1)``, a logit per time window, then the mean over windows, so the first and last
    time steps weigh half; it needs a 7 x 7 map (224 px input).
    """

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5,
                 head_pool: str = "global"):
        super().__init__()
        if head_pool not in I3D_HEAD_POOLS:
            raise ValueError(f"head_pool must be one of {I3D_HEAD_POOLS}, got {head_pool!r}")
        self.head_pool = head_pool
        self.Conv3d_1a_7x7 = ConvUnit3d(in_channels, 64, 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPoolSame3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = ConvUnit3d(64, 64, 1)
        self.Conv3d_2c_3x3 = ConvUnit3d(64, 192, 3)
        self.MaxPool3d_3a_3x3 = MaxPoolSame3d((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in I3D_INCEPTION_WIDTHS.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame3d(3, 2)
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame3d(2, 2)
            block = InceptionBlock3d(channels, widths)
            setattr(self, name, block)
            channels = block.out_channels
        self.feature_stages = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
                               "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b",
                               "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2",
                               "Mixed_5b", "Mixed_5c")
        self.num_features = channels  # 1024
        self.dropout = nn.Dropout(dropout)
        self.logits = ConvUnit3d(channels, num_classes, 1, batch_norm=False, activation=False, bias=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(B, 1024, T', H', W')`` before pooling."""
        for name in self.feature_stages:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_clip(x)
        features = self.forward_features(x)
        if self.head_pool == "global":
            return self.logits(self.dropout(F.adaptive_avg_pool3d(features, 1))).flatten(1)
        if features.shape[3] < I3D_WINDOW[1] or features.shape[4] < I3D_WINDOW[2]:
            raise ValueError(f"the windows head needs a 7 x 7 feature map (224 px input), got {tuple(features.shape[3:])}")
        # A clip of under 9 frames has one time step: one window of it (theirs would fail there).
        window = (min(I3D_WINDOW[0], features.shape[2]),) + I3D_WINDOW[1:]
        windows = self.logits(self.dropout(F.avg_pool3d(features, window, stride=1)))  # (B, C, T', H', W')
        return windows.mean(dim=(2, 3, 4))


def _check_clip(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- 3D ResNet (Hara et al.)

class BasicBlock3d(nn.Module):
    """Two 3x3x3 convs; the shortcut is type A (subsample, zero-pad channels: no parameters)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)
        self.stride = stride
        self.extra_channels = channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            # Same positions a 3x3x3 conv with padding 1 and this stride is centred on.
            x = x[:, :, ::self.stride, ::self.stride, ::self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet3d(nn.Module):
    """3D ResNet with BasicBlocks and type-A shortcuts, as in Hara et al.'s Kinetics models."""

    def __init__(self, layers=(3, 4, 6, 3), *, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        channels = 64
        for index, (blocks, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock3d(channels, width, stride)] + [BasicBlock3d(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            channels = width
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_clip(x)
        return self.fc(F.adaptive_avg_pool3d(self.forward_features(x), 1).flatten(1))


# --------------------------------------------------------------------------- builders

@register_model("i3d", ModelSpec(
    "i3d", "3d", 224, 64, "i3d", "Inception-3D (Carreira & Zisserman 2017), Kinetics layout", head="logits"))
def i3d(*, num_classes: int = 1, dropout: float = 0.5, in_channels: int = 3, head_pool: str = "global") -> nn.Module:
    return InceptionI3d(num_classes=num_classes, dropout=dropout, in_channels=in_channels, head_pool=head_pool)


@register_model("r3d_34", ModelSpec(
    "r3d_34", "3d", 224, 32, "none", "3D ResNet-34, type-A shortcuts (Hara et al. 2018)", head="fc"))
def r3d_34(*, num_classes: int = 1, in_channels: int = 3) -> nn.Module:
    return ResNet3d((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)


def _torchvision_video(builder_name: str, num_classes: int) -> nn.Module:
    # torchvision is imported here, not at module import, to keep `import dfdc_fast` light.
    from torchvision.models import video as tv_video

    model = getattr(tv_video, builder_name)(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


_MC3_DESCRIPTION = "torchvision MC3-18 (mixed 3D/2D convolutions)"


@register_model("mc3_18", ModelSpec("mc3_18", "3d", 112, 32, "imagenet", _MC3_DESCRIPTION + ", 112 px"))
def mc3_18(*, num_classes: int = 1) -> nn.Module:
    return _torchvision_video("mc3_18", num_classes)


@register_model("mc3_18_224", ModelSpec("mc3_18_224", "3d", 224, 32, "imagenet", _MC3_DESCRIPTION + ", 224 px"))
def mc3_18_224(*, num_classes: int = 1) -> nn.Module:
    return _torchvision_video("mc3_18", num_classes)


@register_model("r2plus1d_18", ModelSpec(
    "r2plus1d_18", "3d", 112, 32, "imagenet", "torchvision R(2+1)D-18 (factorised space/time convolutions)"))
def r2plus1d_18(*, num_classes: int = 1) -> nn.Module:
    return _torchvision_video("r2plus1d_18", num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not); buffers excluded."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["InceptionI3d", "ResNet3d", "ConvUnit3d", "InceptionBlock3d", "BasicBlock3d",
           "i3d", "r3d_34", "mc3_18", "mc3_18_224", "r2plus1d_18", "count_parameters"]
