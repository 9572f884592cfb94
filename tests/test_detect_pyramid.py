"""The packed pyramid (dfdc_fast/detect/pyramid.py): P-Net once on a canvas holding every
scale gives each scale's cells the values P-Net gives that scale alone."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfdc_fast.detect.nets import load_nets
from dfdc_fast.detect.pyramid import pnet_output_size, pyramid_layout, pyramid_scales


@pytest.fixture(scope="module")
def pnet():
    return load_nets()[0]


def paste(layout, images):
    canvas = torch.zeros((images.shape[0], 3, *layout.canvas))
    for (hs, ws), (y, x) in zip(layout.sizes, layout.offsets):
        canvas[:, :, y:y + hs, x:x + ws] = F.interpolate(images, size=(hs, ws), mode="area")
    return (canvas - 127.5) * 0.0078125


@pytest.mark.parametrize("size", [(54, 96), (96, 54), (67, 120), (101, 77), (37, 50)])
def test_packed_cells_equal_each_scale_alone(pnet, size):
    h, w = size
    layout = pyramid_layout(h, w, 12.0, 0.709)
    assert len(layout.scales) >= 3
    images = torch.randint(0, 256, (2, 3, h, w), generator=torch.Generator().manual_seed(h * w)).float()
    index, live = layout.cells()
    with torch.no_grad():
        reg, prob = pnet(paste(layout, images), torch.from_numpy(layout.spill()))
        bare_reg, bare_prob = pnet(paste(layout, images))  # without the spill mask
        worst_bare = 0.0
        for s, (hs, ws) in enumerate(layout.sizes):
            r1, p1 = pnet((F.interpolate(images, size=(hs, ws), mode="area") - 127.5) * 0.0078125)
            assert p1.shape[1:] == layout.cells_shape[s] == (pnet_output_size(hs), pnet_output_size(ws))
            cells = torch.from_numpy(index[s, live[s]])
            assert len(cells) == p1.shape[1] * p1.shape[2]
            torch.testing.assert_close(prob.reshape(2, -1)[:, cells], p1.reshape(2, -1), atol=1e-5, rtol=0)
            torch.testing.assert_close(reg.reshape(2, 4, -1)[:, :, cells], r1.reshape(2, 4, -1), atol=1e-5, rtol=0)
            worst_bare = max(worst_bare, float((bare_prob.reshape(2, -1)[:, cells] - p1.reshape(2, -1)).abs().max()))
    # the mask is what makes the cells at the ceil-mode edge right (some scale here has one)
    assert layout.spill().any() and worst_bare > 1e-3


@pytest.mark.parametrize("size", [(540, 960), (960, 540), (1080, 1920), (270, 480), (480, 270), (21, 30)])
def test_layout_places_every_scale_apart_at_even_offsets(size):
    layout = pyramid_layout(*size, 20.0, 0.709)
    assert list(layout.scales) == pyramid_scales(*size, 20.0, 0.709)
    taken = np.zeros(layout.canvas, dtype=np.int32)
    for (hs, ws), (y, x) in zip(layout.sizes, layout.offsets):
        assert y % 2 == 0 and x % 2 == 0
        taken[y:y + hs, x:x + ws] += 1
    assert taken.max() == 1  # no overlap
    area = sum(a * b for a, b in layout.sizes)
    assert layout.canvas[0] * layout.canvas[1] <= 1.35 * area  # little canvas wasted
    assert pyramid_layout(10, 10, 20.0, 0.709) is None  # smaller than P-Net's window at every scale
