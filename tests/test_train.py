"""Training: index reading and splits, balanced epochs, the loop on real extracted clips
(checkpoints, exact resume, falling loss), a synthetic task the loop must learn, the CLI."""
import csv
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dfdc_fast.models import load_checkpoint
from dfdc_fast.train import TrainConfig, balanced_epoch, list_configs, load_config, read_clip_index, split_samples, train
from dfdc_fast.train.data import Sample
from dfdc_fast.train.loaders import window_indices
from dfdc_fast.train.metrics import read_metrics, video_log_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "dfdc_fast", "assets", "demo")


@pytest.fixture(scope="module")
def demo_faces(tmp_path_factory):
    """The bundled demo clips (2 REAL, 2 FAKE; 150 frames) through the extraction job."""
    from dfdc_fast import extract

    out = tmp_path_factory.mktemp("faces")
    extract.run_extraction(extract.ExtractConfig(inputs=[DEMO], out=str(out), device="cpu", progress=False,
                                                 contact_sheet=0))
    return str(out)


def _tiny(out, data, **kw) -> TrainConfig:
    base = dict(model="mc3_18", data=data, frames=8, input_size=48, batch_size=4, epochs=6, loader="pyav",
                workers=0, amp="none", lr=3e-4, val_fraction=0.0, balance="all", augment={"hflip": 0.0, "scale": [1.0, 1.0],
                "ratio": [1.0, 1.0]}, out=str(out), progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow  # the demo extraction fixture, then minutes of training
def test_index_split_and_balance(demo_faces):
    samples = read_clip_index(demo_faces, "3d")
    assert samples and all(os.path.exists(s.path) and s.frames > 0 for s in samples)
    assert {s.label for s in samples} == {0, 1}
    crops = read_clip_index(demo_faces, "2d")
    assert crops and all(s.path.endswith(".jpg") for s in crops)
    # a fake shares its original's group, so a split never separates them
    by_video = {s.video: s.group for s in samples}
    assert by_video["acqfdwsrhi.mp4"] == by_video["ccfoszqabv.mp4"]
    train_s, val_s = split_samples(samples, val_fraction=0.5, seed=1)
    assert train_s and val_s and not ({s.group for s in train_s} & {s.group for s in val_s})

    fake = [Sample(f"f{i}", 1, f"f{i}.mp4", "", f"g{i}") for i in range(10)]
    real = [Sample(f"r{i}", 0, f"r{i}.mp4", "", f"r{i}") for i in range(3)]
    epoch = balanced_epoch(fake + real, 0, seed=0)
    labels = [(fake + real)[i].label for i in epoch]
    assert labels.count(0) == 3 and labels.count(1) == 3 and len(set(epoch)) == 6
    assert epoch == balanced_epoch(fake + real, 0, seed=0) != balanced_epoch(fake + real, 1, seed=0)


def test_windows_pad_short_clips_and_start_at_zero_in_validation():
    s = Sample("x.mp4", 0, "x.mp4", "", "x", frames=5)
    assert window_indices(s, 8, None) == [0, 1, 2, 3, 4, 4, 4, 4]
    import random
    starts = {window_indices(Sample("y", 0, "y", "", "y", frames=100), 32, random.Random(k))[0] for k in range(50)}
    assert min(starts) >= 0 and max(starts) <= 68 and len(starts) > 10


def test_video_log_loss_matches_the_dfdc_formula():
    ll, bll, n = video_log_loss(["a", "a", "b"], [1, 1, 0], [0.8, 0.6, 0.2])
    expected_a, expected_b = -np.log(0.7), -np.log(0.8)
    assert n == 2 and ll == pytest.approx((expected_a + expected_b) / 2) and bll == pytest.approx((expected_a + expected_b) / 2)


@pytest.mark.slow
def test_run_writes_checkpoints_resumes_exactly_and_lowers_loss(demo_faces, tmp_path):
    straight = train(_tiny(tmp_path / "straight", demo_faces), device="cpu")
    assert len(straight.metrics) == 6
    losses = [m["train_loss"] for m in straight.metrics]
    assert losses[-1] < 0.8 * losses[0], losses
    # retention (checkpoint_keep 3): the newest three epochs, last.pth and best.pth
    assert sorted(os.listdir(tmp_path / "straight" / "checkpoints")) == [
        "best.pth", "epoch_004.pth", "epoch_005.pth", "epoch_006.pth", "last.pth"]
    assert os.path.getsize(tmp_path / "straight" / "metrics.png") > 1000
    assert [int(r["epoch"]) for r in read_metrics(str(tmp_path / "straight" / "metrics.csv"))] == [1, 2, 3, 4, 5, 6]

    first = train(_tiny(tmp_path / "resumed", demo_faces), device="cpu", stop_after_epochs=1)
    assert first.epoch == 1
    rest = train(_tiny(tmp_path / "resumed", demo_faces), device="cpu")
    assert rest.step == straight.step
    a = load_checkpoint(straight.last_checkpoint)
    b = load_checkpoint(rest.last_checkpoint)
    assert a.state["step"] == b.state["step"] and a.state["epoch"] == b.state["epoch"] == 6
    for k, v in a.state_dict.items():
        assert torch.equal(v, b.state_dict[k]), k
    assert [r["train_loss"] for r in read_metrics(str(tmp_path / "resumed" / "metrics.csv"))] == \
        [r["train_loss"] for r in read_metrics(str(tmp_path / "straight" / "metrics.csv"))]


def _flicker_dataset(root, n_per_class=24, frames=16, size=48, seed=0):
    """Face-clip MP4s and an index in the extraction layout: FAKE clips' central square
    flickers from frame to frame, REAL clips' stays steady. Texture and position vary."""
    from dfdc_fast.crops.encode import write_mp4

    rng = np.random.default_rng(seed)
    rows = []
    for k in range(2 * n_per_class):
        label = "FAKE" if k % 2 else "REAL"
        base = rng.integers(40, 200, size=(1, size, size, 3)).astype(np.float32)
        base = np.repeat(base, frames, 0)
        y, x = rng.integers(8, size - 24, size=2)
        sign = np.where(np.arange(frames) % 2, 1.0, -1.0)[:, None, None, None] if label == "FAKE" else 0.0
        base[:, y:y + 16, x:x + 16] += 50 * sign
        clip = f"clips/{label}/v{k:03d}_0_0.mp4"
        write_mp4(os.path.join(root, clip), np.clip(base, 0, 255).astype(np.uint8), fps=30, crf=12)
        rows.append({"video": f"v{k:03d}.mp4", "part": "", "label": label, "original": "", "status": "ok",
                     "clip": clip, "clip_frames": frames})
    with open(os.path.join(root, "index.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(root)


@pytest.mark.slow
def test_the_loop_learns_a_task_a_3d_model_can_separate(tmp_path):
    data = _flicker_dataset(tmp_path / "flicker")
    config = _tiny(tmp_path / "run", data, epochs=6, batch_size=8, val_fraction=0.25, lr=3e-3, frames=8,
                   input_size=48, augment={"hflip": 0.5, "scale": [0.8, 1.0], "ratio": [0.9, 1.1]})
    result = train(config, device="cpu")
    final = result.metrics[-1]
    assert final["val_videos"] == 12
    assert final["val_log_loss"] < 0.3, result.metrics


def test_configs_ship_one_per_seed_model():
    names = set(list_configs())
    assert {"i3d", "r3d_34", "mc3_18", "mc3_18_224", "r2plus1d_18", "i3d_cutmix", "r2plus1d_18_cutmix",
            "seresnext50", "efficientnet_b7", "smoke"} <= names
    from dfdc_fast.models import list_models
    for name in names:
        cfg = load_config(name)
        assert cfg.model in list_models(), (name, cfg.model)
    with pytest.raises(ValueError, match="unknown option .modle.*did you mean .model"):
        TrainConfig.from_dict({"modle": "i3d"})


@pytest.mark.slow
def test_cli_smoke_config_runs_and_resumes(demo_faces, tmp_path):
    cmd = [sys.executable, "-m", "dfdc_fast.train", "-c", "smoke", "--data", demo_faces, "-o", str(tmp_path / "cli"),
           "--epochs", "2", "--max-steps-per-epoch", "1", "--no-progress", "--device", "cpu"]
    r = subprocess.run(cmd + ["--stop-after-epochs", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epoch_001.pth" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stderr and "epoch_002.pth" in r.stdout
    assert subprocess.run([sys.executable, "-m", "dfdc_fast.train", "--help"], capture_output=True, cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(demo_faces, tmp_path):
    """The documented DDP launch: two gloo processes share each epoch and rank 0 checkpoints."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "dfdc_fast.train", "-c", "smoke", "--data", demo_faces, "-o", str(tmp_path / "ddp"),
           "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "1", "--no-progress", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.exists(tmp_path / "ddp" / "checkpoints" / "epoch_001.pth")


@pytest.mark.slow
def test_inputs_are_checked_before_training(demo_faces, tmp_path):
    """Missing clips, a corrupt checkpoint to resume from and untyped YAML values are
    reported up front, by name, with what to do."""
    import csv as _csv
    import shutil as _shutil

    from dfdc_fast.errors import UserError
    from dfdc_fast.train.config import load_config

    data = tmp_path / "faces"
    _shutil.copytree(demo_faces, data)
    rows = list(_csv.DictReader(open(data / "index.csv")))
    gone = next(r["clip"] for r in rows if r["clip"])
    os.remove(data / gone)
    config = load_config("smoke", data=str(data), out=str(tmp_path / "run"), progress=False)
    with pytest.raises(UserError, match=r"1 of \d+ files .* missing or unreadable .*" + re.escape(os.path.basename(gone))):
        train(config, device="cpu")

    ok = load_config("smoke", data=str(demo_faces), out=str(tmp_path / "run2"), progress=False, epochs=1)
    train(ok, device="cpu")
    ckpt = sorted((tmp_path / "run2" / "checkpoints").glob("epoch_*.pth"))[-1]
    ckpt.write_bytes(b"truncated")
    with pytest.raises(UserError, match="cannot resume from .*epoch_.*--no-resume"):
        train(load_config("smoke", data=str(demo_faces), out=str(tmp_path / "run2"), progress=False, epochs=2),
              device="cpu")

    (tmp_path / "c.yaml").write_text("model: mc3_18\nlr: 1e-4\nepochs: '3'\n")
    typed = load_config(str(tmp_path / "c.yaml"))
    assert typed.lr == 1e-4 and typed.epochs == 3
    (tmp_path / "bad.yaml").write_text("model: mc3_18\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown option 'learning_rate'"):
        load_config(str(tmp_path / "bad.yaml"))


def test_a_2d_model_over_a_3d_config_takes_its_own_augmentation(caplog):
    """`-c smoke --model efficientnet_b0`: the smoke config's clip augmentation is set aside
    with a warning instead of crashing the 2D augmentation; a key no augmentation has fails."""
    from dfdc_fast.train.loop import make_augment

    config = load_config("smoke", model="efficientnet_b0")
    with caplog.at_level("WARNING"):
        train_tf, eval_tf = make_augment(config, "2d", 64, torch.device("cpu"))
    assert type(train_tf).__name__ == "SelimImageAugment" and "brightness_contrast_p" in caplog.text
    with pytest.raises(ValueError, match="hflp.*did you mean 'hflip'"):
        make_augment(load_config("smoke", augment={"hflp": 0.5}), "3d", 64, torch.device("cpu"))


def test_every_config_field_can_be_set_by_dotted_overrides():
    from dfdc_fast.errors import ConfigError
    from dfdc_fast.train.__main__ import parse_args
    from dfdc_fast.train.config import load_config

    args = parse_args(["optimizer=sgd", "-c", "smoke", "weight_decay=5e-4", "--epochs", "3", "augment.hflip=0.25",
                       "val_parts=[45, 46]"])
    config = load_config(args.config, overrides=args.overrides, epochs=args.epochs)
    assert config.optimizer == "sgd" and config.weight_decay == 5e-4 and config.epochs == 3
    assert config.augment == {"brightness_contrast_p": 0.25, "hflip": 0.25} and config.val_parts == [45, 46]
    assert load_config("smoke").augment == load_config("smoke", overrides=[]).augment  # the shipped config untouched
    with pytest.raises(ConfigError, match="weight_decay"):
        load_config("smoke", overrides=["weight_decy=0.1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("smoke", overrides=["optimizer"])
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config("smoke", overrides=["lr.x=1"])
