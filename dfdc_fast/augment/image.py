"""2D face-crop augmentations on the device: Selim Seferbekov's heavy set (DFDC 1st place)
and Ian Pan's light flips/channel-shuffle set with MixUp-or-CutMix.

Images are float ``(B, C, H, W)`` in [0, 1]; parameters are drawn per image by
``sample_params`` and used by ``apply``. kornia (optional) supplies the JPEG codec and the
hue/saturation ops; the rest is plain torch.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from dfdc_fast.augment._common import (Augment, Params, Sampler, check_range, device_generator,
                                       gaussian_kernels, per_sample, require_kornia, separable_blur)
from dfdc_fast.augment.cutmix import CutMixResult, cutmix2d, mixup

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY


def isotropic_resize_pad(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the longer side is ``size`` (aspect kept; area when shrinking, bicubic when
    enlarging), then zero-pad to ``size`` x ``size`` with the content centred.

    The pair Selim used (IsotropicResize + PadIfNeeded): faces keep their shape, whatever
    the crop's aspect.
    """
    h, w = x.shape[-2:]
    k = size / max(h, w)
    nh, nw = min(size, max(1, round(h * k))), min(size, max(1, round(w * k)))
    if (nh, nw) != (h, w):
        mode = "area" if k < 1 else "bicubic"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kw)
        if mode == "bicubic":
            x = x.clamp(0.0, 1.0)  # bicubic overshoots at edges
    top, left = (size - nh) // 2, (size - nw) // 2
    if top or left or nh != size or nw != size:
        x = F.pad(x, (left, size - nw - left, top, size - nh - top))
    return x


def to_gray3(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated over the three channels (the model still sees RGB)."""
    wts = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype).to(x.device, non_blocking=True).view(1, 3, 1, 1)
    return (x * wts).sum(dim=1, keepdim=True).expand_as(x)


def fancy_pca(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """AlexNet-style PCA colour shift per image: add ``V @ (alpha * eigvals)`` of the image's
    RGB covariance to every pixel (alpha = 0 leaves the image unchanged)."""
    b, c = x.shape[:2]
    xf = x.float().reshape(b, c, -1)
    xc = xf - xf.mean(dim=2, keepdim=True)
    cov = xc @ xc.transpose(1, 2) / max(1, xf.shape[2] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    delta = evecs @ (alpha.float() * evals.clamp_min(0.0)).unsqueeze(2)  # (B, C, 1)
    return (x + delta.to(x.dtype).unsqueeze(3)).clamp(0.0, 1.0)


def hue_saturation_value(x: torch.Tensor, hue: torch.Tensor, saturation: torch.Tensor,
                         value: torch.Tensor) -> torch.Tensor:
    """HSV jitter per image: hue shift (radians), saturation factor, value shift, in one
    RGB->HSV->RGB round trip (kornia's adjust_hue + adjust_saturation would make two)."""
    kornia = require_kornia("hue/saturation jitter")
    hsv = kornia.color.rgb_to_hsv(x)
    hsv = kornia.enhance.adjust_saturation_raw(hsv, saturation.to(x.dtype))
    hsv = kornia.enhance.adjust_hue_raw(hsv, hue.to(x.dtype))
    h, s, v = hsv.unbind(1)
    v = (v + value.to(x.dtype).view(-1, 1, 1)).clamp(0.0, 1.0)
    return kornia.color.hsv_to_rgb(torch.stack([h, s, v], dim=1)).clamp(0.0, 1.0)


def ssr_theta(angle_deg: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
              height: int, width: int) -> torch.Tensor:
    """``affine_grid`` matrices for shift-scale-rotate about the image centre, in the inverse
    (output -> input) direction grid_sample needs; ``shift`` is a fraction of (W, H)."""
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    # inverse of scale * R(a) in centred pixels, conjugated into normalised coordinates
    m00, m01, m10, m11 = cos, sin, -sin, cos
    sx, sy = shift[:, 0] * width, shift[:, 1] * height
    vx, vy = m00 * sx + m01 * sy, m10 * sx + m11 * sy
    row0 = torch.stack([m00, m01 * height / width, -vx / (width / 2)], dim=1)
    row1 = torch.stack([m10 * width / height, m11, -vy / (height / 2)], dim=1)
    return torch.stack([row0, row1], dim=1)


def _rect_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) mask of float boxes ``x0, y0, x1, y1`` (pixel centres inside)."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    my = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    mx = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    return (my[:, :, None] & mx[:, None, :]).unsqueeze(1)


class SelimImageAugment(Augment):
    """Selim Seferbekov's heavy 2D training set, batched on the device.

    In order: cut-out, JPEG-like compression (kornia's differentiable codec, quality 60-100)
    p .5, Gaussian noise (variance 10-50 on the 0-255 scale) p .1, 3x3 Gaussian blur
    (sigma 0.8, OpenCV's for ksize 3) p .05, horizontal flip p .5, isotropic resize to
    ``size`` + centred zero pad, one of {brightness/contrast, FancyPCA, hue/saturation/value}
    p .7, to-gray p .2, shift-scale-rotate (shift 0.1, scale 0.2, rotate 10 deg, zero border)
    p .5.

    Selim blacked out landmark regions (eyes, nose, mouth, convex-hull halves) in his
    dataset, which needs facial landmarks; ``cutout_p`` offers only a random rectangle
    (side fractions in ``cutout_size``), off by default. Interpolation is fixed to area-down /
    cubic-up (Selim picked among three pairs at random). Ops with probability 0 are skipped;
    others run on the whole batch and are selected per image, which avoids host syncs.
    """

    def __init__(self, size: int = 380, *, jpeg_p: float = 0.5, jpeg_quality: Sequence[float] = (60, 100),
                 noise_p: float = 0.1, noise_var: Sequence[float] = (10.0, 50.0), blur_p: float = 0.05,
                 hflip: float = 0.5, color_p: float = 0.7, brightness: float = 0.2, contrast: float = 0.2,
                 pca_alpha: float = 0.1, hue: float = 20 / 180, saturation: float = 0.3, value: float = 20 / 255,
                 gray_p: float = 0.2, ssr_p: float = 0.5, shift: float = 0.1, scale: float = 0.2,
                 rotate: float = 10.0, cutout_p: float = 0.0, cutout_size: Sequence[float] = (0.1, 0.4)):
        super().__init__()
        self.size = int(size)
        self.jpeg_p, self.jpeg_quality = float(jpeg_p), check_range("jpeg_quality", jpeg_quality)
        self.noise_p, self.noise_var = float(noise_p), check_range("noise_var", noise_var)
        self.blur_p, self.hflip = float(blur_p), float(hflip)
        self.color_p, self.brightness, self.contrast = float(color_p), float(brightness), float(contrast)
        self.pca_alpha, self.hue, self.saturation, self.value = float(pca_alpha), float(hue), float(saturation), float(value)
        self.gray_p = float(gray_p)
        self.ssr_p, self.shift, self.scale, self.rotate = float(ssr_p), float(shift), float(scale), float(rotate)
        self.cutout_p, self.cutout_size = float(cutout_p), check_range("cutout_size", cutout_size)
        if self.jpeg_p > 0 or self.color_p > 0:
            require_kornia("SelimImageAugment (JPEG, hue/saturation)")

    def extra_repr(self) -> str:
        return (f"size={self.size}, jpeg_p={self.jpeg_p}, noise_p={self.noise_p}, blur_p={self.blur_p}, "
                f"hflip={self.hflip}, color_p={self.color_p}, gray_p={self.gray_p}, ssr_p={self.ssr_p}, "
                f"cutout_p={self.cutout_p}")

    def sample_params(self, batch_shape, device=None, generator=None) -> Params:
        b = batch_shape[0]
        s = Sampler(generator, device)
        p: Params = {}
        if self.cutout_p > 0:
            p["cutout"] = s.bernoulli(self.cutout_p, b)
            frac = s.uniform(self.cutout_size[0], self.cutout_size[1], b, 2)  # (w, h) fractions
            pos = s.rand(b, 2) * (1.0 - frac)
            p["cutout_box"] = torch.cat([pos, pos + frac], dim=1)  # normalised x0, y0, x1, y1
        if self.jpeg_p > 0:
            p["jpeg"] = s.bernoulli(self.jpeg_p, b)
            # on the host: kornia reads the qualities' range there (two syncs per batch on a GPU
            # for a device tensor), then copies them to the images' device without waiting
            p["jpeg_quality"] = s.host_uniform(self.jpeg_quality[0], self.jpeg_quality[1], b)
        if self.noise_p > 0:
            p["noise"] = s.bernoulli(self.noise_p, b)
            p["noise_std"] = torch.sqrt(s.uniform(self.noise_var[0], self.noise_var[1], b)) / 255.0
            p["noise_seed"] = s.seed()
        if self.blur_p > 0:
            p["blur"] = s.bernoulli(self.blur_p, b)
        if self.hflip > 0:
            p["flip"] = s.bernoulli(self.hflip, b)
        if self.color_p > 0:
            on = s.bernoulli(self.color_p, b)
            choice = torch.floor(s.rand(b) * 3).long().clamp_max(2)
            p["color"] = torch.where(on, choice, torch.full_like(choice, -1))  # -1 none, 0 BC, 1 PCA, 2 HSV
            p["brightness"] = s.uniform(-self.brightness, self.brightness, b)
            p["contrast"] = s.uniform(-self.contrast, self.contrast, b)
            p["pca_alpha"] = s.randn(b, 3) * self.pca_alpha
            p["hue"] = s.uniform(-self.hue, self.hue, b) * (2 * math.pi)
            p["saturation"] = s.uniform(1.0 - self.saturation, 1.0 + self.saturation, b)
            p["value"] = s.uniform(-self.value, self.value, b)
        if self.gray_p > 0:
            p["gray"] = s.bernoulli(self.gray_p, b)
        if self.ssr_p > 0:
            p["ssr"] = s.bernoulli(self.ssr_p, b)
            p["ssr_angle"] = s.uniform(-self.rotate, self.rotate, b)
            p["ssr_scale"] = s.uniform(1.0 - self.scale, 1.0 + self.scale, b)
            p["ssr_shift"] = s.uniform(-self.shift, self.shift, b, 2)
        return p

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        nd = x.dim()

        def pick(on: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
            return torch.where(per_sample(on, nd), new, old)

        if "cutout" in params:
            box = params["cutout_box"] * torch.tensor([w, h, w, h], dtype=torch.float32).to(x.device, non_blocking=True)
            hole = _rect_mask(box, h, w) & per_sample(params["cutout"], nd)
            x = x.masked_fill(hole, 0.0)
        if "jpeg" in params:
            kornia = require_kornia("JPEG compression")
            coded = kornia.enhance.jpeg_codec_differentiable(x, params["jpeg_quality"].to(x.dtype))
            x = pick(params["jpeg"], coded.clamp(0.0, 1.0), x)
        if "noise" in params:
            std = torch.where(params["noise"], params["noise_std"], torch.zeros_like(params["noise_std"]))
            noise = torch.randn(x.shape, generator=device_generator(params["noise_seed"], x.device),
                                device=x.device, dtype=x.dtype)
            x = (x + noise * per_sample(std.to(x.dtype), nd)).clamp(0.0, 1.0)
        if "blur" in params:
            sigma = torch.where(params["blur"], 0.8, 0.0).float()
            x = separable_blur(x, gaussian_kernels(sigma, 1))
        if "flip" in params:
            x = pick(params["flip"], x.flip(-1), x)

        x = isotropic_resize_pad(x, self.size)

        if "color" in params:
            color = params["color"]
            # brightness/contrast: neutral parameters where not chosen, so no select needed
            bc = color == 0
            alpha = torch.where(bc, 1.0 + params["contrast"], torch.ones_like(params["contrast"]))
            beta = torch.where(bc, params["brightness"], torch.zeros_like(params["brightness"]))
            x = (x * per_sample(alpha.to(x.dtype), nd) + per_sample(beta.to(x.dtype), nd)).clamp(0.0, 1.0)
            pca = (color == 1)[:, None]
            x = fancy_pca(x, torch.where(pca, params["pca_alpha"], torch.zeros_like(params["pca_alpha"])))
            hsv_on = color == 2
            x = pick(hsv_on, hue_saturation_value(x, params["hue"], params["saturation"], params["value"]), x)
        if "gray" in params:
            x = pick(params["gray"], to_gray3(x), x)
        if "ssr" in params:
            s = self.size
            theta = ssr_theta(params["ssr_angle"], params["ssr_scale"], params["ssr_shift"], s, s).to(x.dtype)
            grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False)
            warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = pick(params["ssr"], warped, x)
        return x


class IanPanImageAugment(Augment):
    """Ian Pan's light 2D set: one of {none, H, V, H+V} flips uniformly, and a random
    permutation of the colour channels with probability ``channel_shuffle_p`` (uniform over
    all permutations, identity included). Works on any ``(B, C, ..., H, W)``."""

    def __init__(self, channel_shuffle_p: float = 1.0):
        super().__init__()
        self.channel_shuffle_p = float(channel_shuffle_p)

    def extra_repr(self) -> str:
        return f"channel_shuffle_p={self.channel_shuffle_p}"

    def sample_params(self, batch_shape, device=None, generator=None) -> Params:
        b, c = batch_shape[0], batch_shape[1]
        s = Sampler(generator, device)
        flip = torch.floor(s.rand(b) * 4).long().clamp_max(3)  # bit 0: horizontal, bit 1: vertical
        perm = torch.argsort(s.rand(b, c), dim=1)
        shuffle = s.bernoulli(self.channel_shuffle_p, b)
        ident = torch.arange(c, device=perm.device).expand(b, c)
        return {"flip": flip, "channel_perm": torch.where(shuffle[:, None], perm, ident)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        nd = x.dim()
        flip = params["flip"]
        x = torch.where(per_sample((flip & 1) == 1, nd), x.flip(-1), x)
        x = torch.where(per_sample((flip & 2) == 2, nd), x.flip(-2), x)
        perm = params["channel_perm"].view(*params["channel_perm"].shape, *([1] * (nd - 2)))
        return x.gather(1, perm.expand_as(x))


def mixup_or_cutmix2d(images: torch.Tensor, targets: torch.Tensor, mixup_alpha: float = 0.4,
                      cutmix_alpha: float = 1.0, generator: torch.Generator | None = None) -> CutMixResult:
    """Ian Pan's batch mixing: MixUp (Beta(mixup_alpha)) or CutMix (Beta(cutmix_alpha)), 50/50
    per batch. The coin is tossed on the generator's device (CPU by default, so no device
    sync); the result works with ``mixed_bce_loss`` / ``mixed_ce_loss`` either way."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    if float(torch.rand(1, generator=generator, device=draw_device)) < 0.5:
        return mixup(images, targets, alpha=mixup_alpha, generator=generator)
    return cutmix2d(images, targets, alpha=cutmix_alpha, generator=generator)
