"""A folder of symbolic links to videos (the usual way to try a subset): refused with a word
on --follow-links by default, taken with it, each link resolved once and its target recorded."""
import json
import os

import pytest

from dfdc_fast import extension, probe
from dfdc_fast.data import discover, from_paths
from videos import make_video


@pytest.fixture
def linked(tmp_path):
    """links/a.mp4 -> store/x/a.mp4 (outside links/), links/sub/b.mp4 -> store/b.mp4, and a real c.mp4 inside."""
    store, links = tmp_path / "store", tmp_path / "links"
    (store / "x").mkdir(parents=True)
    (links / "sub").mkdir(parents=True)
    a = make_video(str(store / "x" / "a.mp4"), frames=4)
    b = make_video(str(store / "b.mp4"), frames=5)
    os.symlink(a, links / "a.mp4")
    os.symlink(b, links / "sub" / "b.mp4")
    make_video(str(links / "c.mp4"), frames=6)
    return links, {"a.mp4": a, os.path.join("sub", "b.mp4"): b}


def test_links_out_of_the_folder_are_refused_with_a_hint_by_default(linked):
    links, _ = linked
    ds = discover(links)
    assert [e.name for e in ds.videos] == ["c.mp4"]
    assert dict(ds.rejected).keys() == {"a.mp4", os.path.join("sub", "b.mp4")}
    assert all("--follow-links" in why for _, why in ds.rejected)


def test_follow_links_takes_each_target_once_under_the_links_name(linked, tmp_path):
    links, targets = linked
    os.symlink(targets["a.mp4"], links / "again.mp4")  # a second link to the same file: one video
    ds = discover(links, follow_links=True)
    got = {e.name: e.path for e in ds.videos}
    assert got == {"a.mp4": targets["a.mp4"], os.path.join("sub", "b.mp4"): targets[os.path.join("sub", "b.mp4")],
                   "c.mp4": os.path.realpath(links / "c.mp4")}
    assert not ds.rejected
    # metadata.json folders too: a listed link that leaves the folder is taken with follow_links
    (links / "metadata.json").write_text(json.dumps({"a.mp4": {"label": "REAL"}, "c.mp4": {"label": "FAKE"}}))
    assert "a.mp4" in dict(discover(links).rejected)
    assert {e.name: e.path for e in from_paths([links], follow_links=True)[0].videos}["a.mp4"] == targets["a.mp4"]


def test_probe_follows_links_when_asked(linked, capsys):
    links, targets = linked
    assert probe.main([str(links)]) == 1
    assert sorted(json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()) == ["error", "error", "ok"]
    assert probe.main([str(links), "--follow-links"]) == 0
    frames = sorted(json.loads(line)["frames"] for line in capsys.readouterr().out.splitlines())
    assert frames == [4, 5, 6]


@pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")
def test_extract_records_the_target_of_a_followed_link(linked, tmp_path):
    from dfdc_fast import extract

    links, targets = linked
    out = tmp_path / "out"
    extract.run_extraction(extract.ExtractConfig(inputs=[str(links)], out=str(out), device="cpu", workers=0, encoders=0,
                                                 contact_sheet=0, progress=False, follow_links=True))
    rec = json.load(open(out / "videos" / "_" / "a.mp4.json")) if (out / "videos" / "_" / "a.mp4.json").exists() \
        else next(json.load(open(p)) for p in (out / "videos").rglob("*.json") if json.load(open(p))["video"] == "a.mp4")
    assert rec["path"] == targets["a.mp4"] and rec["status"] in ("ok", "no_face")
