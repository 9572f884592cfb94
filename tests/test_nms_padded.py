"""dfdc_fast.ops.nms_padded (the native batched NMS) against torchvision.ops.nms per set,
and against facenet-pytorch's "Min" NMS (dfdc_fast.detect.nms.nms_min), set by set.

The CPU kernel must equal the references exactly (same kept boxes) on random boxes of
many sizes, with ties, duplicates, empty and all-invalid sets, and on the detector's own
candidate boxes; the CUDA kernel must equal the CPU kernel.
"""
import json
import os

import pytest
import torch
from torchvision.ops import nms as tv_nms

from dfdc_fast.detect import MTCNN
from dfdc_fast.detect.nms import nms_min, nms_padded_reference
from dfdc_fast.extension import _has_ops

pytestmark = pytest.mark.skipif(not _has_ops(), reason="native extension not built")

from dfdc_fast.ops import nms_padded  # noqa: E402


def reference(boxes: torch.Tensor, valid: torch.Tensor, threshold: float, mode: str) -> torch.Tensor:
    """Greedy NMS of each set's valid boxes, in the given order, with the stock functions."""
    keep = torch.zeros(valid.shape, dtype=torch.bool)
    boxes, valid = boxes.cpu(), valid.cpu()
    for b in range(boxes.shape[0]):
        idx = valid[b].nonzero().flatten()
        if idx.numel() == 0:
            continue
        sel = boxes[b, idx]
        sel = sel if sel.dtype in (torch.float32, torch.float64) else sel.float()
        rank = torch.arange(idx.numel(), 0, -1, dtype=sel.dtype)  # distinct scores: the given order
        if mode == "iou":
            kept = tv_nms(sel, rank, threshold)
        else:
            kept = nms_min(sel, rank, torch.zeros(idx.numel(), dtype=torch.int64), threshold)
        keep[b, idx[kept]] = True
    return keep


def random_sets(g, b, k, *, spread=100.0, size=40.0, p_valid=0.8, integer=False, dtype=torch.float32):
    xy = torch.rand(b, k, 2, generator=g, dtype=torch.float64) * spread
    wh = torch.rand(b, k, 2, generator=g, dtype=torch.float64) * size
    if integer:  # many exact ties in coordinates and overlaps
        xy, wh = xy.floor(), wh.floor()
    boxes = torch.cat([xy, xy + wh], -1).to(dtype)
    valid = torch.rand(b, k, generator=g) < p_valid
    return boxes, valid


CASES = [(1, 1), (3, 2), (5, 7), (4, 31), (4, 32), (4, 33), (3, 64), (3, 65), (2, 200), (2, 1000)]


@pytest.mark.parametrize("mode", ["iou", "min"])
@pytest.mark.parametrize("b,k", CASES)
def test_equals_stock_nms_on_random_boxes(b, k, mode):
    g = torch.Generator().manual_seed(1000 * b + k)
    for integer in (False, True):
        for threshold in (0.3, 0.5, 0.7):
            boxes, valid = random_sets(g, b, k, integer=integer)
            keep = nms_padded(boxes, valid, threshold, mode)
            assert keep.dtype == torch.bool and keep.shape == (b, k)
            assert torch.equal(keep, reference(boxes, valid, threshold, mode))
            assert not (keep & ~valid).any()


def test_ties_duplicates_and_degenerate_boxes():
    # the same box five times, boxes of zero width, identical scores' order decides
    box = torch.tensor([10.0, 10.0, 50.0, 50.0])
    boxes = torch.stack([box, box, box + 1, box, torch.tensor([20.0, 20.0, 20.0, 40.0]),
                         torch.tensor([20.0, 20.0, 20.0, 40.0]), box + 100, box])[None]
    valid = torch.ones(1, 8, dtype=torch.bool)
    for mode in ("iou", "min"):
        for t in (0.0, 0.5, 0.99):
            assert torch.equal(nms_padded(boxes, valid, t, mode), reference(boxes, valid, t, mode))
    # first of equal boxes wins: torchvision keeps index 0 of the duplicates
    assert nms_padded(boxes, valid, 0.5)[0].tolist()[:4] == [True, False, False, False]


def test_threshold_comparison_follows_each_reference():
    # IoU of these two is 30/100, which is 0.3f > 0.3: torchvision (double threshold)
    # suppresses the second
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 3.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert nms_padded(boxes, valid, 0.3).tolist() == [[True, False]]
    assert torch.equal(nms_padded(boxes, valid, 0.3), reference(boxes, valid, 0.3, "iou"))
    # intersection over minimum 30/100 = 0.3f, compared in float32 as facenet-pytorch's
    # numpy code does: not above the threshold, both kept
    boxes = torch.tensor([[[0.0, 0.0, 9.0, 9.0], [0.0, 7.0, 9.0, 16.0]]])
    assert nms_padded(boxes, valid, 0.3, "min").tolist() == [[True, True]]
    assert torch.equal(nms_padded(boxes, valid, 0.3, "min"), reference(boxes, valid, 0.3, "min"))


def test_empty_and_invalid_sets():
    for shape in ((0, 5), (3, 0), (0, 0)):
        boxes = torch.zeros(*shape, 4)
        keep = nms_padded(boxes, torch.zeros(shape, dtype=torch.bool), 0.5)
        assert keep.shape == shape and keep.dtype == torch.bool
    g = torch.Generator().manual_seed(3)
    boxes, valid = random_sets(g, 6, 50)
    valid[1] = False  # a set with nothing valid
    valid[4, 25:] = False  # padding after the valid prefix, as the detector passes it
    keep = nms_padded(boxes, valid, 0.5, "min")
    assert not keep[1].any() and not keep[4, 25:].any()
    assert torch.equal(keep, reference(boxes, valid, 0.5, "min"))


def test_dtypes_and_layouts():
    g = torch.Generator().manual_seed(4)
    boxes, valid = random_sets(g, 4, 120, integer=True, dtype=torch.float64)
    for mode in ("iou", "min"):
        assert torch.equal(nms_padded(boxes, valid, 0.5, mode), reference(boxes, valid, 0.5, mode))
        half = boxes.half()  # decided in float32
        assert torch.equal(nms_padded(half, valid, 0.5, mode), reference(half.float(), valid, 0.5, mode))
    # non-contiguous inputs are handled
    wide = torch.cat([boxes, boxes], 1)[:, ::2]
    assert torch.equal(nms_padded(wide, valid, 0.5), nms_padded(wide.contiguous(), valid, 0.5))


def test_pure_torch_reference_agrees():
    g = torch.Generator().manual_seed(5)
    boxes, valid = random_sets(g, 5, 90)
    for mode in ("iou", "min"):
        assert torch.equal(nms_padded_reference(boxes, valid, 0.6, mode), nms_padded(boxes, valid, 0.6, mode))


def test_bad_arguments():
    boxes, valid = torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="mode"):
        nms_padded(boxes, valid, 0.5, "union")
    with pytest.raises(ValueError, match="boxes"):
        nms_padded(torch.zeros(3, 4), valid, 0.5)
    with pytest.raises(ValueError, match="valid"):
        nms_padded(boxes, valid.int(), 0.5)
    with pytest.raises(RuntimeError, match="mode"):
        torch.ops.dfdc_fast.nms_padded(boxes, valid, 0.5, "union")


def test_op_registration():
    g = torch.Generator().manual_seed(6)
    boxes, valid = random_sets(g, 3, 17)
    torch.library.opcheck(torch.ops.dfdc_fast.nms_padded, (boxes, valid, 0.5, "min"))
    fake = torch.ops.dfdc_fast.nms_padded(boxes.to("meta"), valid.to("meta"), 0.5, "iou")
    assert fake.shape == (3, 17) and fake.dtype == torch.bool


@pytest.fixture(scope="module")
def detector_nms_calls(samples_dir):
    """Every nms_padded call the detector makes on real frames: the real candidate boxes."""
    from dfdc_fast.io import read_video
    from dfdc_fast.io.selectors import Every

    meta = json.load(open(os.path.join(samples_dir, "metadata.json")))
    clip = "caifxvsozs.mp4" if "caifxvsozs.mp4" in meta else sorted(meta)[0]
    frames = read_video(os.path.join(samples_dir, clip), Every(60)).frames
    det = MTCNN("cpu", thresholds=(0.6, 0.7, 0.7), scale=0.5)
    calls, real = [], det._nms

    def record(boxes, valid, threshold, mode):
        keep = real(boxes, valid, threshold, mode)
        calls.append((boxes.clone(), valid.clone(), threshold, mode, keep.clone()))
        return keep

    det._nms = record
    det.detect(frames)
    return calls


def test_equals_stock_nms_on_real_candidates(detector_nms_calls):
    modes = {c[3] for c in detector_nms_calls}
    assert modes == {"iou", "min"} and sum(int(c[1].sum()) for c in detector_nms_calls) > 500
    for boxes, valid, threshold, mode, keep in detector_nms_calls:
        assert torch.equal(keep, reference(boxes, valid, threshold, mode))


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["iou", "min"])
def test_cuda_kernel_equals_cpu_kernel(mode):
    g = torch.Generator().manual_seed(7)
    for b, k in CASES + [(300, 40), (50, 5000), (1, 20000)]:
        for integer in (False, True):
            boxes, valid = random_sets(g, b, k, integer=integer, spread=100.0 + k / 10)
            cpu = nms_padded(boxes, valid, 0.5, mode)
            gpu = nms_padded(boxes.cuda(), valid.cuda(), 0.5, mode)
            assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    empty = nms_padded(torch.zeros(0, 3, 4, device="cuda"), torch.zeros(0, 3, dtype=torch.bool, device="cuda"), 0.5)
    assert empty.shape == (0, 3)


@pytest.mark.cuda
def test_cuda_kernel_on_real_candidates(detector_nms_calls):
    for boxes, valid, threshold, mode, keep in detector_nms_calls:
        assert torch.equal(nms_padded(boxes.cuda(), valid.cuda(), threshold, mode).cpu(), keep)
