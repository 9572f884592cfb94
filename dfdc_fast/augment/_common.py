"""Pieces shared by the clip and image augmentations: the sample/apply base class,
generator-driven sampling, per-sample Gaussian blur and the lazy kornia import."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Params = dict[str, torch.Tensor]


def require_kornia(what: str = "this augmentation"):
    """kornia is optional for the package as a whole, so it is imported only where used."""
    try:
        import kornia
    except ImportError as e:  # pragma: no cover - kornia is installed in the dev env
        raise ImportError(f"{what} needs kornia: pip install kornia") from e
    return kornia


class Sampler:
    """Draws random parameters from one generator and hands them over on ``device``.

    Drawing happens on the generator's own device (a CPU generator stays valid for CUDA
    batches and gives the same parameters whatever the batch's device); only the small
    parameter tensors move. Without a generator, the default RNG of ``device`` is used.
    """

    def __init__(self, generator: torch.Generator | None, device: torch.device | str | None):
        self.generator = generator
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.draw_device = generator.device if generator is not None else self.device

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True) if t.device != self.device else t

    def rand(self, *shape: int) -> torch.Tensor:
        return self._out(torch.rand(shape, generator=self.generator, device=self.draw_device))

    def randn(self, *shape: int) -> torch.Tensor:
        return self._out(torch.randn(shape, generator=self.generator, device=self.draw_device))

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * self.rand(*shape)

    def bernoulli(self, p: float, *shape: int) -> torch.Tensor:
        return self.rand(*shape) < p

    def randperm(self, n: int) -> torch.Tensor:
        return self._out(torch.randperm(n, generator=self.generator, device=self.draw_device))

    def host_uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        """:meth:`uniform` kept on the host (the same draws), for values a library reads there."""
        t = lo + (hi - lo) * torch.rand(shape, generator=self.generator, device=self.draw_device)
        return t if t.device.type == "cpu" else t.cpu()

    def seed(self) -> torch.Tensor:
        """A seed for per-pixel randomness drawn later in ``apply``; kept on the CPU so that
        seeding a device generator from it needs no device-to-host copy."""
        s = torch.randint(0, 2**62, (1,), generator=self.generator, device=self.draw_device)
        return s if s.device.type == "cpu" else s.cpu()

    def gamma(self, shape_param: float, n: int, tries: int = 16) -> torch.Tensor:
        """Gamma(shape_param, 1) by Marsaglia-Tsang, vectorised over ``tries`` proposals
        (torch's own gamma sampler takes no generator). Each proposal is accepted with
        probability > 0.95, so falling back to the mode after 16 rejections never matters."""
        a = float(shape_param)
        if a <= 0:
            raise ValueError(f"gamma shape must be > 0, got {a}")
        d = (a + 1.0 if a < 1.0 else a) - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        z = self.randn(n, tries)
        u = self.rand(n, tries)
        v = (1.0 + c * z) ** 3
        v_pos = v.clamp_min(1e-12)
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z * z + d - d * v_pos + d * torch.log(v_pos))
        first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
        g = d * v_pos.gather(1, first).squeeze(1)
        g = torch.where(ok.any(dim=1), g, torch.full_like(g, d))
        if a < 1.0:  # boost: Gamma(a) = Gamma(a + 1) * U^(1/a)
            g = g * self.rand(n).clamp_min(1e-30) ** (1.0 / a)
        return g

    def beta(self, a: float, b: float, n: int) -> torch.Tensor:
        """Beta(a, b); exactly uniform for a = b = 1 (the common CutMix setting)."""
        if a == 1.0 and b == 1.0:
            return self.rand(n)
        x, y = self.gamma(a, n), self.gamma(b, n)
        return x / (x + y).clamp_min(1e-30)


def device_generator(seed: torch.Tensor, device: torch.device) -> torch.Generator:
    """A generator on the data's device, so per-pixel noise is drawn where it is used."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed.numpy().reshape(-1)[0]) if seed.device.type == "cpu" else int(seed.reshape(-1)[0]))
    return g


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """One normalised 1D Gaussian per sample, ``(N, 2 * radius + 1)``.

    Every kernel shares the tensor width (one conv launch), but each sample's support is cut
    at ceil(3 sigma), so its effective kernel size follows its own sigma. sigma = 0 gives a
    delta, i.e. no blur, which is how unselected samples skip the blur without a branch.
    """
    x = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    s = sigma.clamp_min(1e-6)[:, None]
    support = torch.ceil(3.0 * s).clamp(min=1.0)
    w = torch.exp(-(x * x) / (2.0 * s * s)) * (x.abs() <= support)
    return w / w.sum(dim=1, keepdim=True)


def separable_blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur ``x`` (N, C, H, W) with kernel ``kernels[n]`` on every channel of sample n.

    One grouped conv per axis over all N*C planes; reflect-101 borders like OpenCV's default.
    """
    n, c, h, w = x.shape
    k = kernels.shape[1]
    r = k // 2
    if r == 0:
        return x
    if r >= h or r >= w:
        raise ValueError(f"blur radius {r} too large for a {h}x{w} image")
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0)  # (N*C, K)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), weight.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), weight.view(n * c, 1, k, 1), groups=n * c)
    return y.view(n, c, h, w)


def per_sample(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast a per-sample value over a ``ndim``-dim batch."""
    return v.view(-1, *([1] * (ndim - 1)))


def check_range(name: str, r: Sequence[float]) -> tuple[float, float]:
    lo, hi = float(r[0]), float(r[1])
    if lo > hi:
        raise ValueError(f"{name}: lower bound {lo} > upper bound {hi}")
    return lo, hi


class Augment(nn.Module):
    """Base class: parameters are drawn once per sample by ``sample_params`` and used by
    ``apply``, so a parameter set can be logged, replayed or shared between inputs."""

    def sample_params(self, batch_shape: Sequence[int], device=None,
                      generator: torch.Generator | None = None) -> Params:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.sample_params(x.shape, x.device, generator))
