"""crops/boxes.py owns every window rule; ops.roi_rows writes crop_resize rows by name."""
import numpy as np
import pytest

from dfdc_fast.crops.boxes import (clamp_window, grown_box, int_box, letterbox_placement, margin_box,
                                   smallest_side_crop, square_window)
from dfdc_fast.ops import ROI_FIELDS, out_extent, roi_rows


def test_one_clamping_rule_keeps_windows_inside_and_non_empty():
    assert clamp_window(-5, -3, 20, 30, 10, 12) == (0, 0, 12, 10)
    assert clamp_window(15, 12, 15, 12, 10, 12) == (11, 9, 12, 10)  # past the border: the last pixel
    assert clamp_window(4, 4, 4, 4, 10, 12) == (4, 4, 5, 5)
    for rule in (lambda b: int_box(b, 10, 12), lambda b: grown_box(b, 1.5, 10, 12)):
        for box in ([-4.0, -4.0, 30.0, 30.0], [11.7, 9.9, 11.8, 9.95], [3.2, 2.5, 3.3, 2.6]):
            x0, y0, x1, y1 = rule(box)
            assert 0 <= x0 < x1 <= 12 and 0 <= y0 < y1 <= 10


def test_window_rules_are_the_seeds():
    assert int_box([10.7, 20.2, 50.5, 60.4], 100, 100) == (10, 20, 50, 60)  # truncate origin, round far edge
    # NTechLab: 1.5x about the centre, both edges int()-truncated
    assert grown_box([10.0, 20.0, 30.0, 60.0], 1.5, 100, 100) == (5, 10, 35, 70)
    np.testing.assert_allclose(margin_box([30, 30, 60, 90], 1 / 3, 100, 100), [20, 10, 70, 100], rtol=1e-6)
    assert square_window((10, 20, 30, 60), center=False) == (40, 0, 0)
    assert square_window((10, 20, 30, 60), center=True) == (40, 10, 0)
    assert tuple(int(v) for v in letterbox_placement(200, 100, 380)) == (190, 380, 95, 0)
    assert smallest_side_crop((0, 0, 100, 150), 224, (224, 192)) == (224, 336, -16, -56)


def test_roi_rows_by_name():
    rows = roi_rows(2, frame=np.array([3, 7]), window=(1, 2, 11, 22), offset=(4, 0), canvas=(20, 20), out=(8, 8),
                    at=(1, 2))
    named = dict(zip(ROI_FIELDS, rows[1]))
    assert named == {"frame": 7, "x0": 1, "y0": 2, "x1": 11, "y1": 22, "ox": 4, "oy": 0, "canvas_w": 20,
                     "canvas_h": 20, "out_w": 8, "out_h": 8, "dx": 1, "dy": 2}
    copy = roi_rows(2, frame=0, window=np.array([[0, 0, 5, 3], [1, 1, 9, 8]]))  # a native-size copy per window
    assert [dict(zip(ROI_FIELDS, r))["out_w"] for r in copy] == [5, 8] and out_extent(copy) == (7, 8)
    with pytest.raises(ValueError, match="unknown crop_resize column"):
        roi_rows(1, frame=0, window=(0, 0, 1, 1), colour=3)
