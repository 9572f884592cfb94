import numpy as np
import pytest

from dfdc_fast.io import All, Chunk, Evenly, Every, First, Indices, num_chunks
from dfdc_fast.io.selectors import as_selector


def test_every_and_its_edges():
    assert Every(10).resolve(30).tolist() == [0, 10, 20]
    assert Every(10, start=5).resolve(30).tolist() == [5, 15, 25]
    assert Every(500).resolve(300).tolist() == [0]  # n larger than the video
    with pytest.raises(ValueError, match="past the end"):
        Every(2, start=30).resolve(30)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            Every(bad)


def test_first_is_capped_by_the_video():
    assert First(3).resolve(10).tolist() == [0, 1, 2]
    assert First(100).resolve(7).tolist() == list(range(7))
    with pytest.raises(ValueError):
        First(0)


def test_evenly_includes_both_ends_and_never_repeats():
    idx = Evenly(32).resolve(300)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 299
    assert np.all(np.diff(idx) > 0)
    assert Evenly(32).resolve(10).tolist() == list(range(10))  # shorter video: each frame once
    assert Evenly(1).resolve(300).tolist() == [0]


def test_chunks():
    assert Chunk(0).resolve(300).tolist() == list(range(150))
    assert Chunk(1).resolve(300).tolist() == list(range(150, 300))
    assert Chunk(1).resolve(299).tolist() == list(range(150, 299))  # last chunk may be short
    assert num_chunks(300) == 2 and num_chunks(299) == 2 and num_chunks(301) == 3 and num_chunks(1) == 1
    with pytest.raises(ValueError, match="past the end"):
        Chunk(2).resolve(300)


def test_indices_keep_order_and_duplicates_and_reject_out_of_range():
    assert Indices([5, 1, 5]).resolve(10).tolist() == [5, 1, 5]
    with pytest.raises(ValueError, match=r"\[10, 12\]"):
        Indices([0, 10, 12]).resolve(10)
    with pytest.raises(ValueError, match=">= 0"):
        Indices([-1])
    with pytest.raises(ValueError):
        Indices([])
    with pytest.raises(ValueError):
        Indices([1.5])


def test_as_selector():
    assert isinstance(as_selector(None), All)
    assert isinstance(as_selector([1, 2]), Indices)
    assert isinstance(as_selector(range(3)), Indices)
    with pytest.raises(ValueError, match="First"):
        as_selector(5)
    with pytest.raises(ValueError, match="FrameSelector"):
        as_selector("all")
