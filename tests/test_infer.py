"""Inference end to end on the DFDC samples with small untrained checkpoints: a complete,
valid submission every time (bad inputs and an exhausted budget included), the CLI."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from dfdc_fast.infer import Budget, InferConfig, parse_duration, read_submission, run_inference, validate_submission
from dfdc_fast.models import create_model, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A 3D and a 2D model, untrained and small, saved the way training saves them."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = []
    for name, size, seed in (("mc3_18", 32, 0), ("efficientnet_b0", 64, 1)):
        torch.manual_seed(seed)
        path = str(folder / f"{name}.pth")
        save_checkpoint(path, create_model(name, num_classes=1), model_name=name, model_kwargs={"num_classes": 1},
                        config={"input_size": size})
        out.append(path)
    return out


@pytest.fixture(scope="module")
def scored(samples_dir, checkpoints, tmp_path_factory):
    """All sample clips plus a zero-byte, a corrupt and a faceless clip, scored once."""
    from videos import make_video

    src = tmp_path_factory.mktemp("videos")
    for name in sorted(os.listdir(samples_dir)):
        if name.endswith(".mp4"):
            shutil.copy(os.path.join(samples_dir, name), src / name)
    (src / "empty.mp4").write_bytes(b"")
    (src / "corrupt.mp4").write_bytes(open(os.path.join(samples_dir, "ccfoszqabv.mp4"), "rb").read()[:4000])
    make_video(str(src / "noface.mp4"), frames=40, width=96, height=64)
    out = tmp_path_factory.mktemp("out")
    summary = run_inference(InferConfig(inputs=[str(src)], checkpoints=checkpoints, out=str(out), frames=40,
                                        device="cpu", progress=False, workers=1))
    return src, out, summary


def test_one_row_per_video_with_probabilities_in_range(scored, samples_dir):
    src, out, summary = scored
    names = sorted(os.listdir(src))
    rows = read_submission(str(out / "submission.csv"))
    assert sorted(rows) == names
    report = validate_submission(str(out / "submission.csv"), expected=names)
    assert report["ok"], report
    with open(out / "submission.csv") as f:
        assert next(csv.reader(f)) == ["filename", "label"]
    real_clips = [n for n in names if n in json.load(open(os.path.join(samples_dir, "metadata.json")))]
    assert summary["statuses"]["ok"] == len(real_clips) == 20
    for n in real_clips:
        assert 0.001 <= rows[n] <= 0.999
        record = json.load(open(out / "videos" / (n[:-4] + ".json")))
        assert record["status"] == "ok" and record["faces"] >= 1
        assert set(record["scores"]) == {"mc3_18", "efficientnet_b0"}
        assert all(len(v) == record["faces"] for v in record["scores"].values())
        assert set(record["timings"]) >= {"decode_s", "detect_track_s", "models_s"}
    # two people in caifxvsozs: both faces scored
    assert json.load(open(out / "videos" / "caifxvsozs.json"))["faces"] == 2
    # the report picture is drawn next to the submission
    from PIL import Image

    assert Image.open(out / "report.png").size == (1200, 850)


def test_bad_inputs_get_half_and_a_status(scored):
    src, out, summary = scored
    rows = read_submission(str(out / "submission.csv"))
    status = {n: json.load(open(out / "videos" / (n[:-4] + ".json")))["status"] for n in ("empty.mp4", "corrupt.mp4", "noface.mp4")}
    assert status == {"empty.mp4": "decode_error", "corrupt.mp4": "decode_error", "noface.mp4": "no_face"}
    assert all(rows[n] == 0.5 for n in status)
    assert summary["fallback_0.5"] == 3


def test_the_video_score_is_the_aggregate_of_its_faces(scored):
    src, out, _ = scored
    record = json.load(open(out / "videos" / "ccfoszqabv.json"))
    per_model = [sum(v) / len(v) for v in record["scores"].values()]
    expected = min(max(sum(per_model) / len(per_model), 0.001), 0.999)
    assert read_submission(str(out / "submission.csv"))["ccfoszqabv.mp4"] == pytest.approx(expected, abs=1e-6)


def test_a_tiny_time_budget_still_writes_a_complete_file(samples_dir, checkpoints, tmp_path):
    summary = run_inference(InferConfig(inputs=[samples_dir], checkpoints=checkpoints, out=str(tmp_path),
                                        device="cpu", progress=False, time_budget=0.01))
    rows = read_submission(str(tmp_path / "submission.csv"))
    assert len(rows) == 20 and set(rows.values()) == {0.5}
    assert summary["statuses"] == {"time_budget": 20}


def test_budget_degrades_before_it_skips():
    b = Budget(100.0, n_models=4)
    assert b.choose(10, 2) == 0                      # nothing measured: the full recipe
    b.record(0, 20.0, 2)                             # 10 s per video at full
    b.started -= 20.0                                # 78 s usable, x 0.85 = 66 s
    assert b.choose(8, 2) == 1                       # full needs 80 s; half frames, no TTA: 2.5 s/video = 20 s
    b.started -= 65.0                                # 13 s usable, x 0.85 = 11 s
    assert b.choose(8, 2) == 2                       # one model of four: 0.625 s/video = 5 s
    b.started -= 12.0                                # 1 s usable
    assert b.choose(8, 2) == 3                       # not even one group fits: skip
    assert Budget(None).choose(1000, 8) == 0


def test_parse_duration():
    assert parse_duration("8.5h") == 30600 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_cli(samples_dir, checkpoints, tmp_path):
    src = tmp_path / "two"
    src.mkdir()
    for n in ("ccfoszqabv.mp4", "acqfdwsrhi.mp4"):
        shutil.copy(os.path.join(samples_dir, n), src / n)
    (tmp_path / "opts.yaml").write_text("frames: 40\naggregator: ntech\n")  # typed from YAML, flags override
    # checkpoints, videos and options in any order (the checkpoint after -o); -c is a config file, as in train
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.infer", str(src), "-o", str(tmp_path / "o"), checkpoints[0],
                        "-c", str(tmp_path / "opts.yaml"), "--device", "cpu", "--workers", "0", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["statuses"] == {"ok": 2}
    rows = read_submission(str(tmp_path / "o" / "submission.csv"))
    assert set(rows) == {"ccfoszqabv.mp4", "acqfdwsrhi.mp4"} and all(0.01 <= p <= 0.99 for p in rows.values())
    assert json.load(open(tmp_path / "o" / "summary.json"))["config"]["frames"] == 40
    assert subprocess.run([sys.executable, "-m", "dfdc_fast.infer", "--help"], capture_output=True, cwd=ROOT).returncode == 0


def test_cli_user_errors_are_one_line_with_exit_code_2(checkpoints, tmp_path):
    for args, message in ((["/no/such/folder", checkpoints[0]], "does not exist"),
                          ([str(tmp_path)], "no checkpoints given"),
                          ([str(tmp_path), checkpoints[0], "--frames", "x"], "invalid int value")):
        r = subprocess.run([sys.executable, "-m", "dfdc_fast.infer", *args, "-o", str(tmp_path / "o"), "--device", "cpu"],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
