"""A training step on fake CUDA (bench/fake_cuda.py), built as train() builds it from shipped
configs: the batch to float, kornia's 3D and 2D augmentation, 3D CutMix, Selim's cut-outs,
NTechLab's pair mixup, normalisation, channels-last, the forward, the loss, gradient clipping,
the fused optimiser step and the schedule, all with device="cuda".

The eager autograd engine cannot run a backward on fake CUDA tensors (it guards each CUDA
node's stream, which asks the CUDA driver for a primary context on device 0; make_fx and
AOTAutograd trace the backward through the same engine and fail alike). So here
``loss.backward()`` is replaced by a stand-in that checks the loss and gives every trainable
parameter a gradient of its own shape, dtype and device; the real backward of the same step
runs on the meta device below (shapes and dtypes of every gradient op, no device placement).
"""
import contextlib
import warnings

import numpy as np
import pytest
import torch

from dfdc_fast.bench.fake_cuda import fake_cuda
from dfdc_fast.train.config import load_config
from dfdc_fast.train.loop import build_step

#: (shipped config, what it adds to the step); batches are small, frames and sizes as shipped
CASES = {
    "r2plus1d_18_cutmix": "3D kornia augmentation with noise, CutMix on every batch, fused AdamW",
    "seresnext50": "2D kornia augmentation (the Medics' 2D preset), fused AdamW",
    "selim_b7": "Selim's cut-outs and 2D preset, balanced BCE, label smoothing, gradient clipping, fused SGD, poly",
    "ntech_b7_seq": "NTechLab's pairs with mixup, head warm-up, fused SGD",
}


@contextlib.contextmanager
def _backward_stand_in(step, seen: list):
    """``Tensor.backward`` for the block: checks the loss, gives each trainable parameter a gradient."""
    original = torch.Tensor.backward

    def backward(loss, *args, **kwargs):
        assert loss.dim() == 0 and loss.dtype == torch.float32 and loss.device.type == "cuda", loss
        seen.append(loss)
        for p in step.model.parameters():
            if p.requires_grad:
                g = torch.zeros_like(p)
                p.grad = g if p.grad is None else p.grad + g

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


def _batch(fc, config, spec, size: int, b: int = 2):
    """A device batch as the loaders hand it over (uint8, channels last), with its labels and extras."""
    labels = fc.tensor(torch.empty(b))
    if config.dataset == "pairs":
        h, w = config.pair_crop
        return fc.tensor(torch.empty(b, 2, len(config.pair_frames), h, w, 3, dtype=torch.uint8)), labels, None
    if spec.kind == "3d":
        return fc.tensor(torch.empty(b, config.frames, 256, 256, 3, dtype=torch.uint8)), labels, None
    extras = None
    if config.cutout:
        extras = {"landmarks": fc.tensor(torch.empty(b, 5, 2)), "has_landmarks": fc.tensor(torch.empty(b, dtype=torch.bool)),
                  "diff_counts": fc.tensor(torch.empty(b, 6, dtype=torch.int64)),
                  "bit_mid": fc.tensor(torch.empty(b, 2)), "scale": fc.tensor(torch.empty(b))}
    return fc.tensor(torch.empty(b, size, size, 3, dtype=torch.uint8)), labels, extras


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_training_step_on_the_device(name):
    from dfdc_fast.models import model_spec

    config = load_config(name, batch_size=2)
    spec = model_spec(config.model)
    size = config.input_size or spec.input_size
    losses: list = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autocast.*")  # autocast("cuda") is off on fake tensors
        with fake_cuda() as fc:
            step, _ = build_step(config, torch.device("cuda"), total_steps=1000, pretrained=False)
            assert step.dtype == torch.bfloat16 and not step.scaler.is_enabled()  # the GPU's amp: bf16, no scaler
            assert all(p.device.type == "cuda" for p in step.model.parameters())
            step.begin_epoch(seed=1, epoch=0)
            stepped, syncs = [], []
            with _backward_stand_in(step, losses):
                for _ in range(2):  # the first builds lazy state (kornia's JPEG tables wait once for the device)
                    batch, labels, extras = _batch(fc, config, spec, size)
                    stepped.append(step(batch, labels, extras))
                    syncs.append(fc.counter.syncs)
            state = [s for s in step.optimizer.state.values() if s]
            loss_sum, items = step.loss_totals()
    assert stepped == [True, True] and step.steps == 2 and len(losses) == 2 and items == 2
    assert loss_sum.device.type == "cuda"
    assert state and all(t.device.type == "cuda" for s in state for t in s.values() if isinstance(t, torch.Tensor))
    assert fc.host_reads == 0 and syncs[1] == syncs[0], fc.counter.sync_ops  # a step reads nothing back
    assert syncs[0] <= 2 and set(fc.counter.sync_ops) <= {"Stream.synchronize"}


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("name", ["r2plus1d_18_cutmix", "seresnext50"])
def test_the_backward_of_a_step_on_the_meta_device(name):
    """The real backward of the same step (CutMix's mixed loss, BCE) on meta tensors, which the
    autograd engine runs: every trainable parameter gets a gradient of its shape and dtype.
    The fused optimisers refuse meta tensors, so a plain SGD steps here; Gaussian noise needs a
    generator on the data's device, which meta has not, so it is off."""
    from dfdc_fast.models import model_spec

    config = load_config(name, ["augment.noise_p=0"], batch_size=2)
    spec = model_spec(config.model)
    step, _ = build_step(config, torch.device("meta"), total_steps=1000, pretrained=False)
    step.optimizer = torch.optim.SGD(step.model.parameters(), lr=0.1)
    step.begin_epoch(seed=1, epoch=0)
    shape = (2, config.frames, 256, 256, 3) if spec.kind == "3d" else (2, config.input_size, config.input_size, 3)
    grads = {}
    hooks = [p.register_hook(lambda g, n=n: grads.setdefault(n, g)) for n, p in step.model.named_parameters()]
    assert step(torch.empty(shape, dtype=torch.uint8, device="meta"), torch.empty(2, device="meta"))
    for h in hooks:
        h.remove()
    params = dict(step.model.named_parameters())
    assert set(grads) == {n for n, p in params.items() if p.requires_grad}
    assert all(g.shape == params[n].shape and g.dtype == params[n].dtype and g.is_meta for n, g in grads.items())
