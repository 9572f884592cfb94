"""The three MTCNN networks (Zhang et al. 2016) with the weights facenet-pytorch ships.

Layer names follow the state dicts in facenet-pytorch's package data (``pnet.pt``,
``rnet.pt``, ``onet.pt``), so they load with ``strict=True``. Nothing is downloaded:
the weights are read from the installed facenet-pytorch package (or a folder you give).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional

import torch
from torch import nn


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained on features flattened in (width, height, channel)
    # order, as the original Caffe model laid them out.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: fully convolutional, a 12x12 window every 2 pixels.

    Returns box offsets ``(N, 4, h, w)`` and face probabilities ``(N, h, w)``. ``spill``
    (bool, the first conv's output size) marks positions set to ``-inf`` before the pool:
    see ``pyramid.py``, which packs every pyramid scale into one input.
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x, spill=None):
        x = self.prelu1(self.conv1(x))
        if spill is not None:
            x = x.masked_fill_(spill, float("-inf"))  # in place: keeps channels-last
        x = self.pool1(x)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement net on 24x24 crops: box offsets ``(M, 4)`` and face probabilities ``(M,)``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_whc(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output net on 48x48 crops: box offsets ``(M, 4)``, landmarks ``(M, 10)`` (5 x, then
    5 y, relative to the box) and face probabilities ``(M,)``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def facenet_weights_dir() -> str:
    """The ``data`` folder of the installed facenet-pytorch package (found without importing it)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MTCNN weights come from the facenet-pytorch package: `pip install --no-deps facenet-pytorch==2.6.0` "
            "(scripts/setup.sh does this), or pass weights_dir= a folder holding pnet.pt, rnet.pt and onet.pt"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_nets(weights_dir: Optional[str] = None, device: torch.device | str = "cpu") -> tuple[PNet, RNet, ONet]:
    """Build the three nets, load their weights strictly and put them in eval mode on ``device``."""
    folder = weights_dir or facenet_weights_dir()
    nets = []
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        path = os.path.join(folder, f"{name}.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MTCNN weights {path} not found")
        net = cls()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        nets.append(net.eval().requires_grad_(False).to(device))
    return tuple(nets)
