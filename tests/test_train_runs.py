"""Runs the timm way: a rerun extends (raised epochs), refuses (any other changed setting,
named with old and new values), starts over (--overwrite) or from weights (--resume-from),
and has nothing to do when finished; checkpoints kept as last.pth, best.pth and the newest
few; the starting weights said in one line; options and config files refused in one line
(rc 2) before anything is written."""
import csv
import logging
import os
import time

import numpy as np
import pytest
import torch

from dfdc_fast.errors import ConfigError
from dfdc_fast.models import create_model, load_checkpoint
from dfdc_fast.train import load_config, train
from dfdc_fast.train.__main__ import main, parse_args
from dfdc_fast.train.config import list_configs
from dfdc_fast.train.metrics import read_metrics


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """8 tiny clips: 4 REAL, each with a FAKE in its group (val_fraction 0.5 holds out both classes)."""
    from dfdc_fast.crops.encode import write_mp4

    root = tmp_path_factory.mktemp("clips")
    os.makedirs(root / "clips")
    rows = []
    rng = np.random.default_rng(0)
    for k in range(8):
        real = k % 2 == 0
        clip = f"clips/v{k}_0_0.mp4"
        write_mp4(str(root / clip), rng.integers(0, 255, (12, 32, 32, 3)).astype(np.uint8), fps=30, keyint=4)
        rows.append({"video": f"v{k}.mp4", "part": "", "label": "REAL" if real else "FAKE",
                     "original": "" if real else f"v{k - 1}.mp4", "status": "ok", "clip": clip, "clip_frames": 12,
                     "keyint": 4})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(root)


def _config(data, out, **kw):
    base = dict(model="mc3_18", data=data, frames=4, input_size=32, batch_size=2, epochs=2, max_steps_per_epoch=2,
                loader="pyav", workers=0, amp="none", val_fraction=0.5, augment={}, out=str(out), progress=False,
                seed=1, lr=3e-4)
    base.update(kw)
    return load_config(None, **base)


def _flags(data, out):
    return ["--model", "mc3_18", "--data", data, "-o", str(out), "--frames", "4", "--input-size", "32",
            "--batch-size", "2", "--epochs", "1", "--max-steps-per-epoch", "1", "--loader", "pyav", "--workers", "0",
            "--amp", "none", "--no-progress", "--device", "cpu", "augment={}"]


def _files(out):
    return sorted(os.listdir(os.path.join(str(out), "checkpoints")))


# ---- extend --------------------------------------------------------------------------------


def test_raising_epochs_extends_a_finished_run_with_its_schedule_rebuilt(clips, tmp_path, caplog):
    first = train(_config(clips, tmp_path / "run", epochs=2), device="cpu")
    assert first.step == 4
    with caplog.at_level(logging.INFO, logger="dfdc_fast.train"):
        more = train(_config(clips, tmp_path / "run", epochs=3), device="cpu")
    assert more.step == 6 and [m["epoch"] for m in more.metrics] == [3]
    assert "extending" in caplog.text and "rebuilt for 6 steps and continues at step 4" in caplog.text
    # the rebuilt schedule ends where a 3-epoch run's does (OneCycle at its last step)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-4)
    straight = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-4, total_steps=6, pct_start=0.3)
    for _ in range(6):
        optimizer.step()
        straight.step()
    assert more.metrics[-1]["lr"] == pytest.approx(straight.get_last_lr()[0], rel=1e-6)
    assert [int(r["epoch"]) for r in read_metrics(str(tmp_path / "run" / "metrics.csv"))] == [1, 2, 3]


@pytest.mark.slow
def test_raising_max_steps_per_epoch_lengthens_the_epochs_left(clips, tmp_path, caplog):
    train(_config(clips, tmp_path / "run", epochs=2), device="cpu", stop_after_epochs=1)
    with caplog.at_level(logging.INFO, logger="dfdc_fast.train"):
        rest = train(_config(clips, tmp_path / "run", epochs=2, max_steps_per_epoch=3), device="cpu")
    assert rest.step == 2 + 3 and "4 -> 5 steps" in caplog.text


def test_a_finished_run_has_nothing_to_do(clips, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_flags(clips, out)) == 0
    stamp = os.stat(out / "checkpoints" / "last.pth").st_mtime_ns
    capsys.readouterr()
    assert main(_flags(clips, out)) == 0
    err = capsys.readouterr().err
    assert "nothing to do" in err and "raise --epochs" in err
    assert os.stat(out / "checkpoints" / "last.pth").st_mtime_ns == stamp


# ---- refuse, overwrite, resume-from ----------------------------------------------------------


def test_a_changed_setting_is_refused_in_one_line_naming_old_and_new(clips, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_flags(clips, out) + ["--epochs", "2", "--stop-after-epochs", "1"]) == 0
    config_yaml = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(_flags(clips, out) + ["--epochs", "2", "--lr", "5e-4", "optimizer=sgd"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("train:")]
    assert len(err) == 1 and err[0].startswith("train: error: "), err
    assert "lr 0.0001 -> 0.0005" in err[0] and "optimizer 'adamw' -> 'sgd'" in err[0], err[0]
    assert "--overwrite" in err[0] and "--resume-from" in err[0]
    assert (out / "config.yaml").read_text() == config_yaml  # the run's record is untouched
    assert _files(out) == ["best.pth", "epoch_001.pth", "last.pth"]

    # --overwrite starts over with the new settings
    assert main(_flags(clips, out) + ["--lr", "5e-4", "--overwrite"]) == 0
    ckpt = load_checkpoint(out / "checkpoints" / "last.pth")
    assert ckpt.config["lr"] == 5e-4 and ckpt.state["step"] == 1


def test_resume_from_starts_a_new_run_from_a_checkpoints_weights(clips, tmp_path, caplog):
    old = train(_config(clips, tmp_path / "old", epochs=1), device="cpu")
    source = str(tmp_path / "old" / "checkpoints" / "last.pth")
    config = _config(clips, tmp_path / "new", epochs=1, max_steps_per_epoch=1, resume_from=source, lr=1e-9,
                     optimizer="sgd", weight_decay=0.0)
    with caplog.at_level(logging.INFO, logger="dfdc_fast.train"):
        new = train(config, device="cpu")
    assert new.step == 1  # a new run: its own step count, optimiser and schedule
    assert f"weights: {source}, epoch 1 of its run: all" in caplog.text
    a, b = load_checkpoint(old.last_checkpoint).state_dict, load_checkpoint(new.last_checkpoint).state_dict
    weights = [k for k, v in a.items() if v.is_floating_point() and "running" not in k]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in weights)  # lr 1e-9: the weights it started from
    with pytest.raises(ConfigError, match="give one"):
        _config(clips, tmp_path / "x", resume_from=source, pretrained=source)


# ---- retention -----------------------------------------------------------------------------


@pytest.mark.slow  # 5 epochs; the fast lane keeps the keep-0 retention test
def test_checkpoints_kept_last_best_and_the_newest_few(clips, tmp_path):
    out = tmp_path / "run"
    result = train(_config(clips, out, epochs=4, checkpoint_keep=2), device="cpu")
    assert _files(out) == ["best.pth", "epoch_003.pth", "epoch_004.pth", "last.pth"]
    assert os.path.samefile(out / "checkpoints" / "last.pth", out / "checkpoints" / "epoch_004.pth")
    assert result.last_checkpoint.endswith("epoch_004.pth")
    rows = read_metrics(str(out / "metrics.csv"))
    losses = [float(r["val_balanced_log_loss"]) for r in rows]
    best = load_checkpoint(out / "checkpoints" / "best.pth")
    assert best.state["epoch"] == 1 + int(np.argmin(losses)), losses
    assert best.state["best"]["metric"] == "val_balanced_log_loss"
    # optimiser state only where resuming needs it: the newest epoch
    assert "optimizer" in load_checkpoint(out / "checkpoints" / "epoch_004.pth").state
    assert "optimizer" not in load_checkpoint(out / "checkpoints" / "epoch_003.pth").state
    assert ("optimizer" in best.state) == (best.state["epoch"] == 4)
    # and the run still resumes and extends from what was kept
    more = train(_config(clips, out, epochs=5, checkpoint_keep=2), device="cpu")
    assert more.step == 10 and _files(out) == ["best.pth", "epoch_004.pth", "epoch_005.pth", "last.pth"]


def test_without_validation_best_is_the_last_epoch_and_keep_0_leaves_last_and_best(clips, tmp_path):
    out = tmp_path / "run"
    train(_config(clips, out, epochs=3, checkpoint_keep=0, val_fraction=0.0), device="cpu")
    assert _files(out) == ["best.pth", "last.pth"]
    best, last = (load_checkpoint(out / "checkpoints" / n) for n in ("best.pth", "last.pth"))
    assert best.state["epoch"] == last.state["epoch"] == 3 and best.state["best"]["metric"] == "last epoch"


def test_infer_given_a_run_folder_scores_its_best_pth(clips, tmp_path, capsys):
    from dfdc_fast.infer.__main__ import build_parser, config_from_args

    train(_config(clips, tmp_path / "run", epochs=1), device="cpu")
    config = config_from_args(build_parser().parse_args([clips, str(tmp_path / "run"), "-o", str(tmp_path / "o")]))
    assert config.checkpoints == [str(tmp_path / "run" / "checkpoints" / "best.pth")] and config.inputs == [clips]
    assert "is a training run: scoring with its" in capsys.readouterr().err


# ---- the weights a run starts from -----------------------------------------------------------


def test_the_starting_weights_are_stated_in_one_line(clips, tmp_path, caplog):
    torch.manual_seed(0)
    weights = tmp_path / "kinetics.pth"
    torch.save(create_model("mc3_18", num_classes=400).state_dict(), weights)
    with caplog.at_level(logging.INFO, logger="dfdc_fast.train"):
        train(_config(clips, tmp_path / "a", epochs=1, max_steps_per_epoch=1, val_fraction=0.0), device="cpu")
        train(_config(clips, tmp_path / "b", epochs=1, max_steps_per_epoch=1, val_fraction=0.0,
                      pretrained=str(weights)), device="cpu")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weights:")]
    assert lines[0] == "weights: random init (seed 1; no --pretrained file)"
    assert lines[1].startswith(f"weights: {weights}: ") and "classifier fc.bias, fc.weight at its initialisation" in lines[1]


# ---- options and config files refused before anything is written -------------------------------


@pytest.mark.parametrize("flags,key", [(["--batch-size", "0"], "batch_size"), (["--accumulate", "0"], "accumulate"),
                                       (["--frames", "0"], "frames"), (["--epochs", "0"], "epochs"),
                                       (["lr=-1"], "lr"), (["--workers", "-1"], "workers"),
                                       (["optimizer=rmsprop"], "optimizer"), (["--checkpoint-keep", "-1"], "checkpoint_keep")])
def test_bad_options_are_refused_in_one_line_before_the_run_folder_exists(flags, key, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-c", "smoke", "-o", str(out), "--device", "cpu"] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train: error: ") and key in err[0], err
    assert not out.exists()


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "model_kwargs: {k: *i}\n"


@pytest.mark.parametrize("text,says", [
    (BOMB, "anchors and aliases"),
    ("model: mc3_18\nlr: [1e-4\n", "not valid YAML"),
    ("model: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ('model_kwargs: {"__class__": 1}\n', "__class__"),
    ("augment: {hflip: {nested: {deeper: 1}}}\n", "augment.hflip"),
    ("- model\n- mc3_18\n", "expected a mapping"),
])
def test_config_files_are_read_safely(text, says, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert main(["-c", str(path), "-o", str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert time.monotonic() - started < 5  # the alias bomb is refused, not expanded
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "run").exists()


def test_an_alias_in_an_override_is_refused_too():
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config("smoke", overrides=["val_parts=[&a 1, *a]"])


# ---- the command line ------------------------------------------------------------------------


def test_list_configs_is_a_table(capsys):
    assert main(["--list-configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "model", "input", "x", "frames", "epochs", "recipe", "description"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(list_configs())
    assert rows["ntech_b7_seq"][1:7] == ["efficientnet_b7_seq", "224", "x", "7", "100", "ntech"]
    assert rows["selim_b7"][1:7] == ["efficientnet_b7", "380", "x", "1", "40", "selim"]
    assert rows["i3d"][1:7] == ["i3d", "224", "x", "64", "10", "medics"] and "Medics" in " ".join(rows["i3d"])


def test_help_shows_every_options_default_from_the_config(capsys):
    import argparse

    parser_actions = []
    original = argparse.ArgumentParser.parse_intermixed_args

    def capture(self, args=None, namespace=None):
        parser_actions.extend(a for a in self._actions if a.option_strings)
        return original(self, [], namespace)

    argparse.ArgumentParser.parse_intermixed_args = capture
    try:
        parse_args(["-c", "smoke"])
    finally:
        argparse.ArgumentParser.parse_intermixed_args = original
    undocumented = [a.option_strings[0] for a in parser_actions
                    if a.dest not in ("help", "version", "debug", "list_configs") and "default" not in (a.help or "")]
    assert not undocumented
    with pytest.raises(SystemExit):
        parse_args(["-c", "smoke", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS raising it on a finished run extends the run (default: 2)" in text  # smoke's, not 10
    assert "--input-size INPUT_SIZE input side in pixels (default: 64)" in text
