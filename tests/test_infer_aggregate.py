"""Video-level aggregation (DFDC 1st/3rd/5th place recipes) and the submission file.

Expected numbers are worked out by hand in the comments, not by calling the code under test.
"""
import math
import os

import pytest
import torch

from dfdc_fast.infer import (
    AGGREGATORS,
    NO_FACE_SCORE,
    aggregate,
    balanced_log_loss,
    confident_strategy,
    dfdc_log_loss,
    fallback_score,
    medics,
    ntech_sharpen,
    read_submission,
    selim,
    validate_submission,
    write_submission,
)

# --------------------------------------------------------------------------- medics


def test_medics_mean_of_model_means_not_pooled():
    # model a: (0.2 + 0.4) / 2 = 0.3; model b: 0.9; video = (0.3 + 0.9) / 2 = 0.6
    # (pooling all three faces would give (0.2 + 0.4 + 0.9) / 3 = 0.5)
    assert medics({"a": torch.tensor([0.2, 0.4]), "b": torch.tensor([0.9])}) == pytest.approx(0.6)
    assert medics([[0.2, 0.4], [0.9]]) == pytest.approx(0.6)
    assert medics(torch.tensor([[0.2, 0.4], [0.9, 0.9]])) == pytest.approx(0.6)  # 2-D: one row per model


def test_medics_clips_both_ends():
    assert medics({"a": [1.0, 1.0], "b": [1.0]}) == pytest.approx(0.999)
    assert medics({"a": [0.0, 0.0]}) == pytest.approx(0.001)
    assert medics({"a": [0.0]}, clip=(0.01, 0.99)) == pytest.approx(0.01)
    assert medics({"a": [0.9995]}) == pytest.approx(0.999)  # just above the top clip


# --------------------------------------------------------------------------- selim


def _faces(n_hi, hi, n_rest, rest, dtype=torch.float32):
    return torch.tensor([hi] * n_hi + [rest] * n_rest, dtype=dtype)


def test_confident_strategy_floor_edge_sz32():
    # sz = 32: 32 // 2.5 = 12.0 (float floor of 12.8)
    # 12 faces > 0.8: 12 > 12.0 is False -> not confident; no face < 0.2 -> plain mean
    #   (12 * 0.9 + 20 * 0.5) / 32 = (10.8 + 10.0) / 32 = 20.8 / 32 = 0.65
    assert confident_strategy(_faces(12, 0.9, 20, 0.5)) == pytest.approx(0.65)
    # 13 faces > 0.8: 13 > 12.0 and 13 > 11 -> mean of the confident faces = 0.9
    assert confident_strategy(_faces(13, 0.9, 19, 0.5)) == pytest.approx(0.9)


def test_confident_strategy_needs_more_than_11():
    # sz = 20: 20 // 2.5 = 8.0. 11 faces > 0.8 beat 8.0 but not 11 -> plain mean
    #   (11 * 0.9 + 9 * 0.5) / 20 = (9.9 + 4.5) / 20 = 14.4 / 20 = 0.72
    assert confident_strategy(_faces(11, 0.9, 9, 0.5)) == pytest.approx(0.72)
    # 12 faces > 0.8: 12 > 8.0 and 12 > 11 -> 0.9
    assert confident_strategy(_faces(12, 0.9, 8, 0.5)) == pytest.approx(0.9)


def test_confident_strategy_low_branch():
    # sz = 20: 0.9 * 20 = 18. 19 faces < 0.2 -> 19 > 18 -> mean of the low faces = 0.1
    #   (the plain mean would be (19 * 0.1 + 0.6) / 20 = 0.125)
    assert confident_strategy(_faces(19, 0.1, 1, 0.6)) == pytest.approx(0.1)
    # 18 faces < 0.2: 18 > 18 is False -> plain mean (18 * 0.1 + 2 * 0.6) / 20 = 3.0 / 20 = 0.15
    assert confident_strategy(_faces(18, 0.1, 2, 0.6)) == pytest.approx(0.15)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_confident_strategy_threshold_is_strict(dtype):
    # p == t is not "> t": 13 faces at exactly 0.8 of 32 -> plain mean (13 * 0.8 + 19 * 0.5) / 32
    #   = (10.4 + 9.5) / 32 = 19.9 / 32 = 0.621875. Compared in the input dtype, like NumPy on
    #   float32 outputs: float32(0.8) = 0.80000001 is still not > 0.8.
    faces = _faces(13, 0.8, 19, 0.5, dtype)
    assert confident_strategy(faces) == pytest.approx(0.621875, abs=1e-3)
    assert confident_strategy([0.8] * 13 + [0.5] * 19) == pytest.approx(0.621875)  # Python floats: float64
    # a lower t makes them confident: mean = 0.8
    assert confident_strategy(_faces(13, 0.8, 19, 0.5), t=0.7) == pytest.approx(0.8)


def test_selim_mean_over_models_without_clipping():
    # a: 13 of 32 faces at 0.9 -> 0.9; b: 2 faces -> plain mean (0.3 + 0.5) / 2 = 0.4; video (0.9 + 0.4) / 2 = 0.65
    assert selim({"a": _faces(13, 0.9, 19, 0.5), "b": [0.3, 0.5]}) == pytest.approx(0.65)
    # no clip: 32 faces at 1.0 -> 1.0 exactly (medics would give 0.999)
    assert selim({"a": [1.0] * 32}) == 1.0
    assert selim([[0.0] * 32]) == 0.0


# --------------------------------------------------------------------------- ntech


def test_ntech_sharpen_single_values():
    # p = 0.9: d = 0.4, 0.4 ** 0.65 = exp(0.65 * ln 0.4) = exp(0.65 * -0.916291) = exp(-0.595589) = 0.551238
    #   0.5 + 0.551238 = 1.051238 -> clipped to 0.99
    assert ntech_sharpen([0.9]) == pytest.approx(0.99)
    # p = 0.1: d = -0.4 -> 0.5 - 0.551238 = -0.051238 -> clipped to 0.01
    assert ntech_sharpen([0.1]) == pytest.approx(0.01)
    # p = 0.6: d = 0.1, 0.1 ** 0.65 = exp(0.65 * -2.302585) = exp(-1.496680) = 0.223872 -> 0.723872
    assert ntech_sharpen([0.6]) == pytest.approx(0.723872, abs=1e-6)
    # p = 0.3: d = -0.2, 0.2 ** 0.65 = exp(0.65 * -1.609438) = exp(-1.046135) = 0.351293 -> 0.148707
    assert ntech_sharpen([0.3]) == pytest.approx(0.148707, abs=1e-6)
    # p = 0.5: d = 0, sign(0) = 0 -> 0.5 (the 1e-4 keeps the weight sum non-zero)
    assert ntech_sharpen([0.5, 0.5]) == pytest.approx(0.5)


def test_ntech_sharpen_confidence_weighting():
    # p = [0.9, 0.6]: p' = [0.99, 0.723872], w = [0.4001, 0.1001]
    #   (0.4001 * 0.99 + 0.1001 * 0.723872) / (0.4001 + 0.1001) = (0.396099 + 0.072460) / 0.5002 = 0.936743
    assert ntech_sharpen(torch.tensor([0.9, 0.6])) == pytest.approx(0.936743, abs=1e-6)
    # any shape is pooled
    assert ntech_sharpen(torch.tensor([[0.9], [0.6]])) == pytest.approx(0.936743, abs=1e-6)


def test_aggregate_registry_ntech_pools_models():
    assert set(AGGREGATORS) == {"medics", "selim", "ntech"}
    assert aggregate("ntech", {"a": torch.tensor([0.9]), "b": torch.tensor([0.6])}) == pytest.approx(0.936743, abs=1e-6)
    assert aggregate("medics", {"a": [0.2, 0.4], "b": [0.9]}) == pytest.approx(0.6)
    assert aggregate("selim", {"a": _faces(13, 0.9, 19, 0.5)}) == pytest.approx(0.9)
    assert aggregate("selim", {"a": _faces(13, 0.8, 19, 0.5)}, t=0.7) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="unknown aggregator"):
        aggregate("mean", {"a": [0.5]})


def test_results_are_python_floats_and_float32_inputs_work():
    scores = {"a": torch.tensor([0.25, 0.75], dtype=torch.float16)}
    for name in AGGREGATORS:
        out = aggregate(name, scores)
        assert type(out) is float
    assert aggregate("medics", scores) == pytest.approx(0.5)
    # Python floats are taken as float64 (torch's default float32 would turn 0.9 into 0.89999998)
    assert aggregate("selim", {"a": [0.9]}) == 0.9
    assert medics([[0.9, 0.9]]) == 0.9


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
@pytest.mark.parametrize("empty", [{}, [], {"a": torch.tensor([])}, {"a": [0.5], "b": []}])
def test_empty_inputs_raise(name, empty):
    with pytest.raises(ValueError, match="empty"):
        aggregate(name, empty)


def test_direct_functions_raise_on_empty_and_bad_values():
    for fn in (medics, selim):
        with pytest.raises(ValueError):
            fn({})
    for fn in (confident_strategy, ntech_sharpen):
        with pytest.raises(ValueError):
            fn([])
        with pytest.raises(ValueError, match="within"):
            fn([0.5, float("nan")])
        with pytest.raises(ValueError, match="within"):
            fn([2.3])  # a logit, not a probability
    with pytest.raises(TypeError, match="wrap"):
        medics([0.2, 0.4])  # ambiguous flat list


def test_fallback_score_is_explicit():
    assert NO_FACE_SCORE == 0.5
    assert fallback_score("no_face") == 0.5
    assert fallback_score("decode_error") == 0.5
    with pytest.raises(ValueError, match="unknown fallback status"):
        fallback_score("no_fcae")


@pytest.mark.cuda
def test_aggregators_on_cuda():
    scores = {"a": _faces(13, 0.9, 19, 0.5).cuda(), "b": torch.tensor([0.3, 0.5], device="cuda")}
    assert selim(scores) == pytest.approx(0.65)
    # a: (13 * 0.9 + 19 * 0.5) / 32 = (11.7 + 9.5) / 32 = 0.6625; b: 0.4 -> (0.6625 + 0.4) / 2 = 0.53125
    assert medics(scores) == pytest.approx(0.53125)
    # pooled: (0.9 + 0.6) faces as in test_ntech_sharpen_confidence_weighting
    assert aggregate("ntech", {"a": torch.tensor([0.9], device="cuda"), "b": [0.6]}) == pytest.approx(0.936743, abs=1e-6)


# --------------------------------------------------------------------------- submission


def test_submission_round_trip_in_expected_order(tmp_path):
    path = str(tmp_path / "submission.csv")
    scores = {"bbb.mp4": 0.999, "aaa.mp4": 0.001, "ccc.mp4": 0.5}
    write_submission(path, scores, expected=["ccc.mp4", "aaa.mp4", "bbb.mp4"])
    with open(path) as f:
        assert f.read() == "filename,label\nccc.mp4,0.5\naaa.mp4,0.001\nbbb.mp4,0.999\n"
    assert read_submission(path) == scores
    report = validate_submission(path, expected=["aaa.mp4", "bbb.mp4", "ccc.mp4"])
    assert report == {
        "rows": 3, "missing": [], "extra": [], "out_of_range": [], "nonfinite": [], "duplicates": [], "ok": True,
    }


def test_submission_sorted_without_expected_and_exact_floats(tmp_path):
    path = str(tmp_path / "sub.csv")
    p = 1 / 3
    write_submission(path, {"b.mp4": p, "a.mp4": torch.tensor(0.25)})
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[:2] == ["filename,label", "a.mp4,0.25"]
    assert read_submission(path)["b.mp4"] == p  # repr round-trips exactly


def test_atomic_write_leaves_no_temp_file(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("filename,label\nold.mp4,0.5\n")
    write_submission(str(path), {"a.mp4": 0.7})
    assert sorted(os.listdir(tmp_path)) == ["submission.csv"]
    # a failing write keeps the old file and leaves nothing behind
    with pytest.raises(ValueError):
        write_submission(str(path), {"a.mp4": 0.7, "b.mp4": float("nan")})
    assert sorted(os.listdir(tmp_path)) == ["submission.csv"]
    assert read_submission(str(path)) == {"a.mp4": 0.7}


def test_missing_extra_and_bad_values_raise(tmp_path):
    path = str(tmp_path / "submission.csv")
    with pytest.raises(ValueError, match=r"1 missing \['b.mp4'\]"):
        write_submission(path, {"a.mp4": 0.5}, expected=["a.mp4", "b.mp4"])
    with pytest.raises(ValueError, match=r"1 extra \['z.mp4'\]"):
        write_submission(path, {"a.mp4": 0.5, "z.mp4": 0.5}, expected=["a.mp4"])
    with pytest.raises(ValueError, match="repeat"):
        write_submission(path, {"a.mp4": 0.5}, expected=["a.mp4", "a.mp4"])
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="within"):
            write_submission(path, {"a.mp4": bad})
    assert not os.path.exists(path)
    assert os.listdir(tmp_path) == []


def test_validate_reports_problems(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("filename,label\na.mp4,0.5\nb.mp4,1.2\nc.mp4,nan\nd.mp4,oops\na.mp4,0.1\nx.mp4,0.3\n")
    report = validate_submission(str(path), expected=["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"])
    assert report == {
        "rows": 6, "missing": ["e.mp4"], "extra": ["x.mp4"], "out_of_range": ["b.mp4"],
        "nonfinite": ["c.mp4", "d.mp4"], "duplicates": ["a.mp4"], "ok": False,
    }
    with pytest.raises(ValueError, match="not a number"):
        read_submission(str(path))
    (tmp_path / "dup.csv").write_text("filename,label\na.mp4,0.5\na.mp4,0.1\n")
    with pytest.raises(ValueError, match="more than once"):
        read_submission(str(tmp_path / "dup.csv"))
    (tmp_path / "bad.csv").write_text("name,score\na.mp4,0.5\n")
    with pytest.raises(ValueError, match="header"):
        validate_submission(str(tmp_path / "bad.csv"))


# --------------------------------------------------------------------------- metric


def test_dfdc_log_loss_by_hand():
    # y = [FAKE, REAL], p = [0.8, 0.4]: (-ln 0.8 - ln(1 - 0.4)) / 2 = (0.223144 + 0.510826) / 2 = 0.366985
    assert dfdc_log_loss([1, 0], [0.8, 0.4]) == pytest.approx(0.366985, abs=1e-6)
    assert dfdc_log_loss({"a": "FAKE", "b": "REAL"}, {"b": 0.4, "a": 0.8, "unlabelled": 0.3}) == pytest.approx(
        0.366985, abs=1e-6
    )
    assert dfdc_log_loss(torch.tensor([1, 0]), torch.tensor([0.8, 0.4], dtype=torch.float64)) == pytest.approx(
        0.366985, abs=1e-6
    )
    # clipping: a confident miss costs -ln(1e-15) = 15 * ln 10 = 34.538776, not infinity
    assert dfdc_log_loss([1], [0.0]) == pytest.approx(34.538776, abs=1e-6)
    assert dfdc_log_loss([0], [1.0]) == pytest.approx(34.538776, abs=1e-3)  # 1 - (1 - 1e-15) is inexact in float
    assert dfdc_log_loss([1, 0], [1.0, 0.0]) == pytest.approx(1e-15, abs=1e-12)
    # always guessing 0.5 scores ln 2 = 0.693147
    assert dfdc_log_loss([1, 0, 0], [0.5, 0.5, 0.5]) == pytest.approx(0.693147, abs=1e-6)


def test_balanced_log_loss_by_hand():
    y, p = [1, 1, 1, 0], [0.9, 0.9, 0.6, 0.2]
    # fakes: (2 * -ln 0.9 - ln 0.6) / 3 = (2 * 0.105361 + 0.510826) / 3 = 0.721547 / 3 = 0.240516
    # reals: -ln(1 - 0.2) = 0.223144; balanced = (0.240516 + 0.223144) / 2 = 0.231830
    assert balanced_log_loss(y, p) == pytest.approx(0.231830, abs=1e-6)
    # plain mean: (0.721547 + 0.223144) / 4 = 0.236173
    assert dfdc_log_loss(y, p) == pytest.approx(0.236173, abs=1e-6)
    with pytest.raises(ValueError, match="both classes"):
        balanced_log_loss([1, 1], [0.5, 0.5])


def test_log_loss_input_errors():
    with pytest.raises(ValueError, match="no prediction"):
        dfdc_log_loss({"a": 1, "b": 0}, {"a": 0.5})
    with pytest.raises(ValueError, match="2 labels but 1"):
        dfdc_log_loss([1, 0], [0.5])
    with pytest.raises(ValueError, match="labels"):
        dfdc_log_loss([0.5], [0.5])
    with pytest.raises(ValueError, match="within"):
        dfdc_log_loss([1], [float("nan")])
    with pytest.raises(ValueError, match="no videos"):
        dfdc_log_loss([], [])
