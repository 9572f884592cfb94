"""The command-line jobs: probe and (the stages that exist of) extract."""
import csv
import json
import os
import subprocess
import sys

import pytest

from dfdc_fast import extract, probe
from videos import make_video


def run_probe(capsys, *args):
    rc = probe.main([str(a) for a in args])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return rc, lines


def test_probe_sample_set(capsys, samples_dir):
    rc, lines = run_probe(capsys, samples_dir)
    assert rc == 0 and len(lines) == 20
    for rec in lines:
        assert {"path", "frames", "width", "height", "fps", "codec", "status", "error"} <= set(rec)
        assert rec["status"] == "ok" and rec["error"] is None and rec["codec"] == "h264"
        assert rec["frames"] == (299 if rec["path"].endswith("adwbthsgqb.mp4") else 300)
        assert rec["label"] in ("REAL", "FAKE")
    assert sum(r["height"] > r["width"] for r in lines) == 2


def test_probe_reports_bad_files_and_metadata_mismatches(capsys, tmp_path):
    make_video(str(tmp_path / "good.mp4"), frames=5)
    make_video(str(tmp_path / "stray.mp4"), frames=5)
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "metadata.json").write_text(json.dumps({
        "good.mp4": {"label": "REAL"}, "zero.mp4": {"label": "FAKE"}, "gone.mp4": {"label": "FAKE"},
        "../evil.mp4": {"label": "REAL"}}))
    rc, lines = run_probe(capsys, tmp_path, tmp_path / "nothing.mp4")
    by_name = {os.path.basename(r["path"]): r for r in lines}
    assert rc == 1
    assert by_name["good.mp4"]["status"] == "ok" and by_name["good.mp4"]["frames"] == 5
    assert by_name["zero.mp4"]["status"] == "decode_error" and "empty" in by_name["zero.mp4"]["error"]
    assert by_name["gone.mp4"]["status"] == "missing"
    assert by_name["stray.mp4"]["status"] == "unlisted" and by_name["stray.mp4"]["frames"] == 5
    assert by_name["evil.mp4"]["status"] == "error" and "leave" in by_name["evil.mp4"]["error"]
    assert by_name["nothing.mp4"]["status"] == "missing"


def test_probe_decode_mode(capsys, tmp_path):
    rc, (rec,) = run_probe(capsys, "--decode", make_video(str(tmp_path / "v.mp4"), frames=17))
    assert rc == 0 and rec["frames"] == 17 and rec["status"] == "ok"


def test_probe_cli_help():
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.probe", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "VIDEO_OR_DIR" in r.stdout and "--decode" in r.stdout


def read_index(path):
    with open(path) as f:
        return {r["video"]: r for r in csv.DictReader(f)}


def test_extract_demo_default_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert extract.main(["--device", "cpu", "--no-progress"]) == 0  # no input: the bundled demo clips
    index = read_index(tmp_path / "extract_out" / "index.csv")
    assert set(index) == {"ccfoszqabv.mp4", "acqfdwsrhi.mp4", "afoovlsmtx.mp4", "bndybcqhfr.mp4"}
    assert all(r["status"] == "ok" and r["frames"] == "150" and r["sampled_frames"] == "15" for r in index.values())
    assert index["afoovlsmtx.mp4"]["height"] == "960" and index["afoovlsmtx.mp4"]["width"] == "540"
    assert index["acqfdwsrhi.mp4"]["original"] == "ccfoszqabv.mp4"
    summary = json.loads((tmp_path / "extract_out" / "summary.json").read_text())
    assert summary["processed"] == 4 and "detect" in summary["stages_missing"]

    again = extract.run_extraction(extract.ExtractConfig(device="cpu", progress=False))
    assert again["processed"] == 0 and again["skipped_done"] == 4
    assert read_index(tmp_path / "extract_out" / "index.csv") == index
    assert not list((tmp_path / "extract_out").rglob("*.tmp*"))


def test_extract_records_bad_videos_and_keeps_going(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "ok.mp4"), frames=20)
    (src / "zero.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("hello")
    out = tmp_path / "out"
    summary = extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(out), device="cpu", progress=False))
    index = read_index(out / "index.csv")
    assert index["ok.mp4"]["status"] == "ok"
    assert index["zero.mp4"]["status"] == "decode_error" and "empty" in index["zero.mp4"]["error"]
    assert index["text.mp4"]["status"] == "decode_error"
    assert summary["status_counts"] == {"ok": 1, "decode_error": 2}


def test_extract_shards_split_the_work(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        make_video(str(src / f"v{i}.mp4"), frames=3)
    seen = []
    for i in range(2):
        s = extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(tmp_path / "o"), device="cpu",
                                                         shard=f"{i}/2", progress=False))
        seen.append(s["videos"])
    assert seen == [3, 2]
    assert len(list((tmp_path / "o" / "videos").rglob("*.json"))) == 5
    with pytest.raises(ValueError, match="i/N"):
        extract.parse_shard("1-2")
    with pytest.raises(ValueError):
        extract.parse_shard("2/2")


def test_extract_cli_help():
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.extract", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--every" in r.stdout and "default: 10" in r.stdout


def test_detect_cli_writes_one_line_per_sampled_frame(tmp_path, samples_dir):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    inputs = [os.path.join(samples_dir, n) for n in ("ccfoszqabv.mp4", "afoovlsmtx.mp4")] + [str(broken)]
    out = tmp_path / "det.jsonl"
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.detect", *inputs, "--every", "100", "--out", str(out),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # one video could not be decoded
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_video = {}
    for rec in lines:
        by_video.setdefault(os.path.basename(rec["video"]), []).append(rec)
    assert [r["status"] for r in by_video["broken.mp4"]] == ["decode_error"] and by_video["broken.mp4"][0]["error"]
    for name in ("ccfoszqabv.mp4", "afoovlsmtx.mp4"):
        recs = by_video[name]
        assert [r["frame"] for r in recs] == [0, 100, 200]
        for rec in recs:
            assert rec["status"] == "ok" and len(rec["boxes"]) == len(rec["scores"]) == len(rec["landmarks"]) >= 1
            x0, y0, x1, y1 = rec["boxes"][0]
            assert 0 <= x0 < x1 and 0 <= y0 < y1 and rec["scores"][0] > 0.9 and len(rec["landmarks"][0]) == 5
    portrait = by_video["afoovlsmtx.mp4"][0]["boxes"][0]
    assert portrait[1] > 600  # full-resolution pixels of the 1080x1920 portrait frame (about 333 at 0.5x)
    assert "3 videos" in r.stderr and "1 failed" in r.stderr


def test_detect_cli_help():
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.detect", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--every" in r.stdout and "medics_export" in r.stdout
