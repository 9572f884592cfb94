"""The native ops' fake kernels (dfdc_fast/fake_kernels.py): registered, checked like the real ones.

opcheck runs each op on real CPU inputs and compares the fake kernel with the real one
(schema, fake against real, autograd registration); the checks are run on fake CUDA
tensors, where only the fake kernels can answer.
"""
import pytest
import torch

from dfdc_fast import extension, ops
from dfdc_fast.bench.fake_cuda import fake_cuda

C = torch.ops.dfdc_fast


def _rois(n: int, t: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    rows = []
    for i in range(n):
        x0, y0 = int(torch.randint(0, w // 2, (1,), generator=g)), int(torch.randint(0, h // 2, (1,), generator=g))
        x1, y1 = x0 + w // 3, y0 + h // 3
        rows.append([i % t, x0, y0, x1, y1, 0, 0, x1 - x0, y1 - y0, 12, 10, 1, 2])
    return torch.tensor(rows, dtype=torch.int64)


def _mask() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 4, 9, 11, generator=g) > 0.6


CASES = {
    "label3d_26": (C.label3d, lambda: (_mask(), 26)),
    "label3d_6_uint8": (C.label3d, lambda: (_mask().to(torch.uint8), 6)),
    "component_stats": (C.component_stats, lambda: (C.label3d(_mask(), 26)[0], 5)),
    "crop_resize_rgb": (C.crop_resize, lambda: (torch.randint(0, 256, (3, 20, 24, 3), dtype=torch.uint8), 0,
                                                _rois(5, 3, 20, 24), 16, 16, 0, False, 0, 0)),
    "crop_resize_nv12_rot": (C.crop_resize, lambda: (torch.randint(0, 256, (2, 30, 24), dtype=torch.uint8), 1,
                                                     _rois(4, 2, 20, 24), 14, 12, 1, True, 2, 1)),
    "crop_resize_i420": (C.crop_resize, lambda: (torch.randint(0, 256, (2, 30, 24), dtype=torch.uint8), 2,
                                                 _rois(3, 2, 20, 24), 8, 8, 2, False, 0, 0)),
    "nms_padded_iou": (C.nms_padded, lambda: (torch.rand(3, 17, 4).cumsum(-1), torch.rand(3, 17) > 0.2, 0.5, "iou")),
    "nms_padded_min_f64": (C.nms_padded, lambda: (torch.rand(2, 9, 4, dtype=torch.float64).cumsum(-1),
                                                  torch.ones(2, 9, dtype=torch.bool), 0.7, "min")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_opcheck(case):
    op, make = CASES[case]
    torch.library.opcheck(op, make())


@pytest.mark.parametrize("case", sorted(CASES))
def test_fake_matches_real_on_cuda_too(case):
    """On fake CUDA the outputs have the real CPU outputs' shapes and dtypes, on CUDA."""
    op, make = CASES[case]
    args = make()
    real = op(*args)
    real = real if isinstance(real, tuple) else (real,)
    with fake_cuda() as fc:
        fake = op(*[fc.tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    fake = fake if isinstance(fake, tuple) else (fake,)
    assert [(r.shape, r.dtype) for r in real] == [(f.shape, f.dtype) for f in fake]
    assert all(f.device.type == "cuda" for f in fake)


def _bad_nms():
    boxes, valid = torch.zeros(4, 50, 4, device="cuda"), torch.ones(4, 50, dtype=torch.bool, device="cuda")
    return {
        "boxes on the CPU, mask on CUDA": lambda: C.nms_padded(torch.zeros(4, 50, 4), valid, 0.5, "iou"),
        "boxes (4, 50, 5)": lambda: C.nms_padded(torch.zeros(4, 50, 5, device="cuda"), valid, 0.5, "iou"),
        "int boxes": lambda: C.nms_padded(boxes.int(), valid, 0.5, "iou"),
        "uint8 mask": lambda: C.nms_padded(boxes, valid.to(torch.uint8), 0.5, "iou"),
        "mask (4, 49)": lambda: C.nms_padded(boxes, valid[:, :49], 0.5, "iou"),
        "NaN threshold": lambda: C.nms_padded(boxes, valid, float("nan"), "iou"),
        "mode": lambda: C.nms_padded(boxes, valid, 0.5, "union"),
        "too many boxes for the CUDA kernel": lambda: C.nms_padded(
            torch.zeros(1, 400_000, 4, device="cuda"), torch.ones(1, 400_000, dtype=torch.bool, device="cuda"), 0.5),
    }


def _bad_crop_resize():
    frames = torch.zeros(2, 30, 24, dtype=torch.uint8, device="cuda")
    rois = torch.zeros(3, 13, dtype=torch.int64, device="cuda")
    rgb = torch.zeros(2, 20, 24, 3, dtype=torch.uint8, device="cuda")
    return {
        "CUDA frames, CPU rois": lambda: C.crop_resize(frames, 1, torch.zeros(3, 13, dtype=torch.int64), 8, 8),
        "float frames": lambda: C.crop_resize(frames.float(), 1, rois, 8, 8),
        "int32 rois": lambda: C.crop_resize(frames, 1, rois.int(), 8, 8),
        "rois (3, 12)": lambda: C.crop_resize(frames, 1, rois[:, :12].contiguous(), 8, 8),
        "strided rois": lambda: C.crop_resize(frames, 1, torch.zeros(13, 3, dtype=torch.int64, device="cuda").t(), 8, 8),
        "strided frames": lambda: C.crop_resize(frames.transpose(1, 2), 1, rois, 8, 8),
        "zero output": lambda: C.crop_resize(frames, 1, rois, 0, 8),
        "rotation 4": lambda: C.crop_resize(frames, 1, rois, 8, 8, 0, False, 4),
        "up_mode 2": lambda: C.crop_resize(frames, 1, rois, 8, 8, 0, False, 0, 2),
        "layout 3": lambda: C.crop_resize(frames, 3, rois, 8, 8),
        "NV12 of RGB shape": lambda: C.crop_resize(rgb, 1, rois, 8, 8),
        "RGB of NV12 shape": lambda: C.crop_resize(frames, 0, rois, 8, 8),
        "NV12 height not 3/2": lambda: C.crop_resize(frames[:, :29].contiguous(), 1, rois, 8, 8),
        "odd NV12 width": lambda: C.crop_resize(torch.zeros(2, 30, 23, dtype=torch.uint8, device="cuda"), 1, rois, 8, 8),
    }


def _bad_label3d():
    mask = torch.zeros(2, 3, 4, 5, dtype=torch.bool, device="cuda")
    return {
        "3D mask": lambda: C.label3d(mask[0], 26),
        "float mask": lambda: C.label3d(mask.float(), 26),
        "connectivity 8": lambda: C.label3d(mask, 8),
        "int64 labels": lambda: C.component_stats(mask.long(), 3),
        "3D labels": lambda: C.component_stats(mask[0].int(), 3),
        "negative count": lambda: C.component_stats(mask.int(), -1),
    }


@pytest.mark.parametrize("table", [_bad_nms, _bad_crop_resize, _bad_label3d], ids=["nms", "crop_resize", "label3d"])
def test_fake_kernels_refuse_what_the_real_ones_refuse(table):
    with fake_cuda():
        for what, call in table().items():
            with pytest.raises(RuntimeError, match=r"^(nms_padded|crop_resize|label3d|component_stats)"):
                call()
                pytest.fail(f"the fake kernel accepted {what}")


def test_real_cpu_kernels_refuse_the_same_mixed_devices():
    """The fakes' checks are the real kernels' ones: a CPU call with the same faults raises too."""
    with pytest.raises(RuntimeError, match="boxes must be"):
        C.nms_padded(torch.zeros(4, 50, 5), torch.ones(4, 50, dtype=torch.bool), 0.5, "iou")
    with pytest.raises(RuntimeError, match="rois must be int64"):
        C.crop_resize(torch.zeros(2, 30, 24, dtype=torch.uint8), 1, torch.zeros(3, 13, dtype=torch.int32), 8, 8)


def test_wrappers_take_fake_cuda_tensors_whatever_the_build():
    """On a CPU-only build (a developer's) as on CI's FORCE_CUDA=1 one: fakes never reach a kernel."""
    with fake_cuda():
        keep = ops.nms_padded(torch.zeros(2, 5, 4, device="cuda"), torch.ones(2, 5, dtype=torch.bool, device="cuda"), 0.5)
        out = ops.crop_resize(torch.zeros(1, 30, 24, dtype=torch.uint8, device="cuda"),
                              torch.zeros(2, 13, dtype=torch.int64, device="cuda"), (8, 8), layout="nv12")
        labels, num = ops.label3d(torch.zeros(3, 4, 5, dtype=torch.bool, device="cuda"))
        boxes, counts = ops.component_stats(labels.unsqueeze(0), 4)
    assert keep.device.type == out.device.type == labels.device.type == boxes.device.type == "cuda"
    assert out.shape == (2, 8, 8, 3) and labels.shape == (3, 4, 5) and num.shape == () and boxes.shape == (1, 4, 6)


@pytest.mark.skipif(extension.cuda_version() >= 0, reason="this build has CUDA kernels (FORCE_CUDA=1, as CI builds)")
def test_wrappers_still_refuse_real_cuda_tensors_on_a_cpu_only_build():
    """A real CUDA tensor (not makeable here) reaches the same check with fake=False."""
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1"):
        extension._assert_cuda_kernels(torch.device("cuda", 0))
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1"):
        extension._assert_cuda_kernels(torch.device("cuda", 0), fake=False)
    extension._assert_cuda_kernels(torch.device("cuda", 0), fake=True)


def test_component_stats_reads_its_count_through_fetch():
    """Its one host read (the largest label) is a fetch: replayable on fake CUDA, counted there."""
    from dfdc_fast.bench.fake_cuda import record_fetches

    mask = _mask()
    with record_fetches() as reads:
        labels, num = ops.label3d(mask)
        boxes, _ = ops.component_stats(labels, num)
    with fake_cuda(replay=reads) as fc:
        labels, num = ops.label3d(fc.tensor(mask))
        fake_boxes, _ = ops.component_stats(labels, num)
    assert fc.host_reads == 1 and fake_boxes.shape == boxes.shape and fake_boxes.device.type == "cuda"
