"""The training step reads nothing from the device: host syncs are counted with OpCounter on
the CPU (an upper bound of the GPU count), and the loop reads the loss only every
``log_every`` steps."""
import pytest
import torch

from dfdc_fast.bench.counting import OpCounter, no_syncs
from dfdc_fast.train import TrainConfig
from dfdc_fast.train.loop import build_step

AUGMENT = {"scale": [0.5, 1.0], "ratio": [0.9, 1.1], "hflip": 0.5, "brightness_contrast_p": 0.5, "blur_p": 0.5}


def _config(**kw) -> TrainConfig:
    base = dict(model="mc3_18", frames=8, input_size=32, batch_size=2, amp="none", cutmix=0.5, augment=AUGMENT,
                optimizer="adamw", seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _batches(n, device, b=2, t=8, size=40):
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (n, b, t, size, size, 3), dtype=torch.uint8, generator=g).to(device)
    labels = (torch.rand(n, b, generator=g) < 0.5).float().to(device)
    return clips, labels


@pytest.mark.parametrize("optimizer,accumulate", [("adamw", 1), ("sgd", 2)])
def test_training_step_syncs_only_when_the_loss_is_logged(optimizer, accumulate):
    steps, log_every = 20, 10
    step, _ = build_step(_config(optimizer=optimizer, accumulate=accumulate), torch.device("cpu"), total_steps=steps + 1)
    step.begin_epoch(seed=1, epoch=0)
    clips, labels = _batches(steps, "cpu")
    step(clips[0], labels[0])  # first call builds lazy state (optimizer buffers) outside the count
    reads = []
    with OpCounter() as counter:
        for i in range(steps):
            step(clips[i], labels[i])
            if (i + 1) % log_every == 0:
                reads.append(step.read())
    assert len(reads) == steps // log_every and all(r > 0 for r in reads)
    # one host read per logged value, nothing else: CutMix (lambda stays a tensor), augmentation
    # draws, the fused optimiser and the schedule never read the device
    assert counter.syncs == len(reads), dict(counter.sync_ops)
    assert counter.syncs / steps <= 1
    # tensors built from host data (a blocking copy on a GPU unless made non_blocking): only
    # cutmix3d's box arithmetic (dfdc_fast.augment) makes one, once per mixed batch
    assert counter.host_to_device <= steps
    assert step.steps == (steps + 1) // accumulate


def test_cutmix_is_drawn_on_the_host_and_replays_per_epoch():
    step, _ = build_step(_config(cutmix=0.5), torch.device("cpu"), total_steps=4)
    draws = []
    for _ in range(2):
        step.begin_epoch(seed=3, epoch=2)
        draws.append([step._mix_rng.random() < 0.5 for _ in range(32)])
    assert draws[0] == draws[1] and 0 < sum(draws[0]) < 32


def test_the_loop_reads_the_loss_every_log_every_steps(monkeypatch, tmp_path):
    """train() wires the step: the running loss is read every ``log_every`` steps plus once per epoch."""
    from dfdc_fast.train import loop
    from test_train_loaders import _synthetic

    import csv
    import os

    root = tmp_path / "data"
    os.makedirs(root / "clips" / "REAL")
    rows = []
    for k in range(4):
        clip = f"clips/REAL/v{k}_0_0.mp4"
        _synthetic(str(root / clip), frames=24, size=48, seed=k)
        rows.append({"video": f"v{k}.mp4", "part": "", "label": "FAKE" if k % 2 else "REAL", "original": "",
                     "status": "ok", "clip": clip, "clip_frames": 24, "keyint": 16})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    reads = []
    original = loop.TrainStep.read
    monkeypatch.setattr(loop.TrainStep, "read", lambda self: reads.append(1) or original(self))
    totals = []
    original_totals = loop.TrainStep.loss_totals
    monkeypatch.setattr(loop.TrainStep, "loss_totals", lambda self: totals.append(1) or original_totals(self))
    config = TrainConfig(model="mc3_18", data=str(root), frames=8, input_size=32, batch_size=2, epochs=2,
                         max_steps_per_epoch=7, log_every=3, loader="pyav", workers=0, amp="none", val_fraction=0.0,
                         balance="all", out=str(tmp_path / "run"), progress=False)
    result = loop.train(config, device="cpu")
    assert len(reads) == 2 * (7 // 3) and len(totals) == 2
    assert all(float(m["train_loss"]) > 0 for m in result.metrics)
    assert result.decode["seek_misses"] == 0 and result.decode["delivered_frames"] == 2 * 7 * 2 * 8


@pytest.mark.cuda
@pytest.mark.parametrize("cutmix", [0.0, 1.0])
def test_training_step_runs_without_a_device_sync_on_a_gpu(cutmix):
    device = torch.device("cuda")
    step, _ = build_step(_config(amp="bf16", cutmix=cutmix), device, total_steps=8)
    step.begin_epoch(seed=1, epoch=0)
    clips, labels = _batches(6, device)
    step(clips[0], labels[0])
    torch.cuda.synchronize()
    with no_syncs(device):  # any synchronising CUDA call raises
        for i in range(1, 6):
            step(clips[i], labels[i])
    assert step.read() > 0
