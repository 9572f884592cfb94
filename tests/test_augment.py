"""dfdc_fast.augment: clip/image augmentations and CutMix/MixUp, on the CPU (CUDA where present)."""
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dfdc_fast.augment import (ClipAugment, ClipEval, CutMix3d, IanPanImageAugment, SelimImageAugment, cutmix2d,
                               cutmix3d, isotropic_resize_pad, medics_clip_augment, medics_clip_eval,
                               mixed_bce_loss, mixed_ce_loss, mixup, mixup_or_cutmix2d, sample_resized_crop)
from dfdc_fast.augment._common import Sampler, gaussian_kernels
from dfdc_fast.augment.image import ssr_theta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def off(**kw):
    """A ClipAugment config with every random op off unless named."""
    base = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, brightness_contrast_p=0.0)
    base.update(kw)
    return base


# ---------------------------------------------------------------- clips

@pytest.mark.parametrize("device", DEVICES)
def test_clip_shape_range_device(device):
    x = torch.rand(3, 3, 4, 40, 48, device=device)
    aug = ClipAugment(32, brightness_contrast_p=1.0, brightness=0.5, contrast=0.5, blur_p=0.5, noise_p=0.5)
    y = aug(x, generator=gen())
    assert y.shape == (3, 3, 4, 32, 32)
    assert y.device == x.device and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1


def test_clip_same_params_on_every_frame():
    frame = torch.rand(2, 3, 1, 40, 40)
    x = frame.expand(-1, -1, 6, -1, -1).contiguous()
    aug = ClipAugment(24, scale=(0.2, 1.0), brightness_contrast_p=1.0, blur_p=1.0)
    y = aug(x, generator=gen(1))
    for t in range(1, 6):
        torch.testing.assert_close(y[:, :, t], y[:, :, 0], rtol=0, atol=1e-6)
    # noise is fresh per pixel and frame, its parameters per clip
    yn = ClipAugment(24, **off(noise_p=1.0, noise_std=0.05))(x, generator=gen(1))
    assert not torch.allclose(yn[:, :, 1], yn[:, :, 0])


def test_clip_params_differ_across_clips():
    x = torch.rand(1, 3, 3, 40, 40).expand(4, -1, -1, -1, -1).contiguous()
    aug = ClipAugment(32, scale=(0.3, 1.0), brightness_contrast_p=1.0, brightness=0.3, contrast=0.3)
    y = aug(x, generator=gen(2))
    for i in range(1, 4):
        assert not torch.allclose(y[i], y[0], atol=1e-3)


def test_clip_flip_exact_and_full_crop_identity():
    x = torch.rand(2, 3, 3, 32, 32)
    torch.testing.assert_close(ClipAugment(32, **off())(x, generator=gen()), x, rtol=0, atol=1e-5)
    flipped = ClipAugment(32, **off(hflip=1.0))(x, generator=gen())
    torch.testing.assert_close(flipped, torch.flip(x, [-1]), rtol=0, atol=1e-5)


def test_clip_reproducible_and_params_replayable():
    x = torch.rand(3, 3, 4, 40, 40)
    aug = ClipAugment(32, brightness_contrast_p=0.5, blur_p=0.5, noise_p=0.5)
    a, b = aug(x, generator=gen(7)), aug(x, generator=gen(7))
    assert torch.equal(a, b)
    assert not torch.allclose(a, aug(x, generator=gen(8)))
    params = aug.sample_params(x.shape, x.device, gen(7))
    assert torch.equal(aug.apply(x, params), a)


def test_resized_crop_boxes_obey_scale_and_ratio():
    boxes = sample_resized_crop(Sampler(gen(3), "cpu"), 2000, 60, 80, (0.3, 0.9), (0.8, 1.25))
    x0, y0, x1, y1 = boxes.unbind(1)
    w, h = x1 - x0, y1 - y0
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 80 + 1e-4).all() and (y1 <= 60 + 1e-4).all()
    frac = w * h / (60 * 80)
    assert (frac >= 0.3 - 1e-4).all() and (frac <= 0.9 + 1e-4).all()
    assert ((w / h) >= 0.8 - 1e-4).all() and ((w / h) <= 1.25 + 1e-4).all()
    assert x0.std() > 3 and y0.std() > 2  # locations spread out, not all centred


def test_blur_kernels():
    k = gaussian_kernels(torch.tensor([0.0, 0.5, 2.0]), 6)
    torch.testing.assert_close(k.sum(1), torch.ones(3))
    assert k[0, 6] == 1 and k[0].count_nonzero() == 1  # sigma 0: no blur
    assert k[1].count_nonzero() == 5  # support ceil(3 * 0.5) = 2 on each side
    x = torch.rand(2, 3, 2, 32, 32)
    plain = ClipAugment(32, **off())(x, generator=gen())
    blurred = ClipAugment(32, **off(blur_p=1.0, blur_sigma=(1.5, 1.5)))(x, generator=gen())
    assert blurred.std() < 0.6 * plain.std()


def test_clip_eval_modes():
    x = torch.rand(2, 3, 4, 256, 256)
    torch.testing.assert_close(ClipEval(224)(x), x[..., 16:240, 16:240], rtol=0, atol=0)
    assert medics_clip_eval(112)(x).shape == (2, 3, 4, 112, 112)
    const = torch.full((1, 3, 2, 256, 300), 0.3)
    y = ClipEval(112, mode="resize_center")(const)
    assert y.shape == (1, 3, 2, 112, 112)
    torch.testing.assert_close(y, torch.full_like(y, 0.3))
    with pytest.raises(ValueError):
        ClipEval(224)(torch.rand(1, 3, 2, 200, 200))


def test_medics_presets():
    r21 = medics_clip_augment(112, "R(2+1)D")
    assert r21.scale == (0.33, 1.0) and r21.blur_p == 0.1 and r21.noise_p == 0.1
    i3d = medics_clip_augment(224, "i3d")
    assert i3d.scale == (0.5, 1.0) and i3d.blur_p == 0 and i3d.brightness_contrast_p == 0.25
    assert medics_clip_augment(112, "mc3")(torch.rand(2, 3, 4, 128, 128), generator=gen()).shape[-1] == 112


# ---------------------------------------------------------------- cutmix

def labelled_constant_clips(b=16, shape=(8, 16, 16), seed=0):
    """Clip i is filled with its label (0 or 1): a mixed clip's mean is its mixed label."""
    y = (torch.rand(b, generator=gen(seed)) < 0.5).float()
    y[0], y[1] = 0.0, 1.0
    return y.view(b, 1, 1, 1, 1).expand(b, 3, *shape).contiguous(), y


def test_cutmix3d_lambda_is_own_fraction():
    x, y = labelled_constant_clips()
    r = cutmix3d(x, y, generator=gen(1))
    assert ((r.lam >= 0.5) & (r.lam <= 1)).all()
    assert torch.equal(r.partner_targets, y[r.perm])
    soft = r.mixed_targets()
    torch.testing.assert_close(r.clips.mean(dim=(1, 2, 3, 4)), soft)
    # where the partner's label differs, the fraction of voxels that changed is 1 - lam
    changed = (r.clips != x).float().mean(dim=(1, 2, 3, 4))
    differ = y != y[r.perm]
    assert differ.any()
    torch.testing.assert_close(changed[differ], 1 - r.lam[differ])
    # volume of the boxes matches too
    t0, t1, y0, y1, x0, x1 = r.boxes.unbind(1)
    torch.testing.assert_close(r.lam, 1 - ((t1 - t0) * (y1 - y0) * (x1 - x0)).float() / (8 * 16 * 16))


def test_cutmix3d_zeros_and_ones():
    x = torch.cat([torch.zeros(1, 3, 8, 16, 16), torch.ones(1, 3, 8, 16, 16)])
    y = torch.tensor([0.0, 1.0])
    for seed in range(20):
        r = cutmix3d(x, y, generator=gen(seed))
        for i in range(2):
            from_partner = (r.clips[i] != x[i]).float().mean()
            expect = 0.0 if r.perm[i] == i else 1 - r.lam[i]
            assert abs(float(from_partner) - float(expect)) < 1e-6
            assert abs(float(r.clips[i].mean()) - float(r.mixed_targets()[i])) < 1e-6


def test_cutmix3d_boxes_clipped_and_sized():
    x = torch.zeros(4000, 1, 8, 16, 16)
    r = cutmix3d(x, torch.zeros(4000), generator=gen(2))
    lo, hi = r.boxes[:, 0::2], r.boxes[:, 1::2]
    dims = torch.tensor([8, 16, 16])
    assert (lo >= 0).all() and (hi <= dims).all() and (lo <= hi).all()
    size = torch.floor(dims * (1 - r.lam_drawn[:, None]) ** (1 / 3)).long()
    full = 2 * (size // 2)
    assert ((hi - lo) <= full).all()
    inner = (hi - lo) == full
    assert inner.any() and (~inner).any()  # some boxes hit an edge and shrank
    assert (r.lam >= r.lam_drawn - 1e-6).all()


def test_cutmix3d_alpha_controls_lambda():
    x = torch.zeros(4000, 1, 8, 16, 16)
    drawn = cutmix3d(x, torch.zeros(4000), alpha=1.0, generator=gen(3)).lam_drawn
    assert drawn.min() >= 0.5 and abs(float(drawn.mean()) - 0.75) < 0.01
    assert abs(float(drawn.std()) - 0.5 / math.sqrt(12)) < 0.01  # uniform on [0.5, 1]
    means = [float(cutmix3d(x, torch.zeros(4000), alpha=a, generator=gen(4)).lam.mean()) for a in (0.2, 1.0, 50.0)]
    assert means[0] > means[1] > means[2]
    sampler = Sampler(gen(5), "cpu")
    b = sampler.beta(0.4, 0.4, 100000)
    assert abs(float(b.mean()) - 0.5) < 0.01 and abs(float(b.var()) - 0.4 ** 2 / (0.8 ** 2 * 1.8)) < 0.005


def test_mixed_losses_match_formula():
    x, y = labelled_constant_clips(b=8)
    r = cutmix3d(x, y, generator=gen(6))
    z = torch.randn(8, 1)

    def bce(z, t):
        return -(t * math.log(torch.sigmoid(z)) + (1 - t) * math.log(1 - torch.sigmoid(z)))

    want = sum(float(r.lam[i]) * bce(z[i, 0], float(y[i])) + (1 - float(r.lam[i])) * bce(z[i, 0], float(y[r.perm[i]]))
               for i in range(8)) / 8
    assert abs(float(mixed_bce_loss(z, r)) - float(want)) < 1e-5
    assert abs(float(mixed_bce_loss(z[:, 0], r)) - float(want)) < 1e-5
    logits = torch.randn(8, 2)
    rc = cutmix3d(x, y.long(), generator=gen(6))
    logp = F.log_softmax(logits, dim=1)
    want_ce = -sum(float(rc.lam[i]) * logp[i, int(y[i])] + (1 - float(rc.lam[i])) * logp[i, int(y[rc.perm[i]])]
                   for i in range(8)) / 8
    assert abs(float(mixed_ce_loss(logits, rc)) - float(want_ce)) < 1e-5


def test_cutmix_module_probability():
    x, y = labelled_constant_clips(b=8)
    r0 = CutMix3d(p=0.0)(x, y, generator=gen())
    assert torch.equal(r0.clips, x) and (r0.lam == 1).all()
    r1 = CutMix3d(p=1.0)(x, y, generator=gen())
    assert (r1.lam < 1).any()
    mixed = sum(bool((CutMix3d(p=0.5)(x, y, generator=gen(s)).lam < 1).any()) for s in range(40))
    assert 8 < mixed < 32


# ---------------------------------------------------------------- images

def test_isotropic_resize_pad_keeps_aspect():
    x = torch.ones(1, 3, 100, 50)
    y = isotropic_resize_pad(x, 380)
    assert y.shape == (1, 3, 380, 380)
    torch.testing.assert_close(y[..., 95:285], torch.ones(1, 3, 380, 190))
    assert y[..., :95].abs().max() == 0 and y[..., 285:].abs().max() == 0
    small = isotropic_resize_pad(torch.ones(1, 3, 600, 1200), 380)  # shrink, landscape
    torch.testing.assert_close(small[..., 95:285, :], torch.ones(1, 3, 190, 380))
    assert small[..., :95, :].abs().max() == 0


def selim_off(**kw):
    base = dict(jpeg_p=0.0, noise_p=0.0, blur_p=0.0, hflip=0.0, color_p=0.0, gray_p=0.0, ssr_p=0.0)
    base.update(kw)
    return SelimImageAugment(**base)


@pytest.mark.parametrize("device", DEVICES)
def test_selim_shape_device_dtype_reproducible(device):
    x = torch.rand(3, 3, 90, 70, device=device, dtype=torch.float64)
    aug = SelimImageAugment(380, jpeg_p=0.7, noise_p=0.5, blur_p=0.5, color_p=1.0, gray_p=0.3, cutout_p=0.5)
    y = aug(x, generator=gen(1))
    assert y.shape == (3, 3, 380, 380) and y.dtype == torch.float64 and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, aug(x, generator=gen(1)))
    # the all-off configuration is just the isotropic resize + pad
    plain = selim_off(size=380)(x, generator=gen(1))
    torch.testing.assert_close(plain, isotropic_resize_pad(x, 380))
    assert plain[..., :, :40].abs().max() == 0  # 70 wide -> 296 wide, 42 columns of padding


def test_selim_ops_do_what_they_say():
    x = torch.rand(4, 3, 48, 48)
    torch.testing.assert_close(selim_off(size=48, hflip=1.0)(x, generator=gen()), x.flip(-1))
    gray = selim_off(size=48, gray_p=1.0)(x, generator=gen())
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    cut = selim_off(size=48, cutout_p=1.0, cutout_size=(0.25, 0.5))(torch.ones(4, 3, 48, 48), generator=gen())
    holes = (cut == 0).all(dim=1).float().mean(dim=(1, 2))
    assert ((holes >= 0.25 ** 2 - 0.05) & (holes <= 0.25 + 0.05)).all()
    jpeg = selim_off(size=48, jpeg_p=1.0)(x, generator=gen())
    assert (jpeg - x).abs().mean() > 0.01
    color = selim_off(size=48, color_p=1.0)(x, generator=gen(3))
    assert not torch.allclose(color, x, atol=1e-3)


def test_shift_scale_rotate_geometry():
    eye = ssr_theta(torch.zeros(1), torch.ones(1), torch.zeros(1, 2), 32, 32)
    torch.testing.assert_close(eye, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))
    img = torch.zeros(1, 1, 8, 8)
    img[..., 2] = 1.0  # a bright column at x = 2
    theta = ssr_theta(torch.zeros(1), torch.ones(1), torch.tensor([[0.25, 0.0]]), 8, 8)
    out = F.grid_sample(img, F.affine_grid(theta, [1, 1, 8, 8], align_corners=False), align_corners=False)
    assert out[0, 0, :, 4].min() > 0.99 and out[0, 0, :, 2].max() < 1e-6  # moved right by 0.25 * 8


def test_ianpan_flips_and_channel_permutation():
    x = torch.rand(1, 3, 16, 16).expand(64, -1, -1, -1).contiguous()
    aug = IanPanImageAugment()
    params = aug.sample_params(x.shape, x.device, gen(0))
    y = aug.apply(x, params)
    assert set(params["flip"].tolist()) == {0, 1, 2, 3}
    assert len({tuple(p) for p in params["channel_perm"].tolist()}) == 6
    for i in range(64):
        want = x[i]
        if params["flip"][i] & 1:
            want = want.flip(-1)
        if params["flip"][i] & 2:
            want = want.flip(-2)
        assert torch.equal(y[i], want[params["channel_perm"][i]])
    assert torch.equal(IanPanImageAugment(channel_shuffle_p=0.0).sample_params(x.shape, "cpu", gen())["channel_perm"],
                       torch.arange(3).expand(64, 3))


def test_mixup_or_cutmix2d_consistent():
    y = torch.tensor([0.0, 1.0] * 8)
    x = y.view(16, 1, 1, 1).expand(16, 3, 24, 24).contiguous()
    kinds = set()
    for seed in range(12):
        r = mixup_or_cutmix2d(x, y, generator=gen(seed))
        kinds.add(r.kind)
        torch.testing.assert_close(r.images.mean(dim=(1, 2, 3)), r.mixed_targets())
        assert torch.equal(r.partner_targets, y[r.perm])
        assert torch.isfinite(mixed_bce_loss(torch.randn(16), r))
        if r.kind == "cutmix2d":
            assert r.boxes.shape == (16, 4)
    assert kinds == {"mixup", "cutmix2d"}
    assert torch.equal(mixup(x, y, generator=gen(1)).clips, mixup(x, y, generator=gen(1)).clips)
    assert cutmix2d(x, y, alpha=1.0, symmetric=True, generator=gen()).lam.min() >= 0.5


def test_import_without_kornia():
    code = (
        "import sys; sys.modules['kornia'] = None\n"
        "import torch, dfdc_fast.augment as A\n"
        "A.ClipAugment(16)(torch.rand(1, 3, 2, 20, 20))\n"
        "A.cutmix3d(torch.rand(2, 3, 2, 8, 8), torch.zeros(2))\n"
        "A.SelimImageAugment(32, jpeg_p=0, color_p=0)(torch.rand(1, 3, 20, 20))\n"
        "try:\n    A.SelimImageAugment(32)\nexcept ImportError as e:\n    assert 'pip install kornia' in str(e); print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.cuda
def test_cpu_generator_gives_same_result_on_cuda():
    """Parameters are drawn on the generator's device, so a CPU generator reproduces a
    CPU run on the GPU (noise aside, which is drawn on the data's device)."""
    x = torch.rand(3, 3, 4, 40, 40)
    aug = ClipAugment(32, brightness_contrast_p=0.5, blur_p=0.5)
    torch.testing.assert_close(aug(x.cuda(), generator=gen(4)).cpu(), aug(x, generator=gen(4)), rtol=0, atol=1e-5)
    r_cpu = cutmix3d(x, torch.zeros(3), generator=gen(5))
    r_gpu = cutmix3d(x.cuda(), torch.zeros(3).cuda(), generator=gen(5))
    assert torch.equal(r_gpu.clips.cpu(), r_cpu.clips) and torch.equal(r_gpu.boxes.cpu(), r_cpu.boxes)
