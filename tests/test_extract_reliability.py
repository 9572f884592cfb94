"""Extraction never loses or mixes outputs: unique output names, reruns that know their
settings, one writer per folder, refused aliases and duplicates, and a full disk."""
import csv
import json
import os

import pytest

from dfdc_fast import extract
from dfdc_fast.files import FolderLock, StorageError
from videos import make_video


def cfg(inputs, out, **kw):
    base = dict(inputs=[str(i) for i in inputs], out=str(out), device="cpu", workers=0, encoders=0, progress=False,
                contact_sheet=0)
    base.update(kw)
    return extract.ExtractConfig(**base)


def index(out):
    with open(os.path.join(out, "index.csv")) as f:
        return list(csv.DictReader(f))


def test_same_stems_in_subfolders_and_extensions_get_their_own_outputs(tmp_path):
    src = tmp_path / "src"
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
        make_video(str(src / sub / "clip.mp4"), frames=12)
    make_video(str(src / "same.mp4"), frames=12)
    make_video(str(src / "same.mkv"), frames=12)
    other = tmp_path / "other"
    other.mkdir()
    make_video(str(other / "same.mp4"), frames=12)  # a second input with a clashing name
    summary = extract.run_extraction(cfg([src, other], tmp_path / "out", every=5))
    rows = index(tmp_path / "out")
    assert summary["videos"] == 5 and len(rows) == 5
    jsons = {r["json"] for r in rows}
    assert len(jsons) == 5, jsons  # one record per video, none overwritten
    for r in rows:
        rec = json.load(open(tmp_path / "out" / r["json"]))
        assert rec["video"] == r["video"] and os.path.samefile(rec["path"], rec["path"])
    assert {json.load(open(tmp_path / "out" / j))["path"] for j in jsons} == {
        str(src / "a" / "clip.mp4"), str(src / "b" / "clip.mp4"), str(src / "same.mp4"), str(src / "same.mkv"),
        str(other / "same.mp4")}


def test_two_names_for_one_file_and_duplicated_keys(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "real.mp4"), frames=12)
    os.symlink("real.mp4", src / "alias.mp4")
    make_video(str(src / "x.mp4"), frames=12)
    make_video(str(src / "y.mp4"), frames=12)
    (src / "metadata.json").write_text(
        '{"real.mp4": {"label": "REAL"}, "alias.mp4": {"label": "REAL"},'
        ' "x.mp4": {"label": "REAL"}, "x.mp4": {"label": "REAL"},'
        ' "y.mp4": {"label": "REAL"}, "y.mp4": {"label": "FAKE", "original": "real.mp4"}}')
    for _ in range(2):  # the rerun must not crash either
        summary = extract.run_extraction(cfg([src], tmp_path / "out", every=5))
    rows = {r["video"]: r for r in index(tmp_path / "out")}
    assert rows["alias.mp4"]["status"] == "error" and "same file as real.mp4" in rows["alias.mp4"]["error"]
    assert rows["real.mp4"]["status"] == "no_face" and rows["x.mp4"]["status"] == "no_face"  # identical duplicate: kept once
    assert rows["y.mp4"]["status"] == "error" and "different records" in rows["y.mp4"]["error"]
    assert len(rows) == 4 and summary["videos"] == 4  # every video with its status, refused names too


def test_a_rerun_with_other_settings_is_refused_unless_overwrite(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "v.mp4"), frames=12)
    out = tmp_path / "out"
    extract.run_extraction(cfg([src], out, every=5))
    with pytest.raises(extract.SettingsMismatch, match="clip_size: 256 there, 128 now.*--overwrite"):
        extract.run_extraction(cfg([src], out, every=5, clip_size=128))
    assert extract.main([str(src), "-o", str(out), "--every", "5", "--clip-size", "128", "--device", "cpu",
                         "--workers", "0", "--encoders", "0", "--no-progress"]) == 2
    again = extract.run_extraction(cfg([src], out, every=5, clip_size=128, overwrite=True))
    assert again["processed"] == 1
    assert json.load(open(out / "settings.json"))["clip_size"] == 128


def test_one_writer_per_folder_and_shard(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "v.mp4"), frames=12)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-s1-999-other.json").write_text("a temporary of shard 1, still being written")
    with FolderLock(str(out), "extract", shard=0):  # another run holds shard 0
        with pytest.raises(RuntimeError, match=r"in use by extract \(shard 0\), pid"):
            extract.run_extraction(cfg([src], out, every=5))
    extract.run_extraction(cfg([src], out, every=5, shard="0/2"))
    assert (out / ".tmp-s1-999-other.json").exists()  # not ours to remove


def test_a_full_disk_stops_cleanly_and_the_rerun_resumes(tmp_path, monkeypatch):
    demo = extract.DEMO_DIR
    clean = tmp_path / "clean"
    extract.run_extraction(cfg([demo], clean))
    out = tmp_path / "out"
    monkeypatch.setenv("DFDC_FAST_FAULT", "enospc:40")  # the 40th file write of the run fails: mid-way, video 2
    with pytest.raises(StorageError, match="free space and rerun"):
        extract.run_extraction(cfg([demo], out))
    monkeypatch.delenv("DFDC_FAST_FAULT")
    finals = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in finals if p.name.startswith(".tmp-")]
    from PIL import Image

    from dfdc_fast.io import read_video

    for p in finals:  # nothing truncated under a final name
        if p.suffix == ".mp4":
            assert len(read_video(str(p))) > 0
        elif p.suffix == ".jpg":
            Image.open(p).load()
        elif p.suffix == ".json":
            json.load(open(p))
    done = len(list((out / "videos").rglob("*.json")))
    assert 1 <= done < 4
    summary = extract.run_extraction(cfg([demo], out))
    assert summary["skipped_done"] == done and summary["processed"] == 4 - done
    assert index(out) == index(clean)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == sorted(
        str(p.relative_to(clean)) for p in clean.rglob("*.jpg"))


def labelled(src, labels: dict):
    src.mkdir(parents=True, exist_ok=True)
    for name in labels:
        if not (src / name).exists():
            make_video(str(src / name), frames=12)
    (src / "metadata.json").write_text(json.dumps({n: {"label": lab} for n, lab in labels.items()}))
    return src


def test_a_changed_label_or_source_file_is_redone(tmp_path, caplog):
    src = labelled(tmp_path / "src", {"a.mp4": "REAL", "b.mp4": "REAL"})
    out = tmp_path / "out"
    extract.run_extraction(cfg([src], out, every=5))
    labelled(src, {"a.mp4": "FAKE", "b.mp4": "REAL"})  # a label corrected in metadata.json
    again = extract.run_extraction(cfg([src], out, every=5))
    assert again["processed"] == 1 and {r["video"]: r["label"] for r in index(out)} == {"a.mp4": "FAKE", "b.mp4": "REAL"}
    assert "label 'REAL' -> 'FAKE'" in caplog.text
    other = tmp_path / "other"  # another dataset, a file of the same name
    other.mkdir()
    make_video(str(other / "b.mp4"), frames=20)
    (other / "metadata.json").write_text(json.dumps({"b.mp4": {"label": "REAL"}}))
    os.replace(other / "b.mp4", src / "b.mp4")
    third = extract.run_extraction(cfg([src], out, every=5))
    rows = {r["video"]: r for r in index(out)}
    assert third["processed"] == 1 and rows["b.mp4"]["frames"] == "20"
    rec = json.load(open(out / rows["b.mp4"]["json"]))
    assert rec["source"]["name"] == "b.mp4" and rec["source"]["size"] == os.path.getsize(src / "b.mp4")
    os.utime(src / "a.mp4", ns=(1, 1))  # the same content with another mtime (a copied dataset) stays done
    assert extract.run_extraction(cfg([src], out, every=5))["processed"] == 0


def test_the_index_holds_every_record_of_the_folder(tmp_path):
    src = labelled(tmp_path / "src", {"a.mp4": "REAL", "b.mp4": "REAL", "c.mp4": "REAL"})
    out = tmp_path / "out"
    extract.run_extraction(cfg([src], out, every=5))
    summary = extract.run_extraction(cfg([src], out, every=5, limit=1))
    assert len(index(out)) == 3 and summary["videos"] == 3
    assert extract.index.rebuild_folder_index(str(out)) == {"no_face": 3}


def test_one_owner_per_folder_across_jobs(tmp_path):
    src = labelled(tmp_path / "src", {"a.mp4": "REAL"})
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        extract.run_extraction(cfg([tmp_path / "nothing"], out))
    assert not out.exists()  # a refused run makes no folder
    extract.run_extraction(cfg([src], out, every=5))
    assert not [n for n in os.listdir(out) if n.startswith(".lock")]  # locks go with the run
    with pytest.raises(RuntimeError, match="made by extract"):
        FolderLock(str(out), "infer").acquire()
    held = tmp_path / "held"
    with FolderLock(str(held), "infer"):  # an infer run holds it: extract is refused, naming it
        with pytest.raises(RuntimeError, match="made by infer"):
            extract.run_extraction(cfg([src], held))
    with FolderLock(str(out), "extract", shard=1):  # another shard of the extraction may run beside
        assert extract.run_extraction(cfg([src], out, every=5, shard="0/2"))["videos"] == 1


@pytest.mark.slow
def test_an_output_folder_inside_its_input_is_never_read(tmp_path):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(extract.DEMO_DIR, "acqfdwsrhi.mp4"), src)  # a face: its clips land in src/out
    make_video(str(src / "b.mp4"), frames=12)
    for _ in range(2):
        summary = extract.run_extraction(cfg([src], src / "out", crops_per_video=1))
        assert summary["videos"] == 2 and list((src / "out" / "clips").rglob("*.mp4"))
    other = extract.run_extraction(cfg([src], tmp_path / "out2", every=5))
    assert other["videos"] == 2  # another job's folder under the input is skipped too


def test_an_interrupted_overwrite_is_finished_by_the_rerun(tmp_path):
    src = labelled(tmp_path / "src", {"a.mp4": "REAL", "b.mp4": "REAL", "c.mp4": "REAL"})
    out = tmp_path / "out"
    extract.run_extraction(cfg([src], out, every=5))
    # --limit 1 stands for an overwrite killed after its first video
    part = extract.run_extraction(cfg([src], out, every=5, clip_size=128, overwrite=True, limit=1))
    assert part["processed"] == 1 and part["stale_records"] == 2 and len(index(out)) == 1  # never mixed
    with pytest.raises(extract.SettingsMismatch, match="in progress"):
        extract.run_extraction(cfg([src], out, every=5))
    rest = extract.run_extraction(cfg([src], out, every=5, clip_size=128))
    assert rest["processed"] == 2 and len(index(out)) == 3 and "stale_records" not in rest
    assert "overwrite" not in json.load(open(out / "settings.json"))
    assert extract.run_extraction(cfg([src], out, every=5, clip_size=128, overwrite=True))["processed"] == 3


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "bomb.mp4"), frames=2, width=4352, height=4352)  # 19 Mpx frames: above the default
    make_video(str(src / "long.mp4"), frames=30)
    make_video(str(src / "ok.mp4"), frames=12)
    extract.run_extraction(cfg([src], tmp_path / "out", every=5, max_frames=20))
    rows = {r["video"]: r for r in index(tmp_path / "out")}
    assert rows["bomb.mp4"]["status"] == "decode_error" and "max_frame_pixels" in rows["bomb.mp4"]["error"]
    assert rows["long.mp4"]["status"] == "decode_error" and "max_frames" in rows["long.mp4"]["error"]
    assert rows["ok.mp4"]["status"] == "no_face"


def test_records_of_the_wrong_shape_are_refused_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for n in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        make_video(str(src / n), frames=12)
    (src / "metadata.json").write_text(json.dumps({
        "a.mp4": {"label": "FAKE", "original": {"x": 1}}, "b.mp4": {"label": "FAKE", "original": ["d.mp4"]},
        "c.mp4": "REAL", "d.mp4": {"label": "REAL"}}))
    summary = extract.run_extraction(cfg([src], tmp_path / "out", every=5))
    rows = {r["video"]: r for r in index(tmp_path / "out")}
    assert rows["a.mp4"]["status"] == rows["b.mp4"]["status"] == "error" and "original" in rows["a.mp4"]["error"]
    assert rows["c.mp4"]["status"] == "error" and "must be an object" in rows["c.mp4"]["error"]
    assert rows["d.mp4"]["status"] == "no_face" and summary["videos"] == 4


def test_storage_failures_outside_file_writes_stop_with_rc_3(tmp_path, monkeypatch):
    import errno

    src = labelled(tmp_path / "src", {"a.mp4": "REAL"})
    args = [str(src), "--every", "5", "--device", "cpu", "--workers", "0", "--encoders", "0", "--no-progress",
            "--contact-sheet", "0"]
    monkeypatch.setenv("DFDC_FAST_FAULT", "lock-enospc")
    assert extract.main(args + ["-o", str(tmp_path / "full")]) == 3
    assert not (tmp_path / "full").exists()  # no 0-byte lock, no half-made folder
    monkeypatch.delenv("DFDC_FAST_FAULT")
    real = os.makedirs

    def read_only(path, *a, **kw):
        if "ro" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "makedirs", read_only)
    assert extract.main(args + ["-o", str(tmp_path / "ro" / "out")]) == 3


def test_a_failed_video_keeps_no_clips_and_counts_none(tmp_path, monkeypatch):
    from dfdc_fast.extract import writers

    calls = {"n": 0}
    real = writers.write_files

    def written_then_failed(files):  # the crops are on disk, the clip too, then something breaks
        calls["n"] += len(files)
        real(files)
        raise ValueError("encoder broke")

    monkeypatch.setattr(writers, "write_files", written_then_failed)
    out = tmp_path / "out"
    summary = extract.run_extraction(cfg([os.path.join(extract.DEMO_DIR, "acqfdwsrhi.mp4")], out, crops_per_video=2))
    assert calls["n"] == 2 and summary["status_counts"] == {"error": 1}
    assert summary["clips"] == 0 and summary["crops"] == 0
    assert not list(out.rglob("*.mp4")) and not list(out.rglob("*.jpg"))


def _job_processes(token: str) -> list[int]:
    """Pids of live processes that carry ``token`` in their environment (a run's children)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if token.encode() in env and not zombie:
            found.append(int(pid))
    return found


def _extract_process(src, out, token, *extra, fault=None):
    import subprocess
    import sys

    env = {**os.environ, "DFDC_TEST_TOKEN": token, "PYTHONPATH": os.path.dirname(os.path.dirname(extract.__file__))}
    env.pop("DFDC_FAST_FAULT", None)
    if fault:
        env["DFDC_FAST_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "dfdc_fast.extract", str(src), "-o", str(out), "--every", "5",
                             "--device", "cpu", "--no-progress", "--contact-sheet", "0", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _gone(token, seconds=5.0):
    import time

    deadline = time.monotonic() + seconds
    while _job_processes(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _job_processes(token)


@pytest.fixture
def token():
    """A mark in the environment of a test's job processes; any left at the end are killed
    (a failing test must not leave orphans behind)."""
    import signal
    import uuid

    mark = uuid.uuid4().hex
    yield mark
    for pid in _job_processes(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def test_a_video_that_kills_the_job_gets_status_error_after_one_retry(tmp_path, token):
    src = labelled(tmp_path / "src", {"a.mp4": "REAL", "b.mp4": "REAL", "c.mp4": "REAL"})
    out = tmp_path / "out"
    for _ in range(2):  # b takes the in-process job down (as the OOM killer would), twice
        p = _extract_process(src, out, token, "--workers", "0", "--encoders", "1", fault="crash:b.mp4")
        assert p.wait(60) == 70
        assert (out / "videos" / "_" / "a.json").exists()  # the video before it kept its record
        assert not _gone(token)  # the encoder pool died with it
    p = _extract_process(src, out, token, "--workers", "0", "--encoders", "1")
    assert p.wait(60) == 1, p.stderr.read()
    rows = {r["video"]: r for r in index(out)}
    assert rows["b.mp4"]["status"] == "error" and "died 2 times" in rows["b.mp4"]["error"]
    assert rows["a.mp4"]["status"] == rows["c.mp4"]["status"] == "no_face"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_run_leaves_no_process_and_resumes(tmp_path, how, token):
    import signal
    import time

    src = labelled(tmp_path / "src", {"a.mp4": "REAL", "b.mp4": "REAL", "c.mp4": "REAL"})
    out = tmp_path / "out"
    p = _extract_process(src, out, token, "--workers", "1", "--encoders", "2", fault="hang:c.mp4")
    deadline = time.monotonic() + 60
    while len(list((out / "videos").rglob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # c is now hanging in the worker
    if how == "SIGINT":
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    else:
        os.kill(p.pid, getattr(signal, how))
    rc = p.wait(30)
    err = p.stderr.read()
    assert rc == {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -9}[how], err
    if how != "SIGKILL":
        assert "Traceback" not in err and len([ln for ln in err.splitlines() if "extract:" in ln]) == 1, err
    assert not _gone(token), "processes of the run outlived it"
    p = _extract_process(src, out, token, "--workers", "0", "--encoders", "0")
    assert p.wait(60) == 0, p.stderr.read()
    assert [r["status"] for r in index(out)] == ["no_face"] * 3


def test_a_header_that_under_reports_its_frames_does_not_lift_the_limit(tmp_path, monkeypatch):
    from dfdc_fast.engine.path import FacePath

    monkeypatch.setattr(FacePath, "_check_limits", lambda self, task: None)  # as if the header said 1 frame
    src = tmp_path / "src"
    src.mkdir()
    make_video(str(src / "long.mp4"), frames=30)
    extract.run_extraction(cfg([src], tmp_path / "out", every=5, max_frames=20))
    row = index(tmp_path / "out")[0]
    assert row["status"] == "decode_error" and "more than 20 frames" in row["error"]
