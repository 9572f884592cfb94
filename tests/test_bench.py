import json
import os
import subprocess
import sys

import pytest

from dfdc_fast.bench import environment, time_runs, write_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_time_runs_keeps_every_run():
    calls = []
    t = time_runs(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(t.runs_s) == 4 and t.median_s >= 0
    with pytest.raises(ValueError):
        time_runs(lambda: None, repeats=0)


def test_write_result_schema(tmp_path):
    env = environment("cpu")
    assert env["device"] and env["versions"]["torch"] and env["command"]
    path = write_result("unit", env, {"files": []}, {"ours": {"runs_s": [1.0]}}, out_dir=str(tmp_path))
    data = json.load(open(path))
    for key in ("stage", "device", "driver", "cuda", "versions", "git_commit", "command", "inputs", "results"):
        assert key in data


@pytest.mark.slow
def test_decode_benchmark_runs_on_cpu(tmp_path, samples_dir):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "decode.py"), "--src", samples_dir,
                        "--videos", "1", "--repeats", "1", "--threads", "2", "--procs", "1", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("decode-*.json")
    res = json.load(open(path))["results"]
    assert res["pyav"]["available"] and res["ours_pyav"]["available"] and res["opencv"]["available"]
    assert res["ours_pyav"]["ratio_vs_pyav"] > 0 and len(res["pyav"]["runs_s"]) == 1
    assert res["ours_nvdec_1"]["available"] is False


def test_track_benchmark_runs_on_cpu(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "track.py"), "--cases", "medics",
                        "--repeats", "1", "--tracker-videos", "3", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    [path] = tmp_path.glob("track-*.json")
    out = json.loads(path.read_text())
    faces = out["results"]["medics/faces"]
    assert faces["ours_cpu_equals_skimage"] is True
    for name in ("skimage", "scipy", "ours_cpu"):
        run = faces[name]["label"]
        assert run["available"] and len(run["runs_s"]) == 1 and run["ratio_vs_skimage"] > 0
    tracker = out["results"]["tracker"]
    assert tracker["same_tracks_as_medics"] is True and tracker["ours_mask_cpu"]["videos_per_s"] > 0
