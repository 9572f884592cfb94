"""NTechLab's pair augmentation: a REAL and a FAKE clip of one face, augmented alike.

Their training pipeline, on the CPU (it re-encodes with libx264): with probability ``p``
both clips are re-encoded with one random draw of frame rate, scale and x264 settings
(:class:`~dfdc_fast.augment.reencode.Reencode`), resized so the shorter side is
``min_size``, flipped, randomly cropped to ``crop`` and, with probability ``autoaugment``,
passed through timm's AutoAugment ``original-mstd0.5``. Validation: resize and centre crop.

Every draw comes from one generator seeded by the item (``random.Random(seed)``), so an
item gives the same pixels in any process, in any order. timm's AutoAugment draws from
the ``random`` module; it is handed a generator seeded from the item's for each call, so
the process's global random state is never seeded or touched.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: ``decode(path, frame_indices)`` -> uint8 ``(T, H, W, 3)``; ``probe(path)`` -> ``(frames, height, width)``
Decode = Callable[[str, list], np.ndarray]
Probe = Callable[[str], tuple]

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclass(frozen=True)
class PairOptions:
    """How a pair is prepared (the ``pair_*`` options of a training config)."""

    crop: tuple = (224, 192)          # random (train) / centre (val) crop, height x width
    min_size: int = 224               # clips resized so their shorter side is this first
    reencode: dict = field(default_factory=dict)  # Reencode kwargs; {} off (NTechLab: p 0.5)
    autoaugment: float = 0.0          # probability of AutoAugment per draw (NTechLab: 0.5)
    same_aug: bool = True             # one draw for every frame of both clips (their sequence mode)

    def __post_init__(self):
        crop = tuple(int(v) for v in self.crop)
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"crop is (height, width) in pixels, got {self.crop}")
        object.__setattr__(self, "crop", crop)
        if int(self.min_size) < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")
        if not 0.0 <= float(self.autoaugment) <= 1.0:
            raise ValueError(f"autoaugment is a probability, got {self.autoaugment}")

    @classmethod
    def from_dict(cls, options: dict | None) -> "PairOptions":
        """From the loaders' option mapping (``crop``, ``min_size``, ``reencode``, ``autoaugment``, ``same_aug``)."""
        options = dict(options or {})
        unknown = set(options) - {"crop", "min_size", "reencode", "autoaugment", "same_aug"}
        if unknown:
            raise ValueError(f"unknown pair options {sorted(unknown)}")
        return cls(**{k: v for k, v in options.items() if v is not None})


_AUTOAUGMENT: dict = {}


def _autoaugment(crop: tuple):
    """timm's AutoAugment ``original-mstd0.5`` as NTechLab built it (translate 45% of the
    shorter crop side, ImageNet mean fill); one per process and crop."""
    key = tuple(crop)
    if key not in _AUTOAUGMENT:
        from timm.data.auto_augment import auto_augment_transform

        _AUTOAUGMENT[key] = auto_augment_transform(
            "original-mstd0.5",
            {"translate_const": int(min(crop) * 0.45), "img_mean": tuple(round(255 * x) for x in IMAGENET_MEAN)})
    return _AUTOAUGMENT[key]


@contextlib.contextmanager
def _drawing_from(rng: random.Random):
    """timm's AutoAugment module draws from ``rng`` inside the block (its ``random`` name,
    restored after): the same draws ``random.seed`` would give, without touching the
    process's global generator."""
    from timm.data import auto_augment

    before = auto_augment.random
    auto_augment.random = rng
    try:
        yield
    finally:
        auto_augment.random = before


class PairAugment:
    """``augment(item)`` -> uint8 ``(2, T, crop_h, crop_w, 3)``: the REAL and FAKE frames of a
    pair item (``real``, ``fake``, ``indices``, ``seed``, ``train``; see
    :class:`~dfdc_fast.train.plan.PairItem`) prepared as :class:`PairOptions` say. The clips
    are read with ``decode`` and ``probe`` (module-level functions, so worker processes can
    take them: the training loaders pass their keyframe-seeking window decoder)."""

    def __init__(self, options: PairOptions | dict | None = None, *, decode: Decode, probe: Probe):
        self.options = options if isinstance(options, PairOptions) else PairOptions.from_dict(options)
        self.decode, self.probe = decode, probe

    def __call__(self, item) -> np.ndarray:
        import cv2

        from dfdc_fast.augment.reencode import Reencode, map_indices, reencode

        opt = self.options
        rng = random.Random(item.seed)
        crop = opt.crop
        n, h, w = self.probe(item.real)
        params = None
        if item.train and opt.reencode:
            params = Reencode(**opt.reencode).sample(rng, 30.0, h, w)  # their clips: 30 fps
        clips = []
        for path in (item.real, item.fake):
            if params is None:
                frames = self.decode(path, list(item.indices))
            else:
                whole = self.decode(path, list(range(n)))
                coded = reencode(whole, 30.0, params)
                frames = coded[map_indices(item.indices, n, len(coded))]
            clips.append(frames)
        if clips[0].shape != clips[1].shape:
            raise ValueError(f"pair clips differ in shape: {item.real} {clips[0].shape}, {item.fake} {clips[1].shape}")
        t, fh, fw = clips[0].shape[:3]
        scale = opt.min_size / min(fh, fw)
        nh, nw = max(crop[0], round(fh * scale)), max(crop[1], round(fw * scale))
        p_aa = float(opt.autoaugment) if item.train else 0.0

        def draw():
            if not item.train:
                return False, (nh - crop[0]) // 2, (nw - crop[1]) // 2, False, 0
            return (rng.random() < 0.5, rng.randint(0, nh - crop[0]), rng.randint(0, nw - crop[1]),
                    rng.random() < p_aa, rng.getrandbits(62))

        states = [draw()] * t if opt.same_aug else [draw() for _ in range(t)]
        out = np.empty((2, t, crop[0], crop[1], 3), dtype=np.uint8)
        for c, frames in enumerate(clips):
            for i in range(t):
                flip, y0, x0, aa, aa_seed = states[i]
                img = cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_LINEAR)  # albumentations' SmallestMaxSize
                if flip:
                    img = img[:, ::-1]
                img = np.ascontiguousarray(img[y0:y0 + crop[0], x0:x0 + crop[1]])
                if aa:
                    from PIL import Image

                    with _drawing_from(random.Random(aa_seed)):  # the same ops on every frame of a draw
                        img = np.asarray(_autoaugment(crop)(Image.fromarray(img)))
                out[c, i] = img
        return out


__all__ = ["PairAugment", "PairOptions"]
