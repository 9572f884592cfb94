"""dfdc_fast.models: every seed model builds, trains a step, loads local weights strictly.

Sizes are tiny so the whole file runs on a 2-core CPU; the seq-EfficientNet mechanism is
checked on B0 (B7 differs only in width/depth) and B7 is still built and run once.
"""
import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from dfdc_fast.models import (
    Checkpoint, ModelSpec, create_model, list_models, load_checkpoint, load_model, model_spec, normalize,
    register_model, save_checkpoint,
)
from dfdc_fast.models.checkpoint import unwrap_model
from dfdc_fast.models.image import ClipDropPath, TemporalPointwiseConv, inflate_efficientnet, timm_model
from dfdc_fast.models.registry import load_weights
from dfdc_fast.models.video import count_parameters

SEED_MODELS = {
    # name: (kind, input_size, frames, normalization)
    "i3d": ("3d", 224, 64, "i3d"),
    "r3d_34": ("3d", 224, 32, "none"),
    "mc3_18": ("3d", 112, 32, "imagenet"),
    "mc3_18_224": ("3d", 224, 32, "imagenet"),
    "r2plus1d_18": ("3d", 112, 32, "imagenet"),
    "seresnext50_32x4d": ("2d", 256, 1, "imagenet"),
    **{f"efficientnet_b{i}": ("2d", side, 1, "imagenet")
       for i, side in enumerate((224, 240, 260, 300, 380, 456, 528, 380))},
    "efficientnet_b7_seq": ("3d", 224, 7, "imagenet"),
}


def tiny_input(name: str, batch: int = 2) -> torch.Tensor:
    spec = model_spec(name)
    if name.endswith("_seq"):
        return torch.rand(batch, 3, 2, 32, 32)
    if spec.kind == "3d":
        return torch.rand(batch, 3, 8, 32, 32)
    return torch.rand(batch, 3, 64, 64)


def test_registry_holds_the_seed_models_with_their_input_specs():
    assert set(list_models()) >= set(SEED_MODELS)
    for name, (kind, side, frames, norm) in SEED_MODELS.items():
        spec = model_spec(name)
        assert (spec.name, spec.kind, spec.input_size, spec.frames, spec.normalization) == (name, kind, side, frames, norm)
    with pytest.raises(ValueError, match="unknown model 'nope'.*i3d"):
        create_model("nope")
    with pytest.raises(ValueError, match="normalization"):
        ModelSpec("x", "3d", 224, 8, "zscore")


class _FlatLinear(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_register_model_adds_a_builder(monkeypatch):
    from dfdc_fast.models import registry

    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))  # leave the real registry untouched
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    spec = ModelSpec("tiny_test_linear", "2d", 8, 1, "none", head="fc")

    @register_model("tiny_test_linear", spec)
    def build(*, num_classes=1):
        return _FlatLinear(num_classes)

    assert "tiny_test_linear" in list_models() and model_spec("tiny_test_linear") is spec
    assert create_model("tiny_test_linear", num_classes=4)(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_linear", spec)(lambda **kw: None)


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_every_model_trains_a_step_at_a_tiny_size(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    logits = model(normalize(tiny_input(name), name))
    assert logits.shape == (2, 1)
    logits.square().mean().backward()
    first = next(model.parameters())
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["i3d", "r3d_34", "mc3_18", "r2plus1d_18", "seresnext50_32x4d", "efficientnet_b0"])
def test_two_classes(name):
    model = create_model(name, num_classes=2).eval()
    with torch.no_grad():
        assert model(normalize(tiny_input(name, batch=3), name)).shape == (3, 2)


def test_normalize_values_for_each_scheme():
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 5)
    assert torch.equal(normalize(x, "i3d")[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(normalize(x, "r3d_34")[0, :, 0, 0], torch.tensor([0.0, 127.5, 255.0]))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (torch.tensor([0.0, 0.5, 1.0]) - mean) / std
    torch.testing.assert_close(normalize(x, model_spec("efficientnet_b0"))[1, :, 3, 4], expected)
    clip = x.unsqueeze(2).expand(2, 3, 6, 4, 5)  # (B, 3, T, H, W): channels still at dim 1
    torch.testing.assert_close(normalize(clip, "mc3_18")[1, :, 5, 3, 4], expected)
    for dtype in (torch.float16, torch.float64):
        out = normalize(clip.to(dtype), "mc3_18")
        assert out.dtype == dtype and out.shape == clip.shape
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "i3d")
    with pytest.raises(ValueError, match="channels|expected"):
        normalize(torch.zeros(1, 4, 2, 2), "i3d")


@torch.no_grad()
def test_i3d_takes_any_clip_length_and_side_with_tf_same_padding():
    model = create_model("i3d").eval()
    # 16x64x64: spatial strides 2^5 and temporal 2^3 -> (2, 2, 2); 7 -> 4, 2, 1 and 33 -> 17, 9, 5, 3, 2 (SAME rounds up).
    assert model.forward_features(torch.rand(1, 3, 16, 64, 64)).shape == (1, 1024, 2, 2, 2)
    assert model.forward_features(torch.rand(1, 3, 7, 33, 33)).shape == (1, 1024, 1, 2, 2)
    for t, h, w in ((8, 32, 32), (9, 33, 40), (13, 48, 32)):
        assert model(torch.rand(2, 3, t, h, w)).shape == (2, 1)


@torch.no_grad()
def test_r3d_34_takes_any_clip_length():
    model = create_model("r3d_34").eval()
    for t in (4, 8, 13):
        assert model(torch.rand(1, 3, t, 32, 32)).shape == (1, 1)


def test_parameter_counts_match_the_published_networks():
    # I3D with a 400-class Kinetics head: the PyTorch port has 12,697,264 parameters.
    assert 12.3e6 <= count_parameters(create_model("i3d", num_classes=400)) <= 12.9e6
    # 3D ResNet-34, 400 classes. Type-A shortcuts have no parameters, which gives 63,544,912;
    # the ~63.7M often quoted is the same net with type-B 1x1x1 projection shortcuts in
    # layers 2-4: (64*128 + 128*256 + 256*512) conv weights + 2*(128 + 256 + 512) BN = 173,824
    # more, 63,718,736 in all. Both are within 0.3% of 63.7M.
    r3d = count_parameters(create_model("r3d_34", num_classes=400))
    assert r3d == 63_544_912
    assert abs(r3d + 173_824 - 63.7e6) / 63.7e6 < 0.001
    assert abs(r3d - 63.7e6) / 63.7e6 < 0.01


# --------------------------------------------------------------------------- sequence EfficientNet

def _b0_parent(num_classes=3):
    torch.manual_seed(1)
    return timm_model("tf_efficientnet_b0", num_classes=num_classes).eval()


@torch.no_grad()
def test_seq_efficientnet_with_center_init_is_the_2d_net_per_frame_averaged():
    parent = _b0_parent()
    seq = inflate_efficientnet(copy.deepcopy(parent), temporal_init="center").eval()
    clip = torch.rand(2, 3, 5, 64, 64)  # two different clips: the fold into the batch must keep them apart
    per_frame = torch.stack([parent(clip[:, :, t]) for t in range(clip.shape[2])], dim=1).mean(dim=1)
    torch.testing.assert_close(seq(clip), per_frame, atol=1e-4, rtol=0)


@torch.no_grad()
def test_seq_efficientnet_mean_init_mixes_neighbours_but_keeps_a_still_clip():
    parent = _b0_parent()
    seq = inflate_efficientnet(copy.deepcopy(parent)).eval()  # NTechLab init: each tap = weight / 3
    converted = [m for m in seq.modules() if isinstance(m, TemporalPointwiseConv)]
    expansions = sum(1 for m in parent.modules() if type(m).__name__ == "InvertedResidual")
    assert len(converted) == expansions > 0
    torch.testing.assert_close(converted[0].weight.sum(dim=2), parent.blocks[1][0].conv_pw.weight, atol=1e-6, rtol=0)
    # A clip of one repeated frame gives exactly the 2D answer, ends included (replicate padding).
    frame = torch.rand(2, 3, 64, 64)
    still = frame.unsqueeze(2).expand(-1, -1, 7, -1, -1)
    torch.testing.assert_close(seq(still), parent(frame), atol=1e-4, rtol=0)
    # A moving clip: the first temporal conv sees its neighbours.
    conv = converted[0]
    conv.frames = 3
    x = torch.rand(3, conv.in_channels, 4, 4)  # one clip of 3 frames
    flat = parent.blocks[1][0].conv_pw(x)
    assert not torch.allclose(conv(x), flat, atol=1e-3)
    torch.testing.assert_close(conv(x)[1], flat.mean(dim=0), atol=1e-5, rtol=0)


@torch.no_grad()
def test_seq_efficientnet_loads_2d_imagenet_style_weights(tmp_path):
    parent = _b0_parent(num_classes=1000)
    path = tmp_path / "b0_2d.pth"
    torch.save(parent.state_dict(), path)
    seq = inflate_efficientnet(timm_model("tf_efficientnet_b0", num_classes=1))
    not_loaded = load_weights(seq, torch.load(path, weights_only=True), head="net.classifier")
    assert not_loaded == ["net.classifier.bias", "net.classifier.weight"]
    seq.eval()
    frame = torch.rand(1, 3, 64, 64)
    feats_2d = parent.forward_head(parent.forward_features(frame), pre_logits=True)
    torch.testing.assert_close(seq.forward_features(frame.unsqueeze(2).expand(-1, -1, 3, -1, -1)), feats_2d,
                               atol=1e-4, rtol=0)


def test_clip_drop_path_drops_whole_clips():
    torch.manual_seed(0)
    drop = ClipDropPath(0.5).train()
    drop.frames = 4
    out = drop(torch.ones(4 * 16, 2, 1, 1)).view(16, 4, 2)
    assert torch.all(out == out[:, :1]) and set(out.unique().tolist()) == {0.0, 2.0}


# --------------------------------------------------------------------------- checkpoints and weights

def test_checkpoint_round_trip_is_strict_and_complete(tmp_path):
    torch.manual_seed(0)
    model = create_model("i3d", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 8, 32, 32)).sum().backward()
    optimizer.step()
    model.eval()
    path = tmp_path / "run" / "last.pth"
    state = {"optimizer": optimizer.state_dict(), "epoch": 3, "step": 120, "torch_rng": torch.get_rng_state()}
    save_checkpoint(path, nn.DataParallel(model), model_name="i3d", model_kwargs={"num_classes": 2},
                    config={"lr": 0.1, "frames": [8, 16]}, state=state)
    assert os.listdir(path.parent) == ["last.pth"]  # the temporary file was renamed, not left behind

    loaded, checkpoint = load_model(path)
    assert isinstance(checkpoint, Checkpoint) and checkpoint.format == "dfdc_fast.checkpoint/1"
    assert checkpoint.model_name == "i3d" and checkpoint.model_kwargs == {"num_classes": 2}
    assert checkpoint.config == {"lr": 0.1, "frames": [8, 16]}
    assert {"torch", "torchvision", "timm", "dfdc_fast", "python"} <= set(checkpoint.versions)
    assert checkpoint.state["epoch"] == 3 and torch.equal(checkpoint.state["torch_rng"], state["torch_rng"])
    optimizer.load_state_dict(checkpoint.state["optimizer"])
    assert not loaded.training
    clip = torch.rand(1, 3, 9, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model(clip), atol=0, rtol=0)
    assert load_checkpoint(path).state_dict.keys() == model.state_dict().keys()


def test_checkpoint_refuses_renamed_keys_foreign_files_and_unloadable_state(tmp_path):
    model = create_model("efficientnet_b0")
    path = tmp_path / "b0.pth"
    save_checkpoint(path, model, model_name="efficientnet_b0", model_kwargs={"num_classes": 1})
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["conv_stem.renamed"] = raw["state_dict"].pop("conv_stem.weight")
    torch.save(raw, path)
    with pytest.raises(ValueError, match=r"conv_stem\.weight") as info:
        load_model(path)
    assert "conv_stem.renamed" in str(info.value)

    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    with pytest.raises(ValueError, match="not a dfdc_fast checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(TypeError, match=r"state\['rng'\]"):
        save_checkpoint(tmp_path / "bad.pth", model, model_name="efficientnet_b0", state={"rng": object()})
    assert not (tmp_path / "bad.pth").exists()


def test_unwrap_model_sees_through_ddp_style_and_compile_wrappers():
    model = nn.Linear(2, 1)
    assert unwrap_model(nn.DataParallel(model)) is model
    compiled = type("OptimizedModule", (nn.Module,), {})()
    compiled._orig_mod = nn.DataParallel(model)
    assert unwrap_model(compiled) is model


def test_pretrained_file_with_a_kinetics_head_loads_into_one_logit(tmp_path):
    torch.manual_seed(0)
    kinetics = create_model("i3d", num_classes=400)
    path = tmp_path / "i3d_kinetics.pt"
    # DDP-saved, wrapped in a training dict: both are unwrapped.
    torch.save({"epoch": 10, "state_dict": {f"module.{k}": v for k, v in kinetics.state_dict().items()}}, path)
    model = create_model("i3d", num_classes=1, pretrained=str(path))
    assert model.logits.conv3d.weight.shape == (1, 1024, 1, 1, 1)
    assert torch.equal(model.Mixed_5c.b1b.conv3d.weight, kinetics.Mixed_5c.b1b.conv3d.weight)
    assert torch.equal(model.Conv3d_1a_7x7.bn.running_var, kinetics.Conv3d_1a_7x7.bn.running_var)

    same_head = create_model("i3d", num_classes=400, pretrained=path)  # a matching head is loaded too
    assert torch.equal(same_head.logits.conv3d.weight, kinetics.logits.conv3d.weight)

    # Files from before torch 0.4.1 (the public Kinetics weights) have no BatchNorm counters.
    old_style = {k: v for k, v in kinetics.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, path)
    assert torch.equal(create_model("i3d", pretrained=path).Mixed_3b.b0.bn.weight, kinetics.Mixed_3b.b0.bn.weight)

    broken = kinetics.state_dict()
    del broken["Mixed_4d.b2b.bn.weight"]
    torch.save(broken, path)
    with pytest.raises(ValueError, match=r"missing keys: Mixed_4d\.b2b\.bn\.weight"):
        create_model("i3d", num_classes=1, pretrained=path)

    wrong = create_model("i3d", num_classes=400, in_channels=1).state_dict()
    torch.save(wrong, path)
    with pytest.raises(ValueError, match=r"shape mismatches: Conv3d_1a_7x7\.conv3d\.weight"):
        create_model("i3d", pretrained=path)
    with pytest.raises(ValueError, match="local file"):
        create_model("i3d", pretrained=True)
    with pytest.raises(ValueError, match="not found"):
        create_model("i3d", pretrained=tmp_path / "missing.pt")


def test_importing_models_does_not_import_timm_or_torchvision():
    code = "import sys, dfdc_fast.models; print('timm' in sys.modules, 'torchvision' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


@torch.no_grad()
def test_efficientnet_seq_helper_builds_any_variant():
    from dfdc_fast.models.image import efficientnet_seq

    model = efficientnet_seq("tf_efficientnet_b0", num_classes=2, temporal_padding="zeros", drop_path_rate=0.1).eval()
    assert model(torch.rand(2, 3, 3, 64, 64)).shape == (2, 2)
    assert any(isinstance(m, ClipDropPath) and m.drop_prob > 0 for m in model.modules())
    conv = next(m for m in model.modules() if isinstance(m, TemporalPointwiseConv))
    assert conv.kernel_size == (3, 1, 1) and conv.padding == (1, 0, 0) and conv.padding_mode == "zeros"
    with pytest.raises(ValueError, match="temporal_init"):
        efficientnet_seq("tf_efficientnet_b0", temporal_init="random")
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.rand(2, 3, 64, 64))


@pytest.mark.parametrize("name", ["mc3_18", "r2plus1d_18", "r3d_34", "seresnext50_32x4d", "efficientnet_b0"])
def test_load_model_skips_the_random_init_and_gives_the_same_model(tmp_path, name, caplog):
    """load_model builds on the meta device and takes the file's tensors: no random
    initialisation, the same outputs as a model built and loaded the slow way."""
    import logging

    torch.manual_seed(0)
    model = create_model(name, num_classes=1).eval()
    path = tmp_path / f"{name}.pth"
    save_checkpoint(path, model, model_name=name, model_kwargs={"num_classes": 1})
    with caplog.at_level(logging.INFO, logger="dfdc_fast.models.checkpoint"):
        loaded, _ = load_model(path)
    assert "normal initialisation" not in caplog.text and "meta device" not in caplog.text
    assert not any(t.is_meta for t in list(loaded.parameters()) + list(loaded.buffers()))
    x = torch.rand(1, 3, 4, 32, 32) if model_spec(name).kind == "3d" else torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    for (k, a), (_, b) in zip(loaded.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
