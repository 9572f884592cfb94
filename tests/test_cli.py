"""The command-line jobs probe and detect (extract has tests/test_extract.py)."""
import json
import os
import subprocess
import sys


from dfdc_fast import probe
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


def test_probe_never_looks_at_a_refused_name(capsys, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"x" * 1234)  # exists, outside the dataset
    make_video(str(src / "good.mp4"), frames=5)
    (src / "metadata.json").write_text(json.dumps({"good.mp4": {"label": "REAL"}, "../outside.mp4": {"label": "REAL"}}))
    _, lines = run_probe(capsys, src)
    refused = [r for r in lines if r["status"] == "error"]
    assert len(refused) == 1 and refused[0]["path"] == "../outside.mp4" and refused[0]["size_bytes"] is None


def test_infer_names_a_checkpoint_given_to_the_config_flag(tmp_path, capsys):
    """-c is a YAML file of options (as in train); a checkpoint there is refused with a word on where it goes."""
    from dfdc_fast.infer.__main__ import main

    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"\x80\x02binary")
    assert main([str(tmp_path), "-c", str(ckpt), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "-w FILE" in err and "Traceback" not in err
    renamed = tmp_path / "model.bin"
    ckpt.rename(renamed)
    assert main([str(tmp_path), "-c", str(renamed), "-o", str(tmp_path / "out")]) == 2
    assert "not a YAML file" in capsys.readouterr().err
