"""The decode bookkeeping shared by the backends, driven without a decoder."""
import pytest
import torch

from dfdc_fast.io import Evenly, Every, First, VideoDecodeError
from dfdc_fast.io.base import DecodePlan, FrameCollector, check_complete


def collect(frames, header, actual):
    col = FrameCollector(DecodePlan.make(frames, header), header, lambda n: torch.zeros((n, 1, 1, 3), dtype=torch.uint8))
    for i in range(actual):
        row = col.slot()
        if row is not None:
            row.fill_(i)
        if col.done:
            break
    return col


def test_streaming_selection_counts_the_real_frames():
    col = collect(Every(4), header=10, actual=14)  # header under-reports: the buffer grows
    res = col.finish("v", listed_frames=0)
    assert res.indices.tolist() == [0, 4, 8, 12] and res.num_frames == 14 and res.exact and not res.incomplete
    assert col.buffer[:4, 0, 0, 0].tolist() == [0, 4, 8, 12]


def test_first_stops_early_and_keeps_the_header_count():
    col = collect(First(3), header=10, actual=10)
    res = col.finish("v", listed_frames=10)
    assert col.decoded == 3 and res.indices.tolist() == [0, 1, 2] and res.num_frames == 10 and not res.exact


def test_count_dependent_selection_asks_for_a_second_pass_when_the_header_lied():
    col = collect(Evenly(3), header=10, actual=6)  # wanted 0, 4, 9; only 6 frames exist
    res = col.finish("v", listed_frames=0)
    assert res.incomplete and res.indices.tolist() == [0, 2, 5] and res.num_frames == 6


def test_truncation_is_detected_against_the_mp4_index():
    check_complete("v", decoded=299, listed=300)  # one missing frame is tolerated
    with pytest.raises(VideoDecodeError, match="decoded 150 of the 300"):
        check_complete("v", decoded=150, listed=300)
    check_complete("v", decoded=5, listed=0)  # no index, nothing to compare
    with pytest.raises(VideoDecodeError, match="no decodable frame"):
        collect(Every(1), header=5, actual=0).finish("v", listed_frames=5)
