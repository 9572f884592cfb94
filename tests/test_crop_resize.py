"""crop_resize (native op) against the same steps in plain torch: convert, rotate, crop,
pad into a canvas, F.interpolate, round."""
import pytest
import torch
import torch.nn.functional as F

from dfdc_fast.io.color import nv12_to_rgb
from dfdc_fast.ops import crop_resize

pytestmark = pytest.mark.filterwarnings("ignore")


def reference(rgb, roi, out_size, up_mode="bilinear"):
    """rgb: (T, H, W, 3) display frames; roi: list of the 13 ROI fields."""
    t, x0, y0, x1, y1, ox, oy, cw, ch, ow, oh, dx, dy = roi
    canvas = torch.zeros((ch, cw, 3), dtype=torch.float32)
    canvas[oy:oy + (y1 - y0), ox:ox + (x1 - x0)] = rgb[t, y0:y1, x0:x1].float()
    x = canvas.permute(2, 0, 1)[None]
    if (ch, cw) != (oh, ow):
        down = ch > oh
        mode = "area" if down else up_mode
        x = F.interpolate(x, size=(oh, ow), mode=mode, **({} if down else {"align_corners": False}))
    img = torch.zeros((out_size[0], out_size[1], 3), dtype=torch.uint8)
    img[dy:dy + oh, dx:dx + ow] = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
    return img


def i420_to_nv12(i420, h, w):
    y = i420[:, :h]
    u = i420[:, h:h + h // 4].reshape(-1, h // 2, w // 2)
    v = i420[:, h + h // 4:].reshape(-1, h // 2, w // 2)
    uv = torch.stack([u, v], -1).reshape(-1, h // 2, w)
    return torch.cat([y, uv], 1)


def random_rois(g, n, T, H, W, square=False):
    rois = []
    for _ in range(n):
        t = int(torch.randint(T, (1,), generator=g))
        x0 = int(torch.randint(W - 1, (1,), generator=g))
        y0 = int(torch.randint(H - 1, (1,), generator=g))
        x1 = x0 + 1 + int(torch.randint(W - x0, (1,), generator=g))
        y1 = y0 + 1 + int(torch.randint(H - y0, (1,), generator=g))
        w, h = x1 - x0, y1 - y0
        if square:
            side = max(w, h)
            cw = ch = side
            ox, oy = 0, 0
        else:
            cw, ch = w + int(torch.randint(4, (1,), generator=g)), h + int(torch.randint(4, (1,), generator=g))
            ox, oy = int(torch.randint(cw - w + 1, (1,), generator=g)), int(torch.randint(ch - h + 1, (1,), generator=g))
        rois.append([t, x0, y0, x1, y1, ox, oy, cw, ch, 0, 0, 0, 0])
    return rois


@pytest.mark.parametrize("up_mode", ["bilinear", "bicubic"])
def test_rgb_rois_equal_interpolate(up_mode):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 37, 53, 3), generator=g, dtype=torch.uint8)
    rois = random_rois(g, 40, 3, 37, 53)
    for i, r in enumerate(rois):  # shrink, keep and grow, square-ish outputs
        cw, ch = r[7], r[8]
        f = [0.5, 1.0, 1.7, 0.31][i % 4]
        r[9], r[10] = max(1, round(cw * f)), max(1, round(ch * f))
    out_size = (max(r[10] for r in rois) + 3, max(r[9] for r in rois) + 2)
    for i, r in enumerate(rois):  # some land away from the top-left corner (letterboxing)
        r[11], r[12] = i % 3, i % 4
    ours = crop_resize(frames, torch.tensor(rois), out_size, up_mode=up_mode)
    assert ours.shape == (len(rois), *out_size, 3) and ours.dtype == torch.uint8
    for r, o in zip(rois, ours):
        ref = reference(frames, r, out_size, up_mode)
        diff = (o.int() - ref.int()).abs()
        assert diff.max() <= 1, (r, diff.max())       # float summation order only
        assert (diff > 0).float().mean() < 0.01


@pytest.mark.parametrize("layout", ["nv12", "i420"])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_yuv_with_rotation_equals_convert_then_rotate(layout, rotation):
    g = torch.Generator().manual_seed(1)
    T, H, W = 2, 24, 40
    i420 = torch.randint(16, 236, (T, H * 3 // 2, W), generator=g, dtype=torch.uint8)
    nv12 = i420_to_nv12(i420, H, W)
    rgb = torch.stack([nv12_to_rgb(f, H, W) for f in nv12])  # the reference conversion
    k = rotation // 90
    disp = torch.rot90(rgb, k, dims=(1, 2)).contiguous()
    Hd, Wd = disp.shape[1:3]
    src = nv12 if layout == "nv12" else i420
    # the whole frame at full size: a pure conversion
    full = [[t, 0, 0, Wd, Hd, 0, 0, Wd, Hd, Wd, Hd, 0, 0] for t in range(T)]
    ours = crop_resize(src, torch.tensor(full), (Hd, Wd), layout=layout, rotation=rotation)
    assert torch.equal(ours, disp)
    # and random windows, resized
    rois = random_rois(g, 20, T, Hd, Wd, square=True)
    for r in rois:
        r[9] = r[10] = 16
    ours = crop_resize(src, torch.tensor(rois), (16, 16), layout=layout, rotation=rotation)
    for r, o in zip(rois, ours):
        assert (o.int() - reference(disp, r, (16, 16)).int()).abs().max() <= 1


def test_matrices_and_range():
    frames = torch.full((1, 6, 4), 128, dtype=torch.uint8)
    frames[0, :4] = 235  # white in limited range: Y=235, U=V=128
    roi = torch.tensor([[0, 0, 0, 4, 4, 0, 0, 4, 4, 4, 4, 0, 0]])
    white = crop_resize(frames, roi, (4, 4), layout="i420")
    assert white.eq(255).all()
    full = crop_resize(frames, roi, (4, 4), layout="i420", full_range=True, matrix="bt709")
    assert full.eq(235).all()
    with pytest.raises(ValueError, match="layout"):
        crop_resize(frames, roi, (4, 4), layout="yuyv")
    with pytest.raises(RuntimeError, match="even size"):
        crop_resize(torch.zeros(1, 9, 5, dtype=torch.uint8), roi, (4, 4), layout="i420")


def test_empty_rois_and_zero_padding():
    frames = torch.full((1, 8, 8, 3), 200, dtype=torch.uint8)
    assert crop_resize(frames, torch.zeros((0, 13), dtype=torch.int64), (4, 4)).shape == (0, 4, 4, 3)
    # a 2x4 window top-left in a 4x4 canvas (the Medics' square pad), output 4x4 in an 6x6 image
    out = crop_resize(frames, torch.tensor([[0, 2, 2, 4, 6, 0, 0, 4, 4, 4, 4, 0, 0]]), (6, 6))[0]
    assert out[:4, :2].eq(200).all() and out[:4, 2:].eq(0).all() and out[4:].eq(0).all()
    # the same placed at (1, 2) in the output
    out = crop_resize(frames, torch.tensor([[0, 2, 2, 4, 6, 0, 0, 4, 4, 4, 4, 1, 2]]), (6, 6))[0]
    assert out[2:6, 1:3].eq(200).all() and out[:2].eq(0).all() and out[:, 0].eq(0).all() and out[2:6, 3:].eq(0).all()


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["rgb", "nv12"])
def test_cuda_equals_cpu(layout):
    from dfdc_fast.bench.counting import no_syncs

    g = torch.Generator().manual_seed(2)
    if layout == "rgb":
        frames = torch.randint(0, 256, (3, 60, 90, 3), generator=g, dtype=torch.uint8)
        H, W = 60, 90
    else:
        H, W = 60, 90
        frames = torch.randint(0, 256, (3, H * 3 // 2, W), generator=g, dtype=torch.uint8)
    rois = random_rois(g, 30, 3, H, W)
    for i, r in enumerate(rois):
        r[9], r[10] = [(8, 8), (r[7], r[8]), (64, 64)][i % 3]
    rois = torch.tensor(rois)
    cpu = crop_resize(frames, rois, (64, 64), layout=layout, up_mode="bicubic")
    f_cuda, r_cuda = frames.cuda(), rois.cuda()
    with no_syncs("cuda"):
        gpu = crop_resize(f_cuda, r_cuda, (64, 64), layout=layout, up_mode="bicubic")
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1


@pytest.mark.parametrize("clip", ["ccfoszqabv.mp4", "afoovlsmtx.mp4"])
def test_yuv_frames_convert_to_the_same_bytes_as_pyav(samples_dir, clip):
    """Raw I420 frames through crop_resize equal PyAV's (swscale's) RGB frames exactly."""
    import os

    from dfdc_fast.io import First, open_reader

    reader = open_reader("pyav")
    path = os.path.join(samples_dir, clip)
    raw = reader.read_raw(path, First(3))
    assert raw.layout == "i420"
    assert torch.equal(raw.to_video().frames, reader.read(path, First(3)).frames)


def test_full_range_and_bt709_match_swscale():
    import av
    import numpy as np

    g = np.random.default_rng(0)
    yuv = g.integers(0, 256, (48, 64), dtype=np.uint8)  # 32 x 64 I420
    for fmt, full in (("yuv420p", False), ("yuvj420p", True)):
        frame = av.VideoFrame.from_ndarray(yuv, format=fmt)
        ref = frame.to_ndarray(format="rgb24")
        roi = torch.tensor([[0, 0, 0, 64, 32, 0, 0, 64, 32, 64, 32, 0, 0]])
        ours = crop_resize(torch.from_numpy(yuv)[None], roi, (32, 64), layout="i420", full_range=full)[0]
        assert np.array_equal(ours.numpy(), ref), fmt
