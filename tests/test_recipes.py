"""extract / train / infer --recipe selim and ntech end to end on the demo clips (CPU).

The demo set has a REAL video (ccfoszqabv) with one of its fakes (acqfdwsrhi), another REAL
(afoovlsmtx) and a FAKE whose original is absent (bndybcqhfr). Each recipe is extracted
once per module and reused by the training and inference tests.
"""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dfdc_fast import extract
from dfdc_fast.crops.ssim import ssim_diff_reference

DEMO_META = json.load(open(os.path.join(extract.DEMO_DIR, "metadata.json")))


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def png(path):
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def selim_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("selim") / "out"
    summary = extract.run_extraction(extract.ExtractConfig(recipe="selim", out=str(out), device="cpu", workers=0,
                                                           encoders=0, contact_sheet=0, progress=False))
    return out, summary


@pytest.fixture(scope="module")
def ntech_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("ntech") / "out"
    # every 12th frame (their 6th, halved to keep CI fast): 13 detections per 150-frame track
    summary = extract.run_extraction(extract.ExtractConfig(recipe="ntech", every=12, out=str(out), device="cpu",
                                                           workers=0, encoders=0, contact_sheet=0, progress=False))
    return out, summary


def test_selim_crops_landmarks_diffs_and_folds(selim_out):
    out, summary = selim_out
    assert summary["status_counts"] == {"ok": 4} and summary["recipe"] == "selim"
    rows = read_csv(out / "crops.csv")
    assert summary["crops"] == len(rows) and summary["crops_with_landmarks"] == len(rows)
    by_video = {}
    for r in rows:
        by_video.setdefault(r["video"], []).append(r)
    assert set(by_video) == set(DEMO_META)
    for name, crops in by_video.items():
        assert all(int(r["frame"]) % 10 == 0 for r in crops)  # his frame % 10 == 0
        for r in crops:
            image = png(out / r["path"])
            h, w = image.shape[:2]
            pts = np.array([float(v) for v in r["landmarks"].split()]).reshape(5, 2)
            # the five points fall inside the crop, eyes above the nose above the mouth
            assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()
            assert pts[0, 1] < pts[2, 1] < pts[3, 1] and pts[0, 0] < pts[1, 0]
    # the fake whose original is present: a diff per crop, against the original's crop of the same box
    fake, real = by_video["acqfdwsrhi.mp4"], {(r["track"], r["frame"]): r for r in by_video["ccfoszqabv.mp4"]}
    assert fake and all(r["diff"] for r in fake) and summary["diffs"] == len(fake)
    for r in fake:
        theirs = png(out / real[(r["track"], r["frame"])]["path"])
        ours = png(out / r["path"])
        got = png(out / r["diff"])
        assert got.ndim == 2 and got.shape == ours.shape[:2] == theirs.shape[:2]
        ref = ssim_diff_reference(theirs, ours)
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert max(png(out / r["diff"]).max() for r in fake) > 20  # the swapped face shows
    assert not any(r["diff"] for r in by_video["bndybcqhfr.mp4"])  # no original, no diff
    assert not any(r["diff"] for r in by_video["ccfoszqabv.mp4"])
    # folds: a fake in its original's fold (no DFDC part here: a hash of the original's name)
    fold = {r["video"]: r["fold"] for r in rows}
    assert fold["acqfdwsrhi.mp4"] == fold["ccfoszqabv.mp4"] and {r["fold_from"] for r in rows} == {"hash"}
    # a REAL's crops are unchanged by the recipe's other outputs: same box as the fake's
    assert [json.loads(json.dumps(r["frame"])) for r in fake] == [r["frame"] for r in by_video["ccfoszqabv.mp4"]]


def test_selim_resumed_fake_reloads_its_originals_crops(selim_out, tmp_path):
    """A fake done in a later run than its original gets its diffs from the PNG crops the
    original wrote: the same bytes as in one run."""
    out, _ = selim_out
    again = tmp_path / "again"
    shutil.copytree(out, again)
    fake_json = again / "videos" / "_" / "acqfdwsrhi.json"
    diffs = sorted((again / "diffs").rglob("*.png"))
    before = {p.name: p.read_bytes() for p in diffs}
    fake_json.unlink()
    for p in diffs:
        p.unlink()
    summary = extract.run_extraction(extract.ExtractConfig(recipe="selim", out=str(again), device="cpu", workers=0,
                                                           encoders=0, contact_sheet=0, progress=False))
    assert summary["processed"] == 1 and summary["skipped_done"] == 3
    assert {p.name: p.read_bytes() for p in (again / "diffs").rglob("*.png")} == before
    assert read_csv(again / "crops.csv") == read_csv(out / "crops.csv")


def test_recipe_settings_are_checked():
    with pytest.raises(ValueError, match="PNG"):
        extract.ExtractConfig(recipe="selim", crop_format="jpg")
    with pytest.raises(ValueError, match="reuse"):
        extract.ExtractConfig(recipe="selim", reuse_original="none")
    with pytest.raises(ValueError, match="iou"):
        extract.ExtractConfig(recipe="ntech", track_method="mask")
    with pytest.raises(ValueError, match="recipe"):
        extract.ExtractConfig(recipe="bogus")
    medics = extract.ExtractConfig()
    assert (medics.every, medics.detector, medics.crops_per_video, medics.chunk_size) == (10, "medics_export", 32, 150)
    assert "recipe" not in medics.output_settings()  # the Medics' settings.json is what it always was


def test_ntech_pairs_only_with_the_fakes_own_original(ntech_out):
    from dfdc_fast.io import read_video

    out, summary = ntech_out
    assert summary["status_counts"] == {"ok": 4} and summary["recipe"] == "ntech"
    pairs = read_csv(out / "pairs.csv")
    assert summary["pairs"] == len(pairs) >= 1
    for p in pairs:  # never across different originals
        assert DEMO_META[p["fake_video"]]["original"] == p["real_video"]
    assert {p["fake_video"] for p in pairs} == {"acqfdwsrhi.mp4"}  # bndybcqhfr's original is absent
    for p in pairs:
        real, fake = read_video(out / p["real_clip"]), read_video(out / p["fake_clip"])
        x0, y0, x1, y1 = (int(p[k]) for k in ("x0", "y0", "x1", "y1"))
        assert real.frames.shape == fake.frames.shape == (50, y1 - y0, x1 - x0, 3)
        assert int(p["stop"]) - int(p["start"]) == 50
        assert int(p["span_start"]) <= int(p["start"]) and int(p["stop"]) <= int(p["span_stop"]) + 12
        # the same window of the same footage: close, but not identical (the face was swapped)
        gap = (real.frames.int() - fake.frames.int()).abs().float().mean().item()
        assert 0.5 < gap < 40
    rec = json.load(open(out / "videos" / "_" / "ccfoszqabv.json"))
    assert rec["pairs"] and all(t["stop"] - t["start"] >= 50 for t in rec["tracks"])


# ---- training: the recipe configs, tiny (efficientnet_b0 standing in for B7) ----------------

def _tiny(name, data, out, **kw):
    from dfdc_fast.train import load_config

    base = dict(data=str(data), out=str(out), epochs=1, max_steps_per_epoch=2, batch_size=2, workers=0, amp="none",
                progress=False, channels_last=False)
    return load_config(name, **{**base, **kw})


def test_selim_config_trains_with_cutouts_and_validates_on_a_fold(selim_out, tmp_path):
    from dfdc_fast.train import train

    out, _ = selim_out
    fold = {r["video"]: int(r["fold"]) for r in read_csv(out / "crops.csv")}
    cfg = _tiny("selim_b7", out, tmp_path / "run", model="efficientnet_b0", input_size=64,
                val_fold=fold["ccfoszqabv.mp4"], model_kwargs={}, cutout={"landmark_p": 1.0})
    assert (cfg.loss, cfg.schedule, cfg.optimizer, cfg.dataset) == ("balanced_bce", "poly", "sgd", "crops_csv")
    result = train(cfg, device="cpu")
    row = result.metrics[-1]
    assert result.step == 2 and np.isfinite(row["train_loss"])
    # validation: the held-out fold holds the REAL and its fake, crops of frames % 20 == 0 only
    assert row["val_videos"] == 2 and np.isfinite(row["val_balanced_log_loss"])
    assert os.path.exists(result.last_checkpoint)


def _pairs_with_a_held_out_copy(out, tmp_path):
    """The demo set has one aligned pair: train on it and validate on a copy in another fold."""
    data = tmp_path / "data"
    shutil.copytree(out, data)
    rows = read_csv(data / "pairs.csv")
    held = [{**r, "fold": str((int(r["fold"]) + 1) % 16), "real_video": "held_" + r["real_video"],
             "fake_video": "held_" + r["fake_video"]} for r in rows]
    with open(data / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows + held)
    return data, int(held[0]["fold"])


def test_ntech_config_trains_on_mixed_reencoded_pairs_after_a_head_warmup(ntech_out, tmp_path):
    import torch

    from dfdc_fast.models import create_model, load_checkpoint
    from dfdc_fast.train import train

    out, _ = ntech_out
    data, val_fold = _pairs_with_a_held_out_copy(out, tmp_path)
    cfg = _tiny("ntech_b7_seq", data, tmp_path / "run", model="efficientnet_b0_seq", pair_crop=[64, 56],
                pair_min_size=64, pair_reencode={"p": 1.0}, warmup_head_steps=2, val_fold=val_fold)
    assert (cfg.dataset, cfg.schedule, cfg.pair_mixup, cfg.lr) == ("pairs", "linear", True, 0.005)
    result = train(cfg, device="cpu")
    row = result.metrics[-1]
    assert result.step == 2 and np.isfinite(row["train_loss"])
    assert row["val_videos"] == 2 and np.isfinite(row["val_log_loss"])
    # two warm-up steps: only the head moved, the backbone (weights and BN statistics) did not
    torch.manual_seed(cfg.seed)
    start = create_model(cfg.model, num_classes=1).state_dict()
    trained = load_checkpoint(result.last_checkpoint).state_dict
    moved = {k for k, v in trained.items() if not torch.equal(v, start[k])}
    assert moved and all(k.startswith("net.classifier") for k in moved), sorted(moved)[:5]


def test_pair_loader_reencodes_both_clips_alike(ntech_out):
    from dfdc_fast.train.data import read_pairs_csv
    from dfdc_fast.train.loaders import plan_pairs, read_pair

    out, _ = ntech_out
    pair = read_pairs_csv(str(out))[0]
    options = dict(crop=(64, 56), min_size=64, reencode={"p": 1.0, "fps_p": 0.0, "scale_p": 1.0,
                                                        "scale_range": (0.25, 0.26)})
    item = plan_pairs([pair], [0], indices=[19, 21, 23], batch_size=1, train=True, seed=0, epoch=0).items[0]
    got = read_pair(item, options)
    assert got.shape == (2, 3, 64, 56, 3)
    plain = read_pair(item, dict(crop=(64, 56), min_size=64))
    # a quarter-size re-encode loses detail: both clips got it
    for c in range(2):
        assert np.abs(got[c].astype(int) - plain[c].astype(int)).mean() > 1.0
    again = read_pair(item, options)
    assert np.array_equal(got, again)  # the item's seed fixes every draw, and the re-encode is exact


# ---- inference: python -m dfdc_fast.infer --recipe selim|ntech ------------------------------

def _checkpoint(path, name, **config):
    from dfdc_fast.models import create_model, save_checkpoint

    save_checkpoint(path, create_model(name, num_classes=1), model_name=name, model_kwargs={"num_classes": 1},
                    config=config)
    return str(path)


def _two_videos(tmp_path):
    """A REAL demo clip and its fake (CI time: inference on CPU is the slow part here)."""
    src = tmp_path / "videos"
    src.mkdir()
    for name in ("ccfoszqabv.mp4", "acqfdwsrhi.mp4"):
        shutil.copy(os.path.join(extract.DEMO_DIR, name), src / name)
    return str(src), {"ccfoszqabv.mp4", "acqfdwsrhi.mp4"}


def _submission(out):
    rows = read_csv(out / "submission.csv")
    return {r["filename"]: float(r["label"]) for r in rows}


def test_infer_recipe_selim_scores_every_face_with_the_confident_strategy(tmp_path):
    from dfdc_fast.infer.__main__ import main
    from dfdc_fast.infer.aggregate import selim

    ckpt = _checkpoint(tmp_path / "b0.pth", "efficientnet_b0", input_size=64)
    out = tmp_path / "out"
    # 8 evenly spaced frames instead of his 32 (CI time); the rest is his recipe
    videos, names = _two_videos(tmp_path)
    assert main([videos, ckpt, "-o", str(out), "--recipe", "selim", "--frames", "8", "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 0
    sub = _submission(out)
    assert set(sub) == names and all(0.0 < p < 1.0 for p in sub.values())
    summary = json.load(open(out / "summary.json"))
    assert summary["aggregator"] == "selim" and summary["config"]["detector"] == "selim_inference"
    for name in names:
        rec = json.load(open(out / "videos" / (os.path.splitext(name)[0] + ".json")))
        assert rec["status"] == "ok" and rec["faces"] == 8  # one face on each of the 8 frames
        (member, probs), = rec["scores"].items()
        assert len(probs) == 8
        assert abs(rec["label"] - selim({member: probs})) < 1e-9


def test_infer_recipe_ntech_scores_windows_of_iou_tracks_and_sharpens(tmp_path):
    from dfdc_fast.infer.__main__ import main
    from dfdc_fast.infer.aggregate import aggregate

    seq = _checkpoint(tmp_path / "seq.pth", "efficientnet_b0_seq")
    frame = _checkpoint(tmp_path / "frame.pth", "efficientnet_b0", input_size=224)
    out = tmp_path / "out"
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(os.path.join(extract.DEMO_DIR, "ccfoszqabv.mp4"), videos)
    # the first 60 frames (CI time): 30 kept at 15 fps, 10 detections (every 3rd kept), one track
    assert main([str(videos), seq, frame, "-o", str(out), "--recipe", "ntech", "--frames", "60", "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 0
    sub = _submission(out)
    assert set(sub) == {"ccfoszqabv.mp4"} and all(0.01 <= p <= 0.99 for p in sub.values())
    summary = json.load(open(out / "summary.json"))
    assert summary["aggregator"] == "ntech" and summary["config"]["detector"] == "ntech_inference"
    for name in sub:
        rec = json.load(open(out / "videos" / (os.path.splitext(name)[0] + ".json")))
        assert rec["status"] == "ok"
        # 7-frame windows starting every 14 kept frames: 0 and 14; every 2nd kept frame: 15
        assert {k.split(":")[0].split("/")[0]: len(v) for k, v in rec["scores"].items()} == \
            {"efficientnet_b0_seq": 2, "efficientnet_b0": 15}, rec["scores"].keys()
        assert abs(rec["label"] - aggregate("ntech", rec["scores"])) < 1e-9


def test_infer_recipe_defaults_yield_to_given_options():
    from dfdc_fast.infer.pipeline import InferConfig
    from dfdc_fast.recipes import get_recipe

    def recipe_request(config, kinds):
        return get_recipe(config.recipe).infer_request(config, kinds)

    cfg = InferConfig.from_dict({"recipe": "selim", "frames": 16})
    assert (cfg.aggregator, cfg.detector, cfg.detect_every, cfg.frames) == ("selim", "selim_inference", 1, 16)
    assert InferConfig.from_dict({}).aggregator == "medics"
    with pytest.raises(ValueError, match="2D"):
        recipe_request(cfg, {"3d"})
    req = recipe_request(InferConfig.from_dict({"recipe": "ntech"}), {"3d", "2d"})
    assert req.sample_fps == 15.0 and req.every == 3 and req.track.min_detections == 7
    assert [(w.length, w.stride, w.min_size, w.crop, w.pad) for w in req.windows] == [
        (7, 14, 224, (224, 192), "zero"), (1, 2, 224, (224, 192), "zero"), (1, 2, 192, (224, 192), "reflect")]
    with pytest.raises(ValueError, match="recipe"):
        InferConfig.from_dict({"recipe": "bogus"})


def test_extract_takes_the_recipe_object_and_its_defaults():
    from dfdc_fast.recipes import RECIPES

    cfg = extract.ExtractConfig(recipe=RECIPES["selim"], inputs=[])
    assert cfg.recipe == "selim" and cfg.recipe_object is RECIPES["selim"]  # the name is what settings.json records
    assert (cfg.crop_format, cfg.reuse_original, cfg.crop_margin) == ("png", "all", RECIPES["selim"].extract_defaults["crop_margin"])
    assert extract.ExtractConfig(inputs=[]).reuse_original == "all"  # the Medics' export: fakes reuse their original's tracks
    with pytest.raises(ValueError, match="recipe must be one of"):
        extract.ExtractConfig(recipe="bogus", inputs=[])
