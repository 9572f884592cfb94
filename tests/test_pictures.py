"""The pictures a user opens first (contact sheet, metrics.png, report.png) and the names and
counts next to them (person ids across chunks, the one-class validation warning, short
Checkpoint reprs). All on small synthetic inputs: seconds, not minutes."""
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dfdc_fast import extension
from dfdc_fast.crops.sheet import BACKGROUND, read_sheet_input, write_contact_sheet
from dfdc_fast.extract.report import index_rows, write_index
from dfdc_fast.infer.report import render_report, write_report
from dfdc_fast.train.metrics import CHANCE, append_metrics, plot_metrics, render_metrics, validation_problem
from videos import frame_level, make_video

needs_ops = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")


# ---- contact sheet --------------------------------------------------------------------------


def _record(out, name, label, status, clips, width, height, error=None):
    """A per-video JSON record as the extraction writes it, with its clips and crops on disk."""
    rec = {"video": name, "part": None, "label": label, "original": None, "frames": 300, "width": width,
           "height": height, "fps": 30.0, "boxes_from": "self", "status": status, "error": error,
           "clips": [], "crops": []}
    for track, person, chunk, start, stop, clip_status in clips:
        rel = os.path.join("clips", label, f"{name[:-4]}_{chunk}_{track}.mp4")
        os.makedirs(os.path.dirname(out / rel), exist_ok=True)
        make_video(str(out / rel), frames=12, width=64, height=64)
        box = [100.0 + 400 * person, 100.0, 300.0 + 400 * person, 340.0]
        rec["clips"].append({"track": track, "person": person, "chunk": chunk, "start": start, "stop": stop,
                             "box": box, "score": 0.99, "path": rel, "frames": stop - start, "keyint": 16,
                             "status": clip_status})
        frame = (start + stop) // 2
        crop = os.path.join("crops", name[:-4], f"{track}_{frame}.png")
        os.makedirs(os.path.dirname(out / crop), exist_ok=True)
        # crops of a portrait video are tall, of a landscape one wide: the tiles must not care
        size = (60, 90) if height > width else (90, 60)
        Image.new("RGB", size, (200, 40 * track, 40)).save(out / crop)
        rec["crops"].append({"track": track, "person": person, "frame": frame,
                             "box": [box[0] + 20, box[1] + 20, box[2] - 20, box[3] - 20], "path": crop})
    rel_json = os.path.join("videos", name[:-4] + ".json")
    os.makedirs(out / "videos", exist_ok=True)
    (out / rel_json).write_text(json.dumps(rec))
    return index_rows(rec, rel_json)


@pytest.fixture(scope="module")
def extraction(tmp_path_factory):
    """An extraction folder: landscape and portrait videos, two people in one, a too_short clip,
    and two videos without clips."""
    out = tmp_path_factory.mktemp("extract_out")
    rows = []
    rows += _record(out, "land.mp4", "REAL", "ok", [(0, 0, 0, 0, 150, "ok"), (1, 0, 1, 150, 300, "ok")], 1920, 1080)
    rows += _record(out, "tall.mp4", "FAKE", "ok", [(0, 0, 0, 0, 150, "ok"), (1, 0, 1, 150, 300, "ok")], 1080, 1920)
    rows += _record(out, "two.mp4", "REAL", "ok", [(0, 0, 0, 0, 150, "ok"), (1, 1, 0, 0, 150, "ok"),
                                                   (2, 0, 1, 150, 300, "ok"), (3, 1, 1, 150, 290, "too_short")],
                    1920, 1080)
    rows += _record(out, "blank.mp4", "FAKE", "no_face", [], 1920, 1080)
    rows += _record(out, "broken.mp4", "REAL", "decode_error", [], 0, 0, error="moov atom not found")
    write_index(str(out / "index.csv"), rows)
    return out


def test_contact_sheet_has_a_labelled_tile_per_track_and_little_padding(extraction, tmp_path):
    path = str(tmp_path / "sheet.png")
    layout = write_contact_sheet(str(extraction), path, videos=12)
    tiles = layout["tiles"]
    assert [(t["video"], t["track"], t["person"]) for t in tiles] == [
        ("land.mp4", 0, 0), ("land.mp4", 1, 0), ("tall.mp4", 0, 0), ("tall.mp4", 1, 0),
        ("two.mp4", 0, 0), ("two.mp4", 1, 1), ("two.mp4", 2, 0), ("two.mp4", 3, 1)]
    assert tiles[0]["text"].startswith("land.mp4  REAL  ok | track 0  person 0  chunk 0  frames 0-150")
    assert "FAKE  ok" in tiles[2]["text"] and "too_short" in tiles[7]["text"]
    # the videos without clips are listed, compactly, with their status and error
    lines = [line for p in layout["panels"] for line in p["lines"]]
    assert "blank.mp4  FAKE  no_face" in lines
    assert "broken.mp4  REAL  decode_error: moov atom not found" in lines
    # 8 square tiles: the page is tiles, panels and the header, bar thin gaps
    w, h = layout["size"]
    covered = sum((r[2] - r[0]) * (r[3] - r[1]) for r in
                  [t["rect"] for t in tiles] + [p["rect"] for p in layout["panels"]] + [layout["header"]])
    assert 1 - covered / (w * h) <= 0.10
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[:2] == (h, w)
    assert (image == BACKGROUND).all(axis=2).mean() <= 0.10
    # the clip's frames are on the tile: the first sampled frame of the clip at its place
    x0, y0 = tiles[0]["rect"][:2]
    patch = image[y0 + 60:y0 + 100, x0 + 60:x0 + 100]  # below the label band, right of the red bar
    assert abs(float(patch.mean()) - frame_level(0)) < 12
    # the crop (tall or wide) is letterboxed into a square at the end of the tile
    crop = image[tiles[0]["rect"][1] + 60:tiles[0]["rect"][1] + 100, tiles[0]["rect"][2] - 80:tiles[0]["rect"][2] - 50]
    assert abs(float(crop[..., 0].mean()) - 200) < 15


def test_contact_sheet_counts_people_and_limits_videos(extraction):
    data = read_sheet_input(str(extraction), videos=1)
    assert data.videos == 5 and data.people == 1 + 1 + 2
    assert data.counts == {"ok": 3, "no_face": 1, "decode_error": 1}
    assert [t.video for t in data.tiles] == ["land.mp4", "land.mp4"] and data.more_videos == 2
    assert data.tiles[0].crop.endswith("0_75.png")  # the crop inside the clip's frames


# ---- metrics.png ----------------------------------------------------------------------------


def _metrics_rows(tmp_path, balanced=True):
    path = str(tmp_path / "metrics.csv")
    for epoch in range(1, 5):
        append_metrics(path, {"epoch": epoch, "steps": 10 * epoch, "train_loss": 0.7 / epoch,
                              "val_log_loss": 0.69 - 0.05 * epoch,
                              "val_balanced_log_loss": 0.7 - 0.05 * epoch if balanced else float("nan"),
                              "val_videos": 8, "lr": 1e-3 * 0.5 ** epoch, "clips_per_s": 10 + epoch,
                              "steady_clips_per_s": 12 + epoch})
    return path


def test_metrics_png_has_one_panel_per_metric_and_renders(tmp_path):
    path = _metrics_rows(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph is a warning in matplotlib: fail on it
        plot_metrics(path, str(tmp_path / "metrics.png"), title="run")
    image = Image.open(tmp_path / "metrics.png")
    assert image.size == (1100, 750)
    from dfdc_fast.train.metrics import read_metrics

    fig = render_metrics(read_metrics(path), "run")
    axes = fig.axes
    titles = [ax.get_title() for ax in axes]
    assert titles == ["Training loss", "Validation log loss (per video, as DFDC scored)",
                      "Learning rate (end of epoch)", "Throughput"]
    assert all(ax.get_ylabel() for ax in axes) and axes[2].get_xlabel() == axes[3].get_xlabel() == "epoch"
    val = axes[1]
    labels = [line.get_label() for line in val.get_lines()]
    assert labels == ["log loss", "balanced log loss (REAL and FAKE weighted equally)", "chance: ln 2 = 0.693"]
    assert val.get_lines()[2].get_ydata()[0] == pytest.approx(CHANCE)
    ticks = [t for t in axes[3].get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert axes[2].get_yscale() == "linear"  # lr spans 8x: a log scale only past 20x
    assert list(val.get_lines()[0].get_xdata()) == [1, 2, 3, 4]


def test_metrics_png_without_the_balanced_loss_says_why(tmp_path):
    path = _metrics_rows(tmp_path, balanced=False)
    from dfdc_fast.train.metrics import read_metrics

    fig = render_metrics(read_metrics(path))
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any("one class" in t for t in texts)
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["log loss", "chance: ln 2 = 0.693"]


def test_one_class_or_tiny_validation_is_named():
    assert validation_problem([], []) is None
    assert validation_problem([f"v{i}" for i in range(6)], [0, 1, 0, 1, 0, 1]) is None
    one = validation_problem(["a.mp4", "a.mp4"], [1, 1])
    assert "1 video, all FAKE" in one and "nan" in one
    assert "all REAL" in validation_problem(["a", "b", "c", "d", "e"], [0] * 5)
    assert "only 2 videos" in validation_problem(["a", "b"], [0, 1])


# ---- report.png -----------------------------------------------------------------------------


def _run(n_ok=12):
    videos = [{"filename": f"v{i:02d}.mp4", "status": "ok", "label": (i + 0.5) / n_ok, "faces": 1,
               "timings": {"decode_s": 0.5 + 0.01 * i, "detect_track_s": 1.0, "cut_s": 0.2, "host_copy_s": 0.01,
                           "models_s": 0.3}} for i in range(n_ok)]
    videos += [{"filename": "empty.mp4", "status": "decode_error", "label": 0.5, "timings": {"decode_s": 0.01}},
               {"filename": "blank.mp4", "status": "no_face", "label": 0.5,
                "timings": {"decode_s": 0.3, "detect_track_s": 0.9}},
               {"filename": "late.mp4", "status": "time_budget", "label": 0.5, "timings": {}}]
    summary = {"videos": len(videos), "statuses": {"ok": n_ok, "decode_error": 1, "no_face": 1, "time_budget": 1},
               "fallback_0.5": 3, "seconds": 30.5, "fixed_s": 4.0, "device": "cpu", "workers": 2,
               "stage_seconds": {"load_models_s": 1.5, "compile_s": 0.0, "engine_start_s": 2.5,
                                 "wait_for_faces_s": 20.0, "models_s": 6.0},
               "members": ["mc3_18"], "aggregator": "mean", "refused": []}
    return summary, videos


def test_report_png_renders_from_a_summary(tmp_path):
    summary, videos = _run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(str(tmp_path / "report.png"), summary, videos)
    assert Image.open(tmp_path / "report.png").size == (1200, 850)
    hist, status, stages, per_video = render_report(summary, videos).axes
    assert "12 scored videos" in hist.get_title()
    assert sum(p.get_height() for p in hist.patches) == 12  # the 0.5 fallbacks are not in it
    assert [t.get_text() for t in status.get_yticklabels()] == [
        "ok", "decode_error (0.5)", "no_face (0.5)", "time_budget (0.5)"]
    assert "3 of 15" in status.get_title()
    assert [p.get_width() for p in stages.patches] == [1.5, 0.0, 2.5, 20.0, 6.0]
    assert len(per_video.get_yticklabels()) == 14  # every video with timings
    assert {t.get_text().split(" (mean")[0] for t in per_video.get_legend().get_texts()} == {
        "decode", "detect + track", "cut faces", "copy to host", "models (share of its group)"}


def test_report_png_of_a_large_run_shows_the_slowest_videos():
    summary, videos = _run(n_ok=100)
    per_video = render_report(summary, videos).axes[3]
    assert len(per_video.get_yticklabels()) == 30 and "30 slowest of 102" in per_video.get_title()


# ---- person ids -----------------------------------------------------------------------------


@needs_ops
def test_person_ids_follow_a_face_across_chunks():
    from dfdc_fast.detect import Detections
    from dfdc_fast.track import link_persons, track_faces

    h, w, n, step = 1080, 1920, 300, 10
    samples = list(range(0, n, step))

    def dets(*people):
        boxes = [[[x + 3 * s, y, x + 3 * s + 200, y + 250] for x, y in people] for s in range(len(samples))]
        return Detections.from_lists(samples, boxes, [[0.99] * len(people)] * len(samples), frame_size=(h, w))

    one = track_faces(dets((300, 300)), (n, h, w), chunk_size=150)
    assert [(t.track_id, t.chunk, t.person) for t in one] == [(0, 0, 0), (1, 1, 0)]
    two = track_faces(dets((300, 300), (1200, 320)), (n, h, w), chunk_size=100)
    assert len(two) == 6
    left = {t.person for t in two if t.box[0] < 900}
    right = {t.person for t in two if t.box[0] >= 900}
    assert len(left) == len(right) == 1 and left != right
    assert sorted(t.person for t in two) == [0, 0, 0, 1, 1, 1]
    linked = [t.person for t in two]
    assert [t.person for t in link_persons(two)] == linked  # from the tracks' own boxes: the same people
    assert link_persons(two, None) and [t.person for t in two] == list(range(6))  # linking off: a person per track


@needs_ops
def test_side_by_side_people_are_never_merged():
    """Two faces overlapping a little at a chunk boundary: matched one to one, best first."""
    from dfdc_fast.track import FaceTrack, link_persons

    def track(i, start, x):
        boxes = torch.tensor([[x, 100, x + 200, 350]] * 150, dtype=torch.float32)
        return FaceTrack(track_id=i, chunk=start // 150, start=start, stop=start + 150, box=boxes[0], boxes=boxes,
                         score=0.9, keyframes=torch.arange(start, start + 150, 10))

    tracks = link_persons([track(0, 0, 100), track(1, 0, 250), track(2, 150, 110), track(3, 150, 240)])
    assert [t.person for t in tracks] == [0, 1, 0, 1]
    far = link_persons([track(0, 0, 100), track(1, 150, 900)])
    assert [t.person for t in far] == [0, 1]


def test_faces_per_video_counts_people():
    from dfdc_fast.extract.index import _people

    chunks = [{"track_id": 0, "person": 0}, {"track_id": 1, "person": 1}, {"track_id": 2, "person": 0},
              {"track_id": 3, "person": 1}]
    assert _people(chunks) == 2
    assert _people([{"track_id": 0, "person": None}, {"track_id": 1, "person": None}]) == 2  # unlinked records


# ---- Checkpoint repr ------------------------------------------------------------------------


def test_checkpoint_repr_is_one_short_line(tmp_path):
    from dfdc_fast.models import create_model, load_checkpoint, save_checkpoint

    path = str(tmp_path / "m.pth")
    model = create_model("mc3_18", num_classes=1)
    values = sum(v.numel() for v in model.state_dict().values())
    save_checkpoint(path, model, model_name="mc3_18",
                    model_kwargs={"num_classes": 1}, config={"input_size": 32}, state={"epoch": 3, "step": 120})
    text = repr(load_checkpoint(path))
    assert "\n" not in text and len(text) < 400, text
    assert text.startswith("Checkpoint('mc3_18', kwargs={'num_classes': 1}, weights=")
    assert f"{values / 1e6:.2f}M values" in text and "epoch=3, step=120" in text and f"torch {torch.__version__}" in text
    assert "tensor(" not in text
