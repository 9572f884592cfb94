"""label3d / component_stats against skimage.measure.label and regionprops.

The CPU kernel is the oracle: it must equal skimage exactly on every mask. The CUDA
kernel (marked `cuda`) must then equal the CPU kernel exactly.
"""
import os

import numpy as np
import pytest
import torch
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from dfdc_fast import extension
from dfdc_fast.ops import component_stats, label3d

pytestmark = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")

SK_CONNECTIVITY = {6: 1, 18: 2, 26: 3}


def random_masks(seed: int, count: int):
    """Masks of varied shapes and kinds: noise of any density, boxes, smoothed blobs, lines."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        shape = tuple(int(s) for s in rng.integers(1, 14, size=3))
        kind = rng.integers(4)
        if kind == 0:  # noise, density from empty to full
            m = rng.random(shape) < rng.choice([0.0, 0.05, 0.2, 0.35, 0.6, 0.9, 1.0])
        elif kind == 1:  # a few boxes, like faces drawn into the tracker's mask
            m = np.zeros(shape, bool)
            for _ in range(rng.integers(1, 5)):
                lo = [rng.integers(s) for s in shape]
                hi = [lo[d] + rng.integers(1, shape[d] - lo[d] + 1) for d in range(3)]
                m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        elif kind == 2:  # thresholded smooth noise: blobby components with holes
            from scipy.ndimage import uniform_filter

            m = uniform_filter(rng.random(shape), size=3) > rng.uniform(0.4, 0.6)
        else:  # random walks in all 26 directions: thin, diagonal components
            m = np.zeros(shape, bool)
            for _ in range(rng.integers(1, 4)):
                p = np.array([rng.integers(s) for s in shape])
                for _ in range(rng.integers(1, 30)):
                    m[tuple(p)] = True
                    p = np.clip(p + rng.integers(-1, 2, size=3), 0, np.array(shape) - 1)
        yield m


def check_against_skimage(m: np.ndarray, connectivity: int):
    ref = sk_label(m, connectivity=SK_CONNECTIVITY[connectivity])
    labels, num = label3d(torch.from_numpy(m), connectivity)
    assert labels.dtype == torch.int32 and labels.shape == m.shape
    np.testing.assert_array_equal(labels.numpy(), ref)
    assert int(num) == ref.max()
    boxes, counts = component_stats(labels, num)
    assert boxes.shape == (ref.max(), 6) and counts.shape == (ref.max(),)
    for region in regionprops(ref):
        t0, y0, x0, t1, y1, x1 = region.bbox
        assert boxes[region.label - 1].tolist() == [t0, t1, y0, y1, x0, x1]
        assert int(counts[region.label - 1]) == region.area


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_equals_skimage_on_random_masks(connectivity):
    n = 0
    for m in random_masks(seed=connectivity, count=1200):
        check_against_skimage(m, connectivity)
        n += 1
    assert n == 1200


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize(
    "shape", [(1, 1, 1), (1, 7, 9), (5, 1, 1), (3, 1, 17), (40, 30, 50), (2, 135, 240), (15, 135, 240)]
)
def test_edge_shapes(shape, connectivity):
    rng = np.random.default_rng(0)
    for m in (np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.3):
        check_against_skimage(m, connectivity)
    single = np.zeros(shape, bool)
    single[tuple(s // 2 for s in shape)] = True
    check_against_skimage(single, connectivity)


def test_diagonals_join_only_with_enough_connectivity():
    n = 9
    corner = np.zeros((n, n, n), bool)  # steps of (1, 1, 1): corners touch
    edge = np.zeros((n, n, n), bool)  # steps of (0, 1, 1): edges touch
    for i in range(n):
        corner[i, i, i] = True
        edge[4, i, i] = True
    nums = {c: (int(label3d(torch.from_numpy(corner), c)[1]), int(label3d(torch.from_numpy(edge), c)[1])) for c in (6, 18, 26)}
    assert nums == {6: (n, n), 18: (n, 1), 26: (1, 1)}


def test_labels_follow_raster_order_of_first_voxel():
    m = torch.zeros(4, 6, 6, dtype=torch.bool)
    m[2, 0, 0] = True  # starts last in time
    m[0, 5, 5] = True  # first slice, bottom right
    m[0, 1, 3:5] = True  # first slice, top
    labels, num = label3d(m)
    assert int(num) == 3
    assert labels[0, 1, 3] == 1 and labels[0, 5, 5] == 2 and labels[2, 0, 0] == 3


def test_a_batch_equals_its_masks_one_by_one():
    masks = list(random_masks(seed=7, count=40))
    shape = (6, 9, 11)
    batch = torch.stack([torch.from_numpy(np.resize(m, shape)) for m in masks])
    labels, num = label3d(batch)
    assert labels.shape == batch.shape and num.shape == (len(masks),) and num.dtype == torch.int64
    boxes, counts = component_stats(labels, num)
    assert boxes.shape == (len(masks), int(num.max()), 6)
    for b in range(len(masks)):
        one, n = label3d(batch[b])
        assert torch.equal(labels[b], one) and int(num[b]) == int(n)
        ob, oc = component_stats(one, int(num.max()))  # same row count: padding rows are zero
        assert torch.equal(boxes[b], ob) and torch.equal(counts[b], oc)
        assert int((counts[b] > 0).sum()) == int(n)


def test_input_dtypes():
    m = np.random.default_rng(1).random((5, 8, 8)) < 0.4
    ref = label3d(torch.from_numpy(m))[0]
    for t in (torch.from_numpy(m).to(torch.uint8), torch.from_numpy(m).float() * 3, torch.from_numpy(m).to(torch.int64)):
        assert torch.equal(label3d(t)[0], ref)
    non_contiguous = torch.from_numpy(np.ascontiguousarray(m.transpose(2, 1, 0))).permute(2, 1, 0)
    assert torch.equal(label3d(non_contiguous)[0], ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match="connectivity"):
        label3d(torch.zeros(2, 2, 2, dtype=torch.bool), connectivity=8)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        label3d(torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="int32"):
        component_stats(torch.zeros(2, 2, 2, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="bool or uint8"):  # the op itself checks too
        torch.ops.dfdc_fast.label3d(torch.zeros(1, 2, 2, 2), 26)
    with pytest.raises(RuntimeError, match="connectivity"):
        torch.ops.dfdc_fast.label3d(torch.zeros(1, 2, 2, 2, dtype=torch.bool), 4)


def test_stats_ignore_labels_beyond_num_labels():
    labels = torch.tensor([[[1, 2, 3]]], dtype=torch.int32)
    boxes, counts = component_stats(labels, 2)
    assert counts.tolist() == [1, 1] and boxes[1].tolist() == [0, 1, 0, 1, 1, 2]


def test_meta_tensors_propagate_shapes():
    labels, num = label3d(torch.empty(3, 4, 5, 6, dtype=torch.bool, device="meta"))
    assert labels.shape == (3, 4, 5, 6) and labels.dtype == torch.int32 and num.shape == (3,)
    boxes, counts = component_stats(labels, 7)
    assert boxes.shape == (3, 7, 6) and counts.shape == (3, 7)


def test_ci_builds_the_cuda_kernels():
    """CI sets FORCE_CUDA=1, so the .cu files must have compiled there."""
    if os.environ.get("FORCE_CUDA") == "1":
        assert extension.cuda_version() >= 13000
    else:
        assert isinstance(extension.cuda_version(), int)


# ---- CUDA kernel: exactly the CPU kernel's results ----------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_cuda_equals_cpu_on_random_masks(connectivity):
    for m in random_masks(seed=100 + connectivity, count=600):
        t = torch.from_numpy(m)
        cpu_labels, cpu_num = label3d(t, connectivity)
        gpu_labels, gpu_num = label3d(t.cuda(), connectivity)
        assert gpu_labels.is_cuda and gpu_num.is_cuda
        assert torch.equal(gpu_labels.cpu(), cpu_labels) and int(gpu_num) == int(cpu_num)
        cb, cc = component_stats(cpu_labels, cpu_num)
        gb, gc = component_stats(gpu_labels, gpu_num)
        assert torch.equal(gb.cpu(), cb) and torch.equal(gc.cpu(), cc)


@pytest.mark.cuda
@pytest.mark.parametrize("density", [0.0, 0.1, 0.3, 0.7, 1.0])
def test_cuda_equals_cpu_on_large_batches(density):
    g = torch.Generator().manual_seed(int(density * 10))
    batch = torch.rand(3, 60, 135, 240, generator=g) < density
    batch[1, :, 40:100, 50:150] = True  # a solid face-like block
    cpu = label3d(batch)
    gpu = label3d(batch.cuda())
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
    cs = component_stats(*cpu)
    gs = component_stats(*gpu)
    assert torch.equal(gs[0].cpu(), cs[0]) and torch.equal(gs[1].cpu(), cs[1])


@pytest.mark.cuda
def test_cuda_full_resolution_mask():
    m = torch.zeros(300, 540, 960, dtype=torch.bool)
    for t in range(300):
        m[t, 100 + t // 5 : 300 + t // 5, 200:400] = True
        m[t, 120:330, 600 + t // 3 : 820 + t // 3] = True
    m[150] = False  # a cut in time: four components
    cpu = label3d(m)
    gpu = label3d(m.cuda())
    assert int(cpu[1]) == 4 and torch.equal(gpu[0].cpu(), cpu[0])
