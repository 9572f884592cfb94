import json
import os

import pytest

from dfdc_fast.data import discover, from_paths, safe_join
from videos import make_video


def test_flat_folder_with_metadata(samples_dir):
    ds = discover(samples_dir)
    assert ds.layout == "metadata" and len(ds) == 20
    assert ds.counts()["labels"] == {"REAL": 8, "FAKE": 12}
    assert not ds.missing and not ds.unlisted and not ds.rejected
    fake = next(v for v in ds if v.name == "acqfdwsrhi.mp4")
    assert ds.original_of(fake).name == "ccfoszqabv.mp4"
    absent = next(v for v in ds if v.name == "abqwwspghj.mp4")
    assert absent.original == "qzimuostzz.mp4" and ds.original_of(absent) is None


def test_plain_folder(samples_dir):
    ds = discover(os.path.join(os.path.dirname(samples_dir), "dfdc_unlabeled"))
    assert ds.layout == "plain" and len(ds) == 2 and all(v.label is None for v in ds)


def _part(root, n, videos, meta):
    part = root / f"dfdc_train_part_{n}"
    part.mkdir()
    for v in videos:
        make_video(str(part / v), frames=2)
    (part / "metadata.json").write_text(json.dumps(meta))
    return part


def test_dfdc_parts_layout_with_missing_unlisted_and_hostile_names(tmp_path):
    outside = tmp_path / "secret.mp4"
    make_video(str(outside), frames=2)
    root = tmp_path / "dfdc"
    root.mkdir()
    _part(root, 10, ["a.mp4", "b.mp4", "extra.mp4"], {
        "a.mp4": {"label": "REAL", "split": "train", "original": None},
        "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        "gone.mp4": {"label": "FAKE", "original": "a.mp4"},
        "../../secret.mp4": {"label": "REAL"},
        "/etc/passwd": {"label": "REAL"},
        "c.mp4": {"label": "MAYBE"},
    })
    _part(root, 2, ["z.mp4"], {"z.mp4": {"label": "REAL"}})
    os.symlink(outside, root / "dfdc_train_part_2" / "link.mp4")
    meta = json.loads((root / "dfdc_train_part_2" / "metadata.json").read_text())
    meta["link.mp4"] = {"label": "REAL"}
    (root / "dfdc_train_part_2" / "metadata.json").write_text(json.dumps(meta))

    ds = discover(root)
    assert ds.layout == "dfdc_parts"
    assert [v.key for v in ds] == ["dfdc_train_part_2/z.mp4", "dfdc_train_part_10/a.mp4", "dfdc_train_part_10/b.mp4"]
    assert [m.key for m in ds.missing] == ["dfdc_train_part_10/gone.mp4"]
    assert [os.path.basename(u) for u in ds.unlisted] == ["extra.mp4"]
    rejected = dict(ds.rejected)
    assert set(rejected) == {"dfdc_train_part_10/../../secret.mp4", "dfdc_train_part_10//etc/passwd",
                             "dfdc_train_part_10/c.mp4", "dfdc_train_part_2/link.mp4"}
    assert "outside" in rejected["dfdc_train_part_2/link.mp4"]
    b = next(v for v in ds if v.name == "b.mp4")
    assert ds.original_of(b).key == "dfdc_train_part_10/a.mp4"


@pytest.mark.parametrize("name", ["../x.mp4", "a/../../x.mp4", "/abs.mp4", "C:\\x.mp4", "..\\x.mp4", "", "a\x00b"])
def test_safe_join_refuses_escapes(tmp_path, name):
    with pytest.raises(ValueError):
        safe_join(str(tmp_path), name)


def test_safe_join_accepts_subfolders(tmp_path):
    assert safe_join(str(tmp_path), "sub/x.mp4") == os.path.join(os.path.realpath(tmp_path), "sub", "x.mp4")


def test_bad_metadata_and_bad_root(tmp_path):
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable metadata.json"):
        discover(tmp_path)
    with pytest.raises(NotADirectoryError):
        discover(tmp_path / "nope")
    with pytest.raises(ValueError, match="allowed"):
        discover(tmp_path, layout="kaggle")


def test_from_paths_groups_loose_files(tmp_path, samples_dir):
    a = make_video(str(tmp_path / "a.mp4"), frames=2)
    b = make_video(str(tmp_path / "b.mp4"), frames=2)
    sets = from_paths([a, samples_dir, b])
    assert [d.layout for d in sets] == ["plain", "metadata"]
    assert [v.name for v in sets[0]] == ["a.mp4", "b.mp4"]
