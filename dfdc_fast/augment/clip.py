"""Training and test transforms for face clips, after the Medics' 3D CNNs (DFDC 5th place).

A clip is a float tensor ``(B, C, T, H, W)`` in [0, 1]. Every random parameter is drawn
per clip and applied identically to all of its frames, so the temporal signal the 3D
models look for is not disturbed by frame-to-frame jitter.

The Medics' training sets, per model (``medics_clip_augment``):

======================  =====  ===========================================================
model                   size   training augmentation
======================  =====  ===========================================================
I3D, R3D                224    BrightnessContrast p .25, RandomResizedCrop (scale 0.5-1,
                               ratio 0.9-1.1), HFlip p .5
MC3                     112    as above + GaussianBlur p .1 + GaussNoise (std 5/255) p .1
R(2+1)D                 112    as MC3, RandomResizedCrop scale 0.33-1
======================  =====  ===========================================================

At test time (``ClipEval``): 224 models take the centre 224 of the 256 clip; 112 models
resize the shorter side to 128 and take the centre 112.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfdc_fast.augment._common import (Augment, Params, Sampler, check_range, device_generator,
                                       gaussian_kernels, separable_blur)


def sample_resized_crop(sampler: Sampler, n: int, height: int, width: int,
                        scale: tuple[float, float], ratio: tuple[float, float],
                        attempts: int = 10) -> torch.Tensor:
    """Crop boxes ``(n, 4)`` as float ``x0, y0, x1, y1`` in pixels, torchvision's rule.

    Up to ``attempts`` (area, aspect) proposals per sample are drawn at once; the first that
    fits the frame wins, else the centre crop with the aspect clamped to ``ratio``. Boxes
    are continuous (sub-pixel), which the bilinear resampling uses directly.
    """
    area = float(height * width)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * sampler.uniform(scale[0], scale[1], n, attempts)
    aspect = torch.exp(sampler.uniform(log_r[0], log_r[1], n, attempts))
    cw = torch.sqrt(target * aspect)
    ch = torch.sqrt(target / aspect)
    fits = (cw > 0) & (ch > 0) & (cw <= width) & (ch <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    cw = cw.gather(1, first).squeeze(1)
    ch = ch.gather(1, first).squeeze(1)
    ok = fits.any(dim=1)

    # fallback: whole frame, aspect clamped into ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    cw = torch.where(ok, cw, torch.full_like(cw, fw))
    ch = torch.where(ok, ch, torch.full_like(ch, fh))

    u = sampler.rand(n, 2)
    # fallback boxes are centred; accepted ones placed uniformly
    u = torch.where(ok[:, None], u, torch.full_like(u, 0.5))
    x0 = u[:, 0] * (width - cw)
    y0 = u[:, 1] * (height - ch)
    return torch.stack([x0, y0, x0 + cw, y0 + ch], dim=1)


def crop_theta(boxes: torch.Tensor, flip: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` matrices (align_corners=False) that map the output square onto each
    box, mirrored where ``flip`` is set, so crop, resize and flip are one resampling."""
    x0, y0, x1, y1 = boxes.unbind(1)
    sx = (x1 - x0) / width
    sy = (y1 - y0) / height
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    tx = (x0 + x1) / width - 1.0
    ty = (y0 + y1) / height - 1.0
    zero = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)


class ClipAugment(Augment):
    """The Medics' 3D training augmentation, on the clips' device, one set of parameters per clip.

    Order: random resized crop + horizontal flip (one ``grid_sample`` over all frames of all
    clips), brightness/contrast, Gaussian blur, Gaussian noise. Brightness/contrast follow
    albumentations' RandomBrightnessContrast: ``x * (1 + c) + b``, clamped to [0, 1].
    Resampling is bilinear without antialiasing (crops are at most ~2x larger than the output).

    Args:
        size: output side (224 or 112 for the Medics' models).
        scale: crop area as a fraction of the frame.
        ratio: crop aspect ratio (width / height).
        hflip: probability of a horizontal flip.
        brightness_contrast_p, brightness, contrast: probability and ranges of b and c.
        blur_p, blur_sigma: probability and sigma range of the Gaussian blur (kernel radius
            ceil(3 sigma) per clip).
        noise_p, noise_std: probability and std of additive Gaussian noise (fresh noise per
            pixel and frame; whether and how much is per clip).
        crop_attempts: proposals per clip before falling back to the centre crop.
    """

    def __init__(self, size: int, *, scale: Sequence[float] = (0.5, 1.0), ratio: Sequence[float] = (0.9, 1.1),
                 hflip: float = 0.5, brightness_contrast_p: float = 0.25, brightness: float = 0.2,
                 contrast: float = 0.2, blur_p: float = 0.0, blur_sigma: Sequence[float] = (0.1, 2.0),
                 noise_p: float = 0.0, noise_std: float = 5 / 255, crop_attempts: int = 10):
        super().__init__()
        self.size = int(size)
        self.scale = check_range("scale", scale)
        self.ratio = check_range("ratio", ratio)
        if self.scale[0] <= 0 or self.ratio[0] <= 0:
            raise ValueError("scale and ratio must be positive")
        self.hflip = float(hflip)
        self.brightness_contrast_p = float(brightness_contrast_p)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.blur_p = float(blur_p)
        self.blur_sigma = check_range("blur_sigma", blur_sigma)
        self.noise_p = float(noise_p)
        self.noise_std = float(noise_std)
        self.crop_attempts = int(crop_attempts)

    def extra_repr(self) -> str:
        return (f"size={self.size}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, "
                f"brightness_contrast_p={self.brightness_contrast_p}, blur_p={self.blur_p}, noise_p={self.noise_p}")

    def sample_params(self, batch_shape, device=None, generator=None) -> Params:
        """Per-clip parameters; ops whose probability is 0 get no keys (and are skipped)."""
        b, _, _, h, w = batch_shape
        s = Sampler(generator, device)
        p: Params = {"box": sample_resized_crop(s, b, h, w, self.scale, self.ratio, self.crop_attempts),
                     "flip": s.bernoulli(self.hflip, b)}
        if self.brightness_contrast_p > 0:
            p["brightness_contrast"] = s.bernoulli(self.brightness_contrast_p, b)
            p["brightness"] = s.uniform(-self.brightness, self.brightness, b)
            p["contrast"] = s.uniform(-self.contrast, self.contrast, b)
        if self.blur_p > 0:
            p["blur"] = s.bernoulli(self.blur_p, b)
            p["blur_sigma"] = s.uniform(self.blur_sigma[0], self.blur_sigma[1], b)
        if self.noise_p > 0:
            p["noise"] = s.bernoulli(self.noise_p, b)
            p["noise_std"] = torch.full((b,), self.noise_std, device=s.device)
            p["noise_seed"] = s.seed()
        return p

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        s = self.size
        # frames of a clip become channels: one grid per clip serves all its frames
        planes = x.reshape(b, c * t, h, w)
        theta = crop_theta(params["box"], params.get("flip"), h, w).to(x.dtype)
        grid = F.affine_grid(theta, [b, c * t, s, s], align_corners=False)
        out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="border", align_corners=False)

        if "brightness_contrast" in params:
            on = params["brightness_contrast"]
            alpha = torch.where(on, 1.0 + params["contrast"], torch.ones_like(params["contrast"]))
            beta = torch.where(on, params["brightness"], torch.zeros_like(params["brightness"]))
            out = (out * alpha.to(x.dtype).view(b, 1, 1, 1) + beta.to(x.dtype).view(b, 1, 1, 1)).clamp_(0.0, 1.0)
        if "blur" in params:
            sigma = torch.where(params["blur"], params["blur_sigma"], torch.zeros_like(params["blur_sigma"]))
            radius = max(1, math.ceil(3.0 * self.blur_sigma[1]))
            radius = min(radius, s - 1)
            out = separable_blur(out, gaussian_kernels(sigma.float(), radius))
        if "noise" in params:
            std = torch.where(params["noise"], params["noise_std"], torch.zeros_like(params["noise_std"]))
            noise = torch.randn(out.shape, generator=device_generator(params["noise_seed"], out.device),
                                device=out.device, dtype=out.dtype)
            out = (out + noise * std.to(x.dtype).view(b, 1, 1, 1)).clamp_(0.0, 1.0)
        return out.view(b, c, t, s, s)


EVAL_MODES = ("center", "resize_center")


class ClipEval(nn.Module):
    """Deterministic test transform: centre crop (224 models, from 256 clips), or resize the
    shorter side to ``resize_to`` and centre crop (112 models: 128 then 112).

    ``resize_to`` defaults to size * 8 / 7 (256 for 224, 128 for 112). Resizing is bilinear
    with antialiasing, since it shrinks the clip by 2x.
    """

    def __init__(self, size: int, mode: str = "center", resize_to: int | None = None):
        super().__init__()
        if mode not in EVAL_MODES:
            raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
        self.size = int(size)
        self.mode = mode
        self.resize_to = int(resize_to) if resize_to is not None else int(round(size * 8 / 7))
        if self.resize_to < self.size:
            raise ValueError(f"resize_to {self.resize_to} < size {self.size}")

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}, resize_to={self.resize_to}"

    def sample_params(self, batch_shape, device=None, generator=None) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params | None = None) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if self.mode == "resize_center":
            k = self.resize_to / min(h, w)
            nh, nw = max(self.size, round(h * k)), max(self.size, round(w * k))
            if (nh, nw) != (h, w):
                planes = F.interpolate(x.reshape(b, c * t, h, w), size=(nh, nw), mode="bilinear",
                                       align_corners=False, antialias=True)
                x = planes.clamp_(0.0, 1.0).view(b, c, t, nh, nw)
                h, w = nh, nw
        if h < self.size or w < self.size:
            raise ValueError(f"clip {h}x{w} is smaller than the crop {self.size}; use mode='resize_center'")
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x)


MEDICS_VARIANTS = ("i3d", "r3d", "mc3", "r2plus1d")


def medics_clip_augment(model_size: int, variant: str) -> ClipAugment:
    """The Medics' training set for ``variant`` (see the module table) at ``model_size``.

    The blur's sigma range is this module's default (0.1-2.0); albumentations' GaussianBlur
    default (kernels 3-7) would be about sigma 0.8-1.4.
    """
    v = variant.lower().replace("(", "").replace(")", "").replace("+", "plus").replace("-", "").replace("_", "")
    if v not in MEDICS_VARIANTS:
        raise ValueError(f"variant must be one of {MEDICS_VARIANTS}, got {variant!r}")
    kw: dict = dict(scale=(0.5, 1.0), ratio=(0.9, 1.1), hflip=0.5, brightness_contrast_p=0.25,
                    brightness=0.2, contrast=0.2)
    if v in ("mc3", "r2plus1d"):
        kw.update(blur_p=0.1, noise_p=0.1, noise_std=5 / 255)
    if v == "r2plus1d":
        kw["scale"] = (0.33, 1.0)
    return ClipAugment(model_size, **kw)


def medics_clip_eval(model_size: int) -> ClipEval:
    """Test transform: centre 224 of 256 for 224 models, 128-then-centre-112 for 112 models."""
    if model_size >= 224:
        return ClipEval(model_size, mode="center")
    return ClipEval(model_size, mode="resize_center")
