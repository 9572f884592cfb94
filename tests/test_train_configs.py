"""Every shipped config trains, as shipped: one step at a tiny size on synthetic data laid out
as each recipe's extraction writes it (index.csv clips and crops, Selim's crops.csv, NTechLab's
pairs.csv). Only sizes, lengths and paths are set here; channels-last, the loader, the model,
its optimiser, schedule and augmentation stay the config's."""
import csv
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dfdc_fast.models import create_model, load_checkpoint, model_spec, to_channels_last
from dfdc_fast.train import list_configs, load_config, train
from dfdc_fast.train.config import read_config_file

SIDE, CLIP_FRAMES, PAIR_FRAMES = 32, 16, 50
CLIP_SIDE = 224  # the face clips: big enough for a config that must train at 224 (the Medics' windowed I3D head)
HEAVY = {"efficientnet_b7", "selim_b7", "ntech_b7_seq"}  # B7: 7-25 s each on 2 cores


def _clip(path, frames, seed, side=SIDE):
    from dfdc_fast.crops.encode import write_mp4

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (side * 2, side * 2, 3)).astype(np.uint8)
    write_mp4(path, np.stack([np.roll(base, (i, 2 * i), (0, 1))[:side, :side] for i in range(frames)]), fps=30,
              keyint=16)


def _image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (SIDE, SIDE, 3)).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
    """One folder holding all three layouts: 8 videos (4 REAL, each with a FAKE made from it),
    half of them in DFDC part 45 (the Medics' hold-out) and in fold 0 (Selim's)."""
    root = tmp_path_factory.mktemp("recipes")
    for sub in ("clips", "crops", "videos", "pairs"):
        os.makedirs(root / sub)
    index, crops, pairs = [], [], []
    for k in range(8):
        real = k % 2 == 0
        video = f"v{k}.mp4"
        original = "" if real else f"v{k - 1}.mp4"
        part = "dfdc_train_part_45" if k < 4 else "dfdc_train_part_1"
        fold = 0 if k < 4 else 1
        clip = f"clips/v{k}_0_0.mp4"
        _clip(str(root / clip), CLIP_FRAMES, k, CLIP_SIDE)
        record = {"crops": []}
        for j, frame in enumerate((0, 10, 20)):
            crop = f"crops/v{k}_{frame}.png"
            _image(str(root / crop), 100 * k + j)
            record["crops"].append({"path": crop})
            landmarks = " ".join(str(v) for v in (10, 12, 22, 12, 16, 18, 11, 24, 21, 24))
            crops.append({"video": video, "label": "REAL" if real else "FAKE", "original": original, "part": part,
                          "fold": fold, "frame": frame, "path": crop, "landmarks": landmarks, "diff": ""})
        with open(root / "videos" / f"v{k}.json", "w") as f:
            json.dump(record, f)
        index.append({"video": video, "part": part, "label": "REAL" if real else "FAKE", "original": original,
                      "status": "ok", "clip": clip, "clip_frames": CLIP_FRAMES, "keyint": 16,
                      "json": f"videos/v{k}.json"})
        if not real:
            pair = {}
            for side, name in (("real", f"v{k - 1}"), ("fake", f"v{k}")):
                pair[f"{side}_clip"] = f"pairs/{name}_pair.mp4"
                _clip(str(root / pair[f"{side}_clip"]), PAIR_FRAMES, 1000 + k + (side == "fake"))
            pairs.append({**pair, "real_video": f"v{k - 1}.mp4", "fake_video": video, "part": part, "fold": fold})
    for name, rows in (("index.csv", index), ("crops.csv", crops), ("pairs.csv", pairs)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return str(root)


def _one_step(name, data, out):
    """The shipped config with only sizes, lengths and paths changed."""
    shipped = load_config(name)
    sizes = dict(data=data, out=str(out), epochs=1, max_steps_per_epoch=1, batch_size=2, workers=0, input_size=SIDE,
                 progress=False)
    if shipped.dataset == "pairs":
        sizes.update(pair_crop=[SIDE, SIDE], pair_min_size=SIDE)
    elif model_spec(shipped.model).kind == "3d":
        sizes.update(frames=8)
    if shipped.model_kwargs.get("head_pool") == "windows":  # the Medics' I3D head needs its 7 x 7 map: 224 px
        sizes.update(input_size=shipped.input_size)
    return shipped, load_config(name, **sizes)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_configs()])
def test_every_shipped_config_trains_one_step_as_shipped(name, recipe_data, tmp_path):
    shipped, config = _one_step(name, recipe_data, tmp_path / "run")
    kept = ("model", "model_kwargs", "channels_last", "loader", "augment", "cutmix", "cutout", "dataset", "optimizer",
            "schedule", "loss", "amp", "pair_reencode", "pair_autoaugment", "pair_mixup", "warmup_head_steps")
    assert {k: getattr(config, k) for k in kept} == {k: getattr(shipped, k) for k in kept}
    assert config.channels_last  # every shipped config trains channels-last
    result = train(config, device="cpu")
    row = result.metrics[-1]
    assert result.step == 1 and math.isfinite(row["train_loss"]), row
    if shipped.val_parts or shipped.val_fold is not None:  # part 45 / fold 0 held out: both classes
        assert row["val_videos"] >= 2 and math.isfinite(row["val_log_loss"]), row
    ckpt = load_checkpoint(os.path.join(str(tmp_path / "run"), "checkpoints", "best.pth"))
    assert ckpt.model_name == shipped.model and ckpt.state["epoch"] == 1


@pytest.mark.parametrize("name,stand_in", [("selim_b7", "efficientnet_b0"), ("ntech_b7_seq", "efficientnet_b0_seq")])
def test_the_b7_recipes_train_with_a_b0_standing_in(name, stand_in, recipe_data, tmp_path):
    """The fast lane's run of Selim's crops (cut-outs, a fold held out) and NTechLab's pairs
    (re-encode, AutoAugment, mixup, head warm-up): every setting the config's, but the model."""
    _, config = _one_step(name, recipe_data, tmp_path / "run")
    result = train(load_config(None, **{**config.to_dict(), "model": stand_in, "model_kwargs": {}}), device="cpu")
    assert result.step == 1 and math.isfinite(result.metrics[-1]["train_loss"])


def test_every_shipped_config_is_read_whole():
    """No shipped config leans on a default it does not know: every key it sets is a field."""
    for name in list_configs():
        values = read_config_file(name)
        assert set(values) <= set(load_config(name).to_dict()), name


def test_channels_last_follows_each_weights_rank():
    """A sequence B7 is registered "3d" but most of its convs are 2-D: channels_last_3d on the
    whole model (main's rule, by kind) raises; by each weight's rank it converts and runs."""
    model = create_model("efficientnet_b0_seq", num_classes=1)
    with pytest.raises(RuntimeError, match="rank 5"):
        model.to(memory_format=torch.channels_last_3d)
    model = to_channels_last(model)
    ranks = {p.dim() for p in model.parameters()}
    assert ranks >= {4, 5}
    for p in model.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d)
    clip = torch.rand(1, 3, 7, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    assert model.eval()(clip).shape == (1, 1)
