"""The winners' published weights, rebuilt in their exact layout with random values.

Each test saves a state dict the way its authors did (key names, prefixes, wrapper dict,
dtype, a numpy scalar in the metadata), converts it with ``python -m dfdc_fast.models
import``, and compares our model's logits with a forward of the same weights in the
authors' own architecture (timm, efficientnet_pytorch 0.6.3, torchvision). fp32, tiny
inputs, relative difference <= 1e-5.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfdc_fast.models import load_model, normalize
from dfdc_fast.models.__main__ import main as models_main
from dfdc_fast.models.convert import read_foreign

TOLERANCE = 1e-5


def _randomise(model: nn.Module, seed: int) -> None:
    """Random BatchNorm statistics and affine values (a fresh init has mean 0, var 1 and
    would hide a swapped running_mean/running_var), small random biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() == 1:  # BatchNorm weight
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)


def _relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def _convert(recipe: str, sources: list, out) -> list:
    assert models_main(["import", "--recipe", recipe, *map(str, sources), "-o", str(out)]) == 0
    return sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".pth"))


# --------------------------------------------------------------------------- Selim (1st)

class _SelimClassifier(nn.Module):
    """His DeepFakeClassifier: encoder (timm tf_efficientnet_b7_ns with its ImageNet head),
    avg_pool, dropout, fc (training/zoo/classifiers.py)."""

    def __init__(self):
        super().__init__()
        import timm

        self.encoder = timm.create_model("tf_efficientnet_b7", pretrained=False, drop_path_rate=0.2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(self.encoder.num_features, 1)

    def forward(self, x):
        return self.fc(self.dropout(self.avg_pool(self.encoder.forward_features(x)).flatten(1)))


@pytest.mark.slow
def test_selim_file_converts_to_his_logits(tmp_path):
    torch.manual_seed(0)
    ref = _SelimClassifier().eval()
    _randomise(ref, 1)
    name = "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36"
    src = tmp_path / name
    # apex DDP prefix, numpy float64 metric, torch 1.4's (pre-zip) format
    torch.save({"epoch": 36, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()},
                "bce_best": np.float64(0.2031)}, src, _use_new_zipfile_serialization=False)
    (path,) = _convert("selim", [src], tmp_path / "out")
    assert os.path.basename(path) == name + ".pth"
    model, ckpt = load_model(path)
    prov = ckpt.config["provenance"]
    assert prov["source_file"] == name and prov["recipe"] == "selim" and prov["conversion_version"] == 1
    assert len(prov["sha256"]) == 64 and prov["source_metadata"] == {"epoch": 36, "bce_best": 0.2031}
    assert sorted(prov["dropped_keys"]) == ["module.encoder.classifier.bias", "module.encoder.classifier.weight"]
    assert ckpt.model_name == "efficientnet_b7" and ckpt.config["input_size"] == 380
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref(normalize(x, "efficientnet_b7"))
        got = model(normalize(x, "efficientnet_b7"))
    assert got.shape == (2, 1)
    assert _relative(got, expected) <= TOLERANCE


def test_selim_file_with_an_unexplained_key_is_refused(tmp_path):
    src = tmp_path / "final_999_DeepFakeClassifier_tf_efficientnet_b7_ns_0_23"
    state = {"module.fc.weight": torch.zeros(1, 2560), "module.fc.bias": torch.zeros(1),
             "module.extra.weight": torch.zeros(3)}
    torch.save({"epoch": 1, "state_dict": state, "bce_best": np.float64(0.3)}, src)
    from dfdc_fast.recipes import selim

    with pytest.raises(ValueError, match="neither used nor dropped on purpose: module.extra.weight"):
        selim.convert(str(src))


def test_selim_file_missing_keys_is_refused(tmp_path, capsys):
    src = tmp_path / "final_999_DeepFakeClassifier_tf_efficientnet_b7_ns_0_23"
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(1, 2560), "module.fc.bias": torch.zeros(1)}}, src)
    assert models_main(["import", "--recipe", "selim", str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "missing keys: " in err and "blocks.0.0.bn1.weight" in err
    assert not (tmp_path / "out").exists()  # every source is checked before anything is written


# --------------------------------------------------------------------------- pickles that run code

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("recipe,name", [("selim", "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36"),
                                         ("medics", "res34_1cy_minaug_nonorm_e4_l0.1794.model")])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, capsys, recipe, name):
    marker = tmp_path / "pwned"
    src = tmp_path / name
    torch.save({"state_dict": {"fc.weight": torch.zeros(1)}, "epoch": _Evil(str(marker))}, src)
    assert not marker.exists()
    with pytest.raises(ValueError, match="needs the global io.open,"):
        read_foreign(src)
    assert models_main(["import", "--recipe", recipe, str(src), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "io.open" in err
    assert not marker.exists()


# --------------------------------------------------------------------------- NTechLab (3rd)

class _SeqExpandConv(nn.Module):
    """Their SeqExpandConv (predict.py): a (3, 1, 1) Conv3d, zero padding, frames folded in the batch."""

    def __init__(self, in_channels, out_channels, seq_length):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False)
        self.seq_length = seq_length

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.view(n // self.seq_length, self.seq_length, c, h, w)
        return self.conv(x.transpose(1, 2)).transpose(1, 2).flatten(0, 1)


def _ntech_reference(sequence: bool, frames: int):
    effnet = pytest.importorskip("efficientnet_pytorch")
    from efficientnet_pytorch.model import MBConvBlock

    model = effnet.EfficientNet.from_name("efficientnet-b7", override_params={"num_classes": 1})
    if sequence:
        for module in model.modules():
            if isinstance(module, MBConvBlock) and module._block_args.expand_ratio != 1:
                conv = module._expand_conv
                module._expand_conv = _SeqExpandConv(conv.in_channels, conv.out_channels, frames)
    return model.eval()


def _save_ntech(model, folder, tmp_path):
    """Their copy_weights.py: every tensor .half(), a flat state dict, in its run folder."""
    path = tmp_path / "ntech" / folder / "snapshot_100000.fp16.pth"
    path.parent.mkdir(parents=True)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    # predict.py casts back with .float(): the reference runs on the fp16-rounded values
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return path


@pytest.mark.slow
def test_ntech_files_convert_to_their_per_frame_logits(tmp_path):
    frames = 3
    torch.manual_seed(0)
    seq = _ntech_reference(True, frames)
    _randomise(seq, 2)
    frame_a = _ntech_reference(False, frames)
    _randomise(frame_a, 3)
    src_seq = _save_ntech(seq, "efficientnet-b7_ns_seq_aa-original-mstd0.5_100k_v4_cad79a", tmp_path)
    src_a = _save_ntech(frame_a, "efficientnet-b7_ns_aa-original-mstd0.5_large_crop_100k_v4_cad79a", tmp_path)
    paths = _convert("ntech", [src_seq, src_a], tmp_path / "out")
    assert [os.path.basename(p) for p in paths] == ["ntech_large_crop.pth", "ntech_seq.pth"]
    clip = torch.rand(2, 3, frames, 64, 64)  # sides divisible by 32: their static SAME padding (600 px) agrees
    model, ckpt = load_model(paths[1])
    assert ckpt.model_name == "efficientnet_b7_seq"
    assert ckpt.model_kwargs == {"temporal_padding": "zeros", "output": "frames"}
    assert ckpt.config["input_hw"] == [224, 192] and ckpt.config["provenance"]["source_dtypes"] == ["float16"]
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        x = normalize(clip, "efficientnet_b7_seq")
        expected = seq(x.transpose(1, 2).flatten(0, 1)).view(2, frames, 1)
        got = model(x)
    assert got.shape == (2, frames, 1)
    assert _relative(got, expected) <= TOLERANCE
    # our defaults (replicate padding, one logit per clip) are not theirs
    from dfdc_fast.models.image import TemporalPointwiseConv

    for m in model.modules():
        if isinstance(m, TemporalPointwiseConv):
            m.padding_mode = "replicate"
    model.output = "clip"
    with torch.no_grad():
        assert _relative(model(x).unsqueeze(1).expand(-1, frames, -1), expected) > 1e-3

    model_a, ckpt_a = load_model(paths[0])
    assert ckpt_a.model_name == "efficientnet_b7" and ckpt_a.config["ntech_crop"] == "resize_pad"
    images = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        x = normalize(images, "efficientnet_b7")
        assert _relative(model_a(x), frame_a(x)) <= TOLERANCE


def test_ntech_file_outside_its_release_folder_is_refused(tmp_path):
    from dfdc_fast.recipes import ntech

    src = tmp_path / "snapshot_100000.fp16.pth"
    torch.save({"_fc.weight": torch.zeros(1, 2560, dtype=torch.float16)}, src)
    with pytest.raises(ValueError, match="cannot tell which NTechLab model"):
        ntech.convert(str(src))
    assert ntech.role_of("/x/efficientnet-b7_ns_aa-original-mstd0.5_re_100k_v4_cad79a/snapshot_100000.fp16.pth") == "re"


# --------------------------------------------------------------------------- The Medics (5th)

def _save_flat(model, path):
    torch.save(model.state_dict(), path)
    return path


def _fake_logit(two_class: torch.Tensor) -> torch.Tensor:
    """Their score p_fake = 1 - P(REAL) (REVERSE_PROBS, FAKE = 0) as a logit."""
    return (two_class[:, 0] - two_class[:, 1]).unsqueeze(1)


def _tv(name):
    from torchvision.models import video

    return getattr(video, name)(weights=None, num_classes=2).eval()


@pytest.mark.parametrize("file,builder,side,frames", [
    ("mc3_18_112_1cy_lilaug_nonorm_e9_l0.1905.model", "mc3_18", 32, 8),
    ("r2plus1dcutmix_112_e10_l0.1608.model", "r2plus1d_18", 32, 8),
])
def test_medics_torchvision_files_convert_to_their_fake_logit(tmp_path, file, builder, side, frames):
    torch.manual_seed(0)
    ref = _tv(builder)
    _randomise(ref, 4)
    (path,) = _convert("medics", [_save_flat(ref, tmp_path / file)], tmp_path / "out")
    model, ckpt = load_model(path)
    assert ckpt.model_name == builder and ckpt.config["provenance"]["dropped_keys"] == {}
    clip = torch.rand(2, 3, frames, side, side)
    with torch.no_grad():
        x = normalize(clip, builder)  # ImageNet, as their albumentations Normalize
        two = ref(x)
        got = model(x)
    assert _relative(got, _fake_logit(two)) <= TOLERANCE
    assert torch.allclose(torch.sigmoid(got[:, 0]), 1 - two.softmax(1)[:, 1], atol=1e-6)


def test_medics_res34_converts_and_takes_raw_pixels(tmp_path):
    from dfdc_fast.models.video import ResNet3d

    torch.manual_seed(0)
    ref = ResNet3d((3, 4, 6, 3), num_classes=2).eval()  # Hara's layout: conv1, bn1, layer1.0.conv1, fc
    _randomise(ref, 5)
    (path,) = _convert("medics", [_save_flat(ref, tmp_path / "res34_1cy_minaug_nonorm_e4_l0.1794.model")],
                       tmp_path / "out")
    model, ckpt = load_model(path)
    clip = torch.rand(1, 3, 8, 32, 32)
    x = normalize(clip, ckpt.model_name)
    assert torch.equal(x, clip * 255)  # "nonorm": raw 0..255
    with torch.no_grad():
        assert _relative(model(x), _fake_logit(ref(x))) <= TOLERANCE


def _piergiaj_fake_logit(trunk, x):
    """Their I3D head (cnn3d/training/i3d.py, output_method avg_pool): AvgPool3d([2, 7, 7],
    stride 1), the logits conv per window, squeeze, adaptive_avg_pool1d over time."""
    windows = trunk.logits(nn.AvgPool3d([2, 7, 7], stride=(1, 1, 1))(trunk.forward_features(x)))
    logits = F.adaptive_avg_pool1d(windows.squeeze(3).squeeze(3), 1).squeeze(-1)
    return _fake_logit(logits)


@pytest.mark.slow
def test_medics_i3d_converts_with_their_windowed_head(tmp_path):
    from dfdc_fast.models.video import InceptionI3d

    torch.manual_seed(0)
    ref = InceptionI3d(num_classes=2).eval()  # piergiaj's module names, replace_logits(2)
    _randomise(ref, 6)
    (path,) = _convert("medics", [_save_flat(ref, tmp_path / "j3d_e1_l0.1374.model")], tmp_path / "out")
    model, ckpt = load_model(path)
    assert ckpt.model_kwargs == {"head_pool": "windows"}
    clip = torch.rand(1, 3, 17, 224, 224)  # 3 time steps at the head: the end windows weigh half
    x = normalize(clip, "i3d")
    assert torch.equal(x, clip * 2 - 1)
    with torch.no_grad():
        expected = _piergiaj_fake_logit(ref, x)
        got = model(x)
        model.head_pool = "global"
        global_pool = model(x)
    assert _relative(got, expected) <= TOLERANCE
    assert _relative(global_pool, expected) > 1e-4  # global pooling is not their head


class _MedicsSingleHead(nn.Module):
    """Their cnn2d SingleHead: Cadene se_resnext50_32x4d (last_linear Identity, adaptive
    pool) as backbone, dropout 0.5, fc 2048 -> 1."""

    def __init__(self):
        super().__init__()
        import timm

        self.backbone = timm.create_model("legacy_seresnext50_32x4d", pretrained=False, num_classes=0)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, 1)

    def forward(self, x):
        return self.fc(self.dropout(self.backbone(x)))


def test_medics_2d_file_converts_to_legacy_seresnext(tmp_path):
    torch.manual_seed(0)
    ref = _MedicsSingleHead().eval()
    _randomise(ref, 7)
    (path,) = _convert("medics", [_save_flat(ref, tmp_path / "SRXT50_094_VM-0.2504.PTH")], tmp_path / "out")
    model, ckpt = load_model(path)
    assert ckpt.model_name == "legacy_seresnext50_32x4d"
    x = normalize(torch.rand(2, 3, 64, 64), ckpt.model_name)
    with torch.no_grad():
        assert _relative(model(x), ref(x)) <= TOLERANCE


def test_medics_unknown_file_name_is_refused(tmp_path, capsys):
    src = tmp_path / "my_model.pth"
    torch.save({"fc.weight": torch.zeros(2, 512)}, src)
    assert models_main(["import", "--recipe", "medics", str(src), "-o", str(tmp_path / "out")]) == 2
    assert "not one of the Medics' file names" in capsys.readouterr().err


def test_two_class_head_is_exactly_one_logit():
    from dfdc_fast.models.convert import two_class_head_to_one

    w, b = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    w1, b1 = two_class_head_to_one(w, b)
    p_fake = (x @ w.T + b).softmax(1)[:, 0]
    assert torch.allclose(torch.sigmoid(x @ w1.T + b1)[:, 0], p_fake, atol=1e-12)


# --------------------------------------------------------------------------- inference with them

def test_a_per_frame_sequence_member_gives_a_probability_per_frame(tmp_path):
    from dfdc_fast.infer.ensemble import Ensemble
    from dfdc_fast.models import create_model, save_checkpoint

    kwargs = {"temporal_padding": "zeros", "output": "frames"}
    torch.manual_seed(0)
    model = create_model("efficientnet_b0_seq", **kwargs).eval()
    save_checkpoint(tmp_path / "seq.pth", model, model_name="efficientnet_b0_seq", model_kwargs=kwargs)
    ensemble = Ensemble([str(tmp_path / "seq.pth")], torch.device("cpu"))
    windows = torch.randint(0, 256, (3, 7, 64, 32, 3), dtype=torch.uint8)
    p = ensemble.score_windows(ensemble.members[0], windows, np.array([True, False, True]))
    assert p.shape == (3, 7)
    x = windows.permute(0, 4, 1, 2, 3).float() / 255
    x = torch.where(torch.tensor([True, False, True])[:, None, None, None, None], x.flip(-1), x)
    with torch.no_grad():
        expected = torch.sigmoid(model(normalize(x, "efficientnet_b0_seq"))[..., 0])
    assert torch.allclose(p, expected, atol=1e-5)


def test_infer_picks_the_scorer_from_what_the_request_cuts():
    from types import SimpleNamespace

    from dfdc_fast.infer.pipeline import FaceScorer, InferConfig, scorer_for
    from dfdc_fast.infer.scorers import CropScorer, WindowScorer
    from dfdc_fast.recipes import RECIPES

    expected = {"medics": ({"3d", "2d"}, FaceScorer), "selim": ({"2d"}, CropScorer), "ntech": ({"3d"}, WindowScorer)}
    for name, (kinds, kind) in expected.items():
        config = InferConfig.from_dict({"recipe": RECIPES[name]})  # the object, not its name
        assert config.recipe == name
        request = RECIPES[name].infer_request(config, kinds)
        ensemble = SimpleNamespace(kinds=kinds, members=[])
        assert type(scorer_for(request, config, ensemble, torch.device("cpu"))) is kind
