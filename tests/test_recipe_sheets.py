"""The contact sheets of --recipe selim and ntech show what those recipes wrote (crops with
their landmarks, diff masks beside their crops, REAL/FAKE pairs side by side), not "0 people".
Synthetic extraction folders, as the recipes write them: seconds."""
import json
import os

import numpy as np
from PIL import Image

from dfdc_fast.crops.sheet import LANDMARK, read_sheet_input, write_contact_sheet
from dfdc_fast.extract.report import index_rows, write_index
from videos import make_video


def _folder(out, recipe, records):
    out.mkdir(exist_ok=True)
    (out / "settings.json").write_text(json.dumps({"recipe": recipe}))
    rows = []
    for rec in records:
        rel = os.path.join("videos", "_", rec["video"] + ".json")
        os.makedirs(out / "videos" / "_", exist_ok=True)
        (out / rel).write_text(json.dumps(rec))
        rows += index_rows(rec, rel)
    write_index(str(out / "index.csv"), rows)


def _base(name, label, status="ok", **kw):
    return {"video": name, "part": None, "label": label, "original": kw.pop("original", None), "frames": 300,
            "width": 960, "height": 540, "status": status, "error": kw.pop("error", None), "clips": [],
            "tracks": [{"track_id": 0, "person": 0, "start": 0, "stop": 300, "score": 0.99}], **kw}


def _selim(tmp_path):
    out = tmp_path / "selim"
    out.mkdir()
    records = []
    for name, label in (("real.mp4", "REAL"), ("fake.mp4", "FAKE")):
        crops = []
        for frame in range(0, 100, 10):
            path = os.path.join("crops", "_", name, f"0_{frame}.png")
            os.makedirs(out / os.path.dirname(path), exist_ok=True)
            Image.new("RGB", (60, 80), (200, 150, 120)).save(out / path)
            crop = {"track": 0, "person": 0, "frame": frame, "box": [0, 0, 40, 60], "path": path,
                    "landmarks": [20, 30, 40, 30, 30, 45, 22, 60, 38, 60]}
            if label == "FAKE":
                crop["diff"] = os.path.join("diffs", "_", name, f"0_{frame}_diff.png")
                os.makedirs(out / os.path.dirname(crop["diff"]), exist_ok=True)
                Image.new("L", (60, 80), 255).save(out / crop["diff"])
            crops.append(crop)
        records.append(_base(name, label, crops=crops, original="real.mp4" if label == "FAKE" else None))
    records.append(_base("broken.mp4", "REAL", "decode_error", error="moov atom not found", tracks=None, crops=[]))
    _folder(out, "selim", records)
    return out


def test_selim_sheet_shows_crops_with_landmarks_and_diffs_beside_them(tmp_path):
    out = _selim(tmp_path)
    data = read_sheet_input(str(out))
    assert data.recipe == "selim" and data.people == 2
    layout = write_contact_sheet(str(out), str(tmp_path / "sheet.png"))
    tiles = {t["video"]: t for t in layout["tiles"]}
    assert set(tiles) == {"real.mp4", "fake.mp4"}
    assert tiles["real.mp4"]["panels"] == ["crop f0", "crop f30", "crop f60", "crop f90"]
    assert tiles["fake.mp4"]["panels"] == ["crop f0", "diff f0", "crop f90", "diff f90"]
    assert "10 crops, 10 diffs" in tiles["fake.mp4"]["text"]
    sheet = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB"))
    x0, y0, x1, y1 = tiles["real.mp4"]["rect"]
    region = sheet[y0:y1, x0:x1]
    assert (np.abs(region.astype(int) - LANDMARK).sum(-1) == 0).sum() >= 5 * 4  # the dots of 4 crops
    # the diff square holds the (white) diff image, the crop square the crop's colour
    x0, y0, x1, y1 = tiles["fake.mp4"]["rect"]
    square = (x1 - x0 - 3 * 2) // 4
    top = y1 - square
    assert tuple(sheet[top + 5, x0 + square // 2]) == (200, 150, 120)  # a crop
    assert tuple(sheet[top + 5, x0 + square + 2 + square // 2]) == (255, 255, 255)  # its diff beside it
    lines = [line for p in layout["panels"] for line in p["lines"]]
    assert any("broken.mp4" in line and "decode_error" in line for line in lines)
    assert "2 people; showing the crops of 2 tracks" in layout["header_lines"][1]


def test_ntech_sheet_shows_real_and_fake_pair_frames_side_by_side(tmp_path):
    out = tmp_path / "ntech"
    os.makedirs(out / "pairs" / "_" / "real.mp4")
    os.makedirs(out / "pairs" / "_" / "fake.mp4")
    make_video(str(out / "pairs" / "_" / "real.mp4" / "0_0.mp4"), frames=10, width=64, height=64)
    make_video(str(out / "pairs" / "_" / "fake.mp4" / "0_0.mp4"), frames=10, width=64, height=64)
    window = {"track": 0, "window": 0, "start": 20, "stop": 30, "box": [0, 0, 64, 64]}
    real = _base("real.mp4", "REAL", pairs=[{**window, "path": "pairs/_/real.mp4/0_0.mp4"}])
    fake = _base("fake.mp4", "FAKE", original="real.mp4",
                 pairs=[{**window, "fake_track": 0, "span": [20, 30], "path": "pairs/_/fake.mp4/0_0.mp4",
                         "real_path": "pairs/_/real.mp4/0_0.mp4"}])
    alone = _base("alone.mp4", "FAKE", original="gone.mp4", pairs=[])
    _folder(out, "ntech", [real, fake, alone])
    layout = write_contact_sheet(str(out), str(tmp_path / "sheet.png"))
    (tile,) = layout["tiles"]  # the REAL's window is shown beside its fake, not twice
    assert tile["video"] == "fake.mp4" and tile["panels"] == ["REAL f20", "FAKE f20", "REAL f29", "FAKE f29"]
    lines = [line for p in layout["panels"] for line in p["lines"]]
    assert any(line.startswith("alone.mp4  FAKE  ok: no pair") for line in lines)
    assert not any("real.mp4" in line for line in lines)
    assert "showing 1 pair of the first 1 videos with pairs" in layout["header_lines"][1]
