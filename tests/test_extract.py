"""python -m dfdc_fast.extract end to end on real and broken inputs (CPU)."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from dfdc_fast import extract
from dfdc_fast.io import read_video
from videos import make_video, truncate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_index(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def by_video(rows):
    out = {}
    for r in rows:
        out.setdefault(r["video"], []).append(r)
    return out


def records(out):
    return {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(map(str, (out / "videos").rglob("*.json")))}


def test_demo_default_clips_crops_sheet_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert extract.main(["--device", "cpu", "--no-progress"]) == 0  # no input: the bundled demo clips
    out = tmp_path / "extract_out"
    rows = read_index(out / "index.csv")
    index = by_video(rows)
    assert set(index) == {"ccfoszqabv.mp4", "acqfdwsrhi.mp4", "afoovlsmtx.mp4", "bndybcqhfr.mp4"}
    for name, (row,) in index.items():  # one person each, 150 frames = one chunk
        assert row["status"] == "ok" and (row["start"], row["stop"], row["clip_frames"]) == ("0", "150", "150")
        clip = read_video(out / row["clip"])
        assert clip.frames.shape == (150, 256, 256, 3)
        assert int(row["crops"]) == 32
        assert row["person"] == "0"
    assert index["acqfdwsrhi.mp4"][0]["boxes_from"] == "original"  # a FAKE whose REAL original is present
    assert index["bndybcqhfr.mp4"][0]["boxes_from"] == "self"  # its original is not in the demo set
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"] == {"ok": 4} and summary["clips"] == 4 and summary["crops"] == 128
    assert summary["faces_per_video"] == 1.0
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    (out / "contact_sheet.png").unlink()

    again = extract.run_extraction(extract.ExtractConfig(device="cpu", progress=False))
    assert again["processed"] == 0 and again["skipped_done"] == 4
    assert again["contact_sheet"] == str(out / "contact_sheet.png")  # drawn from the files: a resume gets one too
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert read_index(out / "index.csv") == rows
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]


def test_killed_run_resumes_to_the_same_index(tmp_path):
    demo = extract.DEMO_DIR
    clean = tmp_path / "clean"
    extract.run_extraction(extract.ExtractConfig(inputs=[demo], out=str(clean), device="cpu", progress=False))

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dfdc_fast.extract", demo, "-o", str(out), "--device", "cpu", "--no-progress",
           "--workers", "2", "--encoders", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    def done():  # a video's JSON, not the temporary it is written through
        return [p for p in out.glob("videos/*/*.json") if not p.name.startswith(".tmp-")]

    while time.time() < deadline and not done():
        time.sleep(0.05)  # kill as soon as the first video is done
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(done())
    assert 1 <= finished < 4, "the run was not interrupted midway"
    (out / "clips" / "REAL").mkdir(parents=True, exist_ok=True)
    (out / "clips" / "REAL" / ".tmp-s0-1-half.mp4").write_bytes(b"half a clip")  # what a kill can leave

    summary = extract.run_extraction(extract.ExtractConfig(inputs=[demo], out=str(out), device="cpu", progress=False))
    assert summary["skipped_done"] == finished and summary["processed"] == 4 - finished
    assert read_index(out / "index.csv") == read_index(clean / "index.csv")  # no duplicates, same rows
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "videos" not in p.parts)
    assert files == sorted(str(p.relative_to(clean)) for p in clean.rglob("*") if p.is_file() and "videos" not in p.parts)


def test_worker_processes_write_the_same_outputs_as_one_process(tmp_path):
    """The engine in 2 worker processes with 2 encoder processes writes byte-identical
    clips and crops and the same index as everything in this process."""
    demo = extract.DEMO_DIR
    runs = {}
    for name, workers, encoders in (("inline", 0, 0), ("procs", 2, 2)):
        out = tmp_path / name
        summary = extract.run_extraction(extract.ExtractConfig(inputs=[demo], out=str(out), device="cpu",
                                                               workers=workers, encoders=encoders, progress=False))
        assert summary["workers"] == workers and summary["status_counts"] == {"ok": 4}
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
                 if p.is_file() and p.parts[len(out.parts)] in ("clips", "crops")}
        runs[name] = (read_index(out / "index.csv"), files)
    assert runs["inline"][0] == runs["procs"][0]
    assert runs["inline"][1].keys() == runs["procs"][1].keys() and len(runs["inline"][1]) == 4 + 128
    assert all(runs["inline"][1][k] == runs["procs"][1][k] for k in runs["inline"][1])


def test_bad_inputs_get_statuses_and_unsafe_names_are_refused(tmp_path, samples_dir):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "noface.mp4"), frames=40, width=320, height=240)
    (src / "zero.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("not a video")
    truncate(os.path.join(samples_dir, "ccfoszqabv.mp4"), str(src / "cut.mp4"), 0.5)
    (src / "metadata.json").write_text(json.dumps({
        "noface.mp4": {"label": "REAL"}, "zero.mp4": {"label": "REAL"}, "text.mp4": {"label": "FAKE", "original": "noface.mp4"},
        "cut.mp4": {"label": "REAL"}, "../escape.mp4": {"label": "REAL"}, "gone.mp4": {"label": "FAKE"}}))
    out = tmp_path / "out"
    summary = extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(out), device="cpu", progress=False))
    index = {v: rows[0] for v, rows in by_video(read_index(out / "index.csv")).items()}
    assert index["noface.mp4"]["status"] == "no_face" and index["noface.mp4"]["clip"] == ""
    assert index["zero.mp4"]["status"] == "decode_error" and "empty" in index["zero.mp4"]["error"]
    assert index["text.mp4"]["status"] == "decode_error"
    assert index["cut.mp4"]["status"] == "decode_error"
    assert index["gone.mp4"]["status"] == "missing"
    assert index["../escape.mp4"]["status"] == "error" and "refused" in index["../escape.mp4"]["error"]
    assert summary["status_counts"] == {"no_face": 1, "decode_error": 3, "missing": 1, "error": 1}
    assert not (tmp_path / "escape.mp4").exists()


def test_shards_split_the_work_and_keep_fakes_with_their_original(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    meta = {}
    for i in range(3):
        make_video(str(src / f"real{i}.mp4"), frames=3)
        make_video(str(src / f"fake{i}.mp4"), frames=3)
        meta[f"real{i}.mp4"] = {"label": "REAL"}
        meta[f"fake{i}.mp4"] = {"label": "FAKE", "original": f"real{i}.mp4"}
    (src / "metadata.json").write_text(json.dumps(meta))
    shards = []
    for i in range(2):
        out = tmp_path / "o"
        extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(out), device="cpu",
                                                     shard=f"{i}/2", progress=False))
        shards.append({r["video"] for r in read_index(out / f"index-{i}.csv")})
    assert shards[0] | shards[1] == set(meta) and not shards[0] & shards[1]
    for s in shards:
        for v in s:
            if v.startswith("fake"):
                assert v.replace("fake", "real") in s
    with pytest.raises(ValueError, match="i/N"):
        extract.parse_shard("1-2")
    with pytest.raises(ValueError):
        extract.parse_shard("2/2")


@pytest.mark.slow
def test_sample_set_end_to_end(tmp_path, samples_dir):
    src = tmp_path / "samples"
    src.mkdir()
    meta = json.load(open(os.path.join(samples_dir, "metadata.json")))
    chosen = ["ccfoszqabv.mp4", "acqfdwsrhi.mp4", "afoovlsmtx.mp4", "caifxvsozs.mp4", "abofeumbvv.mp4"]
    for name in chosen:
        shutil.copy(os.path.join(samples_dir, name), src / name)
    (src / "metadata.json").write_text(json.dumps({n: meta[n] for n in chosen}))
    out = tmp_path / "out"
    summary = extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(out), device="cpu",
                                                           reuse_original="all", progress=False))
    assert summary["videos"] == 5 and summary["processed"] == 5
    index = by_video(read_index(out / "index.csv"))
    assert set(index) == set(chosen)
    recs = records(out)
    for name in chosen:
        rows = index[name]
        assert all(r["status"] in ("ok", "too_short", "no_face") for r in rows), rows
        if meta[name]["label"] == "REAL":
            people = 2 if name == "caifxvsozs.mp4" else 1
            assert len(rows) == 2 * people  # two 150-frame chunks per person
            for r in rows:
                assert r["status"] == "ok" and int(r["clip_frames"]) == 150
                clip = read_video(out / r["clip"])
                assert clip.frames.shape == (150, 256, 256, 3)
            # one person is one track per chunk: the same person id in both chunks
            persons = {}
            for r in rows:
                persons.setdefault(r["person"], set()).add(r["chunk"])
            assert len(persons) == people and all(chunks == {"0", "1"} for chunks in persons.values()), rows
            tracks = recs[name[:-4]]["tracks"]
            assert len({t["person"] for t in tracks}) == people and len(tracks) == 2 * people
    # reuse: the FAKE and its REAL original have identical boxes
    fake, real = recs["acqfdwsrhi"], recs["ccfoszqabv"]
    assert fake["boxes_from"] == "original"
    # ... and with reuse "all" (the Medics' export) the fake is not detected or tracked at all
    assert fake["detections"]["sampled_frames"] == 0 and real["detections"]["sampled_frames"] > 0
    assert fake["tracks"] == real["tracks"]
    assert [c["box"] for c in fake["clips"]] == [c["box"] for c in real["clips"]]
    assert [(c["frame"], c["box"]) for c in fake["crops"]] == [(c["frame"], c["box"]) for c in real["crops"]]
    assert len(real["crops"]) == 32
    # faces_per_video counts people, not tracks (which are one per person and chunk)
    with_tracks = [r for r in recs.values() if r.get("tracks") is not None]
    people = [len({t["person"] for t in r["tracks"]}) for r in with_tracks]
    assert summary["faces_per_video"] == round(sum(people) / len(people), 3)
    assert summary["faces_per_video"] < sum(len(r["tracks"]) for r in with_tracks) / len(with_tracks)


def test_cli_help():
    r = subprocess.run([sys.executable, "-m", "dfdc_fast.extract", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--every" in r.stdout and "default: 10" in r.stdout and "--reuse-original" in r.stdout
