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
