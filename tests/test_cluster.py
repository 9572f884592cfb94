"""Extraction and inference past one process: --shard runs merged into one index, and
--executor ray on one local Ray cluster (127.0.0.1, two 1-CPU nodes), on the CPU.

Every claim is checked against an in-process run of the same videos: the index, the
per-video records, and the bytes of every clip and crop.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from dfdc_fast import extract
from dfdc_fast.extract.on_ray import FAULT_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = extract.DEMO_DIR
VOLATILE = ("timings_s", "worker", "peak_gpu_mb")  # differ between any two runs


def outputs(out):
    """(index rows, records without run-dependent fields, {clip/crop path: bytes})."""
    with open(os.path.join(out, "index.csv")) as f:
        index = list(csv.DictReader(f))
    records = {}
    for folder, _, files in os.walk(os.path.join(out, "videos")):
        for name in files:
            assert not name.startswith(".tmp-"), f"a partial file was left: {name}"
            if not name.endswith(".json"):
                continue
            rec = json.load(open(os.path.join(folder, name)))
            records[name] = {k: v for k, v in rec.items() if k not in VOLATILE}
    files = {}
    for top in ("clips", "crops"):
        for folder, _, names in os.walk(os.path.join(out, top)):
            for name in names:
                assert not name.startswith(".tmp-"), f"a partial file was left: {name}"
                files[os.path.relpath(os.path.join(folder, name), out)] = open(os.path.join(folder, name), "rb").read()
    return index, records, files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("inprocess"))
    summary = extract.run_extraction(extract.ExtractConfig(inputs=[DEMO], out=out, device="cpu", workers=0, encoders=0,
                                                           progress=False))
    assert summary["status_counts"] == {"ok": 4}
    return outputs(out)


def ray_config(out, **kw):
    return extract.ExtractConfig(inputs=[DEMO], out=str(out), device="cpu", encoders=0, progress=False,
                                 executor="ray", **kw)


def listening_addresses(session_dir):
    """Local addresses of the TCP sockets that the cluster's processes listen on."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if session_dir.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                pids.append(pid)
        except OSError:
            pass
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                found.append(cols[1].split(":")[0])
    return pids, found


@pytest.mark.slow
def test_without_ray_the_executor_is_refused_in_one_line(tmp_path):
    block = "import sys; sys.modules['ray'] = None; "  # as if Ray were not installed
    for job, args in (("dfdc_fast.extract", [DEMO, "-o", str(tmp_path / "x"), "--device", "cpu"]),
                      ("dfdc_fast.infer.__main__", [DEMO, str(tmp_path / "m.pth"), "-o", str(tmp_path / "y")])):
        (tmp_path / "m.pth").write_bytes(b"")
        code = block + f"from {job} import main; sys.exit(main({args + ['--executor', 'ray']!r}))"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("No input", "Output folder"))]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and 'pip install "dfdc_fast[ray]"' in lines[0], proc.stderr


@pytest.mark.slow
def test_last_shard_merges_one_index_equal_to_one_process(reference, tmp_path):
    for i in (1, 0):
        summary = extract.run_extraction(extract.ExtractConfig(inputs=[DEMO], out=str(tmp_path), device="cpu",
                                                               workers=0, encoders=0, progress=False, shard=f"{i}/2"))
    assert "merged" in summary and not (tmp_path / "summary-0.json").samefile(tmp_path / "summary.json")
    got = outputs(tmp_path)
    assert got[0] == reference[0] and got[1] == reference[1] and got[2] == reference[2]
    merged = json.loads((tmp_path / "summary.json").read_text())
    assert merged["status_counts"] == {"ok": 4} and merged["processed"] == 4 and len(merged["shards"]) == 2
    (tmp_path / "index.csv").unlink()
    again = extract.run_extraction(extract.ExtractConfig(inputs=[DEMO], out=str(tmp_path), device="cpu", merge=True,
                                                         progress=False))
    assert again["index"] == str(tmp_path / "index.csv") and outputs(tmp_path)[0] == reference[0]


@pytest.mark.slow
def test_cluster_is_on_loopback_with_token_auth(ray_cluster):
    import ray

    assert ray_cluster.address.startswith("127.0.0.1:")
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    pids, listening = listening_addresses(ray._private.worker._global_node.get_session_dir_path())
    assert pids and listening
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    assert set(listening) <= loopback, f"a Ray process listens beyond 127.0.0.1: {listening}"
    # token authentication is on: a client with another token is refused
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN_PATH"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
    r = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR')",
                        ray_cluster.address], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode != 0 and "token" in r.stderr.lower(), r.stderr[-2000:]


@pytest.mark.slow
def test_ray_extract_equals_in_process(ray_cluster, reference, tmp_path):
    summary = extract.run_extraction(ray_config(tmp_path, ray_actors=2))
    assert summary["status_counts"] == {"ok": 4} and summary["actors"] == 2 and summary["actor_deaths"] == 0
    assert sum(summary["videos_per_node"].values()) == 4
    got = outputs(tmp_path)
    assert got[0] == reference[0] and got[1] == reference[1]
    assert got[2].keys() == reference[2].keys() and len(got[2]) == 4 + 128
    assert all(got[2][k] == reference[2][k] for k in got[2])
    again = extract.run_extraction(ray_config(tmp_path))  # everything done: nothing runs
    assert again["processed"] == 0 and again["skipped_done"] == 4 and again["actors"] == 0


@pytest.mark.slow
def test_killed_actor_is_retried_without_partial_files(ray_cluster, reference, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "exit:acqfdwsrhi.mp4:1")  # dies once, half its JSON written
    summary = extract.run_extraction(ray_config(tmp_path, ray_actors=1))
    assert open(tmp_path / ".ray-faults" / "acqfdwsrhi.mp4").read() == "x"  # it did die, once
    assert summary["actor_deaths"] == 1 and summary["videos_requeued"] in (1, 2)  # plus the group queued behind it
    assert summary["status_counts"] == {"ok": 4} and summary["videos_retried"] == ["acqfdwsrhi.mp4"]
    got = outputs(tmp_path)  # asserts no .tmp- file is left
    assert got[0] == reference[0] and got[1] == reference[1] and got[2] == reference[2]


@pytest.mark.slow
def test_poison_video_gets_error_after_three_deaths_and_the_rest_finish(ray_cluster, reference, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "exit:ccfoszqabv.mp4:always")  # a REAL video: its fake waits, then runs alone
    summary = extract.run_extraction(ray_config(tmp_path, ray_actors=1))
    assert open(tmp_path / ".ray-faults" / "ccfoszqabv.mp4").read() == "xxx"
    assert summary["actor_deaths"] == 3 and summary["status_counts"] == {"ok": 3, "error": 1}
    index = {r["video"]: r for r in outputs(tmp_path)[0]}
    assert index["ccfoszqabv.mp4"]["status"] == "error"
    assert "ended its Ray actor 3 times" in index["ccfoszqabv.mp4"]["error"]
    assert index["acqfdwsrhi.mp4"]["status"] == "ok" and index["acqfdwsrhi.mp4"]["boxes_from"] == "self"
    ref = {r["video"]: r for r in reference[0]}
    assert index["afoovlsmtx.mp4"] == ref["afoovlsmtx.mp4"] and index["bndybcqhfr.mp4"] == ref["bndybcqhfr.mp4"]


@pytest.mark.slow
def test_driver_killed_then_rerun_does_only_the_missing_videos(ray_cluster, reference, tmp_path):
    import ray

    cmd = [sys.executable, "-m", "dfdc_fast.extract", DEMO, "-o", str(tmp_path), "--device", "cpu", "--no-progress",
           "--encoders", "0", "--executor", "ray", "--ray-address", ray_cluster.address, "--ray-actors", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)

    def done():
        return sorted(p for p in (tmp_path / "videos").rglob("*.json") if not p.name.startswith(".tmp-"))

    deadline = time.time() + 240
    while time.time() < deadline and not done() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    while time.time() < deadline and ray.available_resources().get("CPU", 0) < 2:
        time.sleep(0.2)  # the dead driver's actor is gone (it may finish its video first)
    first = {p: p.read_bytes() for p in done()}
    assert 1 <= len(first) < 4, "the driver was not killed midway"

    summary = extract.run_extraction(ray_config(tmp_path, ray_actors=1))
    assert summary["skipped_done"] == len(first) and summary["processed"] == 4 - len(first)
    assert all(p.read_bytes() == b for p, b in first.items())  # not redone
    got = outputs(tmp_path)
    assert got[0] == reference[0] and got[1] == reference[1] and got[2] == reference[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A 3D and a 2D model, untrained and small (as tests/test_infer.py)."""
    import torch

    from dfdc_fast.models import create_model, save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    out = []
    for name, size, seed in (("mc3_18", 32, 0), ("efficientnet_b0", 64, 1)):
        torch.manual_seed(seed)
        path = str(folder / f"{name}.pth")
        save_checkpoint(path, create_model(name, num_classes=1), model_name=name, model_kwargs={"num_classes": 1},
                        config={"input_size": size})
        out.append(path)
    return out


@pytest.mark.slow
def test_infer_on_the_cluster_gives_the_in_process_submission(ray_cluster, checkpoints, tmp_path):
    from dfdc_fast.infer.on_ray import run_inference_on_ray
    from dfdc_fast.infer import InferConfig, read_submission, run_inference, validate_submission

    def config(out, **kw):
        return InferConfig(inputs=[DEMO], checkpoints=checkpoints, out=str(tmp_path / out), frames=40, device="cpu",
                           progress=False, videos_per_batch=2, **kw)

    local = run_inference(config("local"))
    summary = run_inference_on_ray(config("ray"), actors=2)
    names = sorted(n for n in os.listdir(DEMO) if n.endswith(".mp4"))
    assert validate_submission(str(tmp_path / "ray" / "submission.csv"), expected=names)["ok"]
    assert summary["statuses"] == local["statuses"] == {"ok": 4} and sum(summary["videos_per_node"].values()) == 4
    mine, theirs = read_submission(str(tmp_path / "ray" / "submission.csv")), read_submission(local["submission"])
    assert mine.keys() == theirs.keys() and all(abs(mine[k] - theirs[k]) < 1e-5 for k in mine)
    assert sorted(os.listdir(tmp_path / "ray" / "videos")) == sorted(os.listdir(tmp_path / "local" / "videos"))

    t0 = time.perf_counter()  # a budget too short for the actors to start: still every row, on time
    late = run_inference_on_ray(config("late", time_budget=1.0), actors=1)
    assert time.perf_counter() - t0 < 1.0 + 3.0
    assert late["statuses"] == {"time_budget": 4}
    assert validate_submission(str(tmp_path / "late" / "submission.csv"), expected=names)["ok"]


@pytest.mark.slow
def test_node_removed_midway_still_finishes(ray_cluster, reference, tmp_path):
    """Runs last: it takes the worker node away (and puts a fresh one back)."""
    result = {}
    run = threading.Thread(target=lambda: result.update(extract.run_extraction(ray_config(tmp_path, ray_actors=2))))
    run.start()
    deadline = time.time() + 240
    while time.time() < deadline and not (tmp_path / "crops").exists():
        time.sleep(0.05)  # both actors are at work
    ray_cluster.remove_node(ray_cluster.worker)
    run.join(300)
    ray_cluster.worker = ray_cluster.add_node(**ray_cluster.node_args)
    assert not run.is_alive()
    assert result["status_counts"] == {"ok": 4} and result["actor_deaths"] >= 1
    got = outputs(tmp_path)
    assert got[0] == reference[0] and got[1] == reference[1] and got[2] == reference[2]
