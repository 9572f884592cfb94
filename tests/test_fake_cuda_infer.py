"""Inference's group forward on fake CUDA (bench/fake_cuda.py): every registered model, at the
input size of each shipped config that uses it (the registry's size for the others), with
static batches, both flips, channels-last and the GPU's autocast dtype, as a GPU runs it.

Checkpoint loading is replaced by models built on the meta device (a b7 checkpoint is
260 MB); loading itself is tested in test_models.py.
"""
import glob
import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from dfdc_fast import models as models_pkg
from dfdc_fast.bench.fake_cuda import fake_cuda
from dfdc_fast.engine.request import ClipMeta, CropMeta, VideoFaces, WindowMeta
from dfdc_fast.infer.ensemble import Ensemble
from dfdc_fast.infer.pipeline import FaceScorer, InferConfig
from dfdc_fast.infer.scorers import CropScorer, WindowScorer
from dfdc_fast.models import create_model, list_models, model_spec
from dfdc_fast.models.checkpoint import FORMAT, Checkpoint
from dfdc_fast.recipes import get_recipe
from dfdc_fast.runtime import amp_dtype

CONFIGS = os.path.join(os.path.dirname(models_pkg.__file__), "..", "configs")


def _members() -> list[tuple[str, str, int, dict]]:
    """(label, model, input size, model kwargs): each shipped config's model, then every other registered one."""
    out, seen = [], set()
    for path in sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))):
        cfg = yaml.safe_load(open(path))
        if "model" in cfg:
            name = cfg["model"]
            size = int(cfg.get("input_size") or model_spec(name).input_size)
            out.append((os.path.basename(path)[:-5], name, size, dict(cfg.get("model_kwargs") or {})))
            seen.add(name)
    out += [(name, name, model_spec(name).input_size, {}) for name in list_models() if name not in seen]
    unique = {}  # configs that differ only in training options (cutmix, drop path) infer alike
    for entry in out:
        unique.setdefault(entry[1:3], entry)
    return list(unique.values())


MEMBERS = _members()


@pytest.fixture
def meta_checkpoints(tmp_path, monkeypatch):
    """Checkpoint paths whose load builds the model on the meta device and moves it to the device."""
    table = {}

    def load_model(path, device="cpu"):
        name, size, kwargs = table[os.fspath(path)]
        with torch.device("meta"):
            model = create_model(name, num_classes=1, **kwargs)
        ckpt = Checkpoint(FORMAT, name, {"num_classes": 1, **kwargs}, {}, config={"input_size": size})
        return model.to_empty(device=device).eval(), ckpt  # uninitialised weights on the device

    monkeypatch.setattr(models_pkg, "load_model", load_model)

    def make(entries):
        paths = []
        for label, name, size, kwargs in entries:
            p = str(tmp_path / f"{label}.pth")
            open(p, "wb").close()
            table[p] = (name, size, kwargs)
            paths.append(p)
        return paths

    return make


def _faces(fc, kinds: set, clip_lengths=(100, 37), crops=((5, 1), (4,))) -> list[VideoFaces]:
    """Two videos' engine results on the device as the Medics' request leaves them (to_host=False):
    two faces and one, clips of two lengths, ``crops[v][i]`` 2D crops of face i (up to 32 in a run;
    fewer here: one forward pass of a fake b7 takes two seconds)."""
    out = []
    for v, n_faces in enumerate((2, 1)):
        res = VideoFaces(key=v, path=f"v{v}.mp4", tracks=[SimpleNamespace(track_id=i) for i in range(n_faces)])
        if "3d" in kinds:
            lengths = [clip_lengths[i % len(clip_lengths)] for i in range(n_faces)]
            res.clip_frames = fc.tensor(torch.empty(sum(lengths), 256, 256, 3, dtype=torch.uint8))
            res.clips = [ClipMeta(track=i, chunk=0, start=0, stop=t, box=[0, 0, 1, 1], score=1.0, too_short=False,
                                  offset=sum(lengths[:i])) for i, t in enumerate(lengths)]
        if "2d" in kinds:
            owners = [(face, k) for face, count in enumerate(crops[v]) for k in range(count)]
            res.crop_data = fc.tensor(torch.empty(len(owners), 190 + 7 * v, 150, 3, dtype=torch.uint8))
            res.crops = [CropMeta(track=face, frame=k, box=[0, 0, 1, 1], offset=i, length=0,
                                  size=(120 + 13 * i, 100 + 5 * i)) for i, (face, k) in enumerate(owners)]
        out.append(res)
    return out


#: a fake forward costs ~1 ms per op: the EfficientNets and I3D take several seconds each
_SLOW = ("efficientnet", "i3d")


@pytest.mark.parametrize("entry", [pytest.param(m, id=m[0], marks=[pytest.mark.slow] if m[1].startswith(_SLOW) else [])
                                   for m in MEMBERS])
def test_group_forward_of_every_model(entry, meta_checkpoints):
    label, name, size, kwargs = entry
    kind = model_spec(name).kind
    with fake_cuda():  # --device cuda is checked against torch.cuda.is_available, answered here
        config = InferConfig(checkpoints=meta_checkpoints([entry]), device="cuda", videos_per_batch=2)
    n_faces = 3
    replay = [[np.zeros((1, n_faces), np.float32)]]  # the group's one transfer: values do not steer the code
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autocast.*")  # autocast("cuda") is off on fake tensors
        with fake_cuda(replay=replay) as fc:
            scorer = FaceScorer(config, Ensemble(config.checkpoints, torch.device("cuda"), amp_dtype(config.amp, torch.device("cuda"))), torch.device("cuda"))
            ensemble = scorer.ensemble
            ensemble.static_batch = True  # what compile=True sets: one shape per call
            member = ensemble.members[0]
            assert member.input_size == size and ensemble.dtype == torch.bfloat16
            first = next(member.model.parameters())
            assert first.device.type == "cuda"
            if first.dim() in (4, 5):
                fmt = torch.channels_last_3d if first.dim() == 5 else torch.channels_last
                assert first.is_contiguous(memory_format=fmt)
            batches = []
            real_forward = ensemble._forward
            ensemble._forward = lambda m, x: batches.append(tuple(x.shape)) or real_forward(m, x)
            per_video = scorer.score(_faces(fc, {kind}), level=0)
    assert fc.host_reads == 1 and fc.replay_left == 0
    assert [len(p[member.name]) for p in per_video] == [2, 1]
    if kind == "3d":  # clips of each length with their flips in one batch, at the model's size
        assert sorted(batches) == [(2, 3, 37, size, size), (4, 3, 100, size, size)]
    else:
        assert batches == [(10, 3, size, size)]  # every crop of the group, padded to 16 in _forward


def test_static_batches_pad_to_one_shape(meta_checkpoints):
    entry = ("mc3_18", "mc3_18", 112, {})
    with fake_cuda() as fc:
        ensemble = Ensemble(meta_checkpoints([entry]), torch.device("cuda"), torch.bfloat16, max_batch=4,
                            static_batch=True)
        member, shapes = ensemble.members[0], []
        model = member.model
        member.model = lambda x: shapes.append(tuple(x.shape)) or model(x)
        clips = [fc.tensor(torch.empty(16, 256, 256, 3, dtype=torch.uint8)) for _ in range(3)]
        scores = ensemble.score_clips(member, clips, tta=True)
    assert shapes == [(4, 3, 16, 112, 112), (4, 3, 16, 112, 112)]  # 6 inputs (3 clips, 2 flips) in two of 4
    assert scores.shape == (3,) and scores.device.type == "cuda"


@pytest.mark.parametrize("recipe,entry", [("selim", ("b0", "efficientnet_b0", 380, {})),
                                          ("ntech", ("b0_seq", "efficientnet_b0_seq", 224, {}))])
def test_recipe_scorers_on_the_device(recipe, entry, meta_checkpoints):
    """Selim's per-crop scores and NTechLab's windows (their b7s run in the test above; b0s here
    go through the same code in a third of the time)."""
    with fake_cuda():  # --device cuda is checked against torch.cuda.is_available, answered here
        config = InferConfig.from_dict({"recipe": recipe, "checkpoints": meta_checkpoints([entry]), "device": "cuda"})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autocast.*")
        with fake_cuda(replay=[[np.zeros((1, 5), np.float32)]] if recipe == "selim" else
                       [[np.zeros(4, np.float32)]]) as fc:
            device = torch.device("cuda")
            ensemble = Ensemble(config.checkpoints, device, amp_dtype(config.amp, device))
            if recipe == "selim":
                scorer = CropScorer(config, ensemble, device)
            else:
                scorer = WindowScorer(config, ensemble, device, get_recipe("ntech").infer_request(config, {"3d"}).windows)
            faces = []
            if recipe == "selim":  # 32 frames evenly, every face: crops of different sizes on one canvas
                for v, n in enumerate((3, 2)):
                    res = VideoFaces(key=v, path=f"v{v}.mp4")
                    res.crop_data = fc.tensor(torch.empty(n, 300, 260, 3, dtype=torch.uint8))
                    res.crops = [CropMeta(track=i, frame=0, box=[0, 0, 1, 1], offset=i, length=0,
                                          size=(300 - 40 * i, 260 - 30 * i)) for i in range(n)]
                    faces.append(res)
            else:  # 7-frame windows of 224 x 192, every other one flipped
                for v, n in enumerate((3, 1)):
                    res = VideoFaces(key=v, path=f"v{v}.mp4")
                    data = fc.tensor(torch.empty(7 * n, 224, 192, 3, dtype=torch.uint8))
                    res.windows = [([WindowMeta(track=0, index=i, frames=list(range(7)), offset=7 * i)
                                     for i in range(n)], data)]
                    faces.append(res)
            per_video = scorer.score(faces, level=0)
    assert fc.host_reads == 1 and fc.replay_left == 0
    assert [len(next(iter(p.values()))) for p in per_video] == ([3, 2] if recipe == "selim" else [3, 1])


def test_channels_last_per_tensor_rank():
    """The *_seq clip models hold 4-D and 5-D weights: model.to(memory_format=channels_last_3d)
    raised on them (the ensemble on a GPU and training with channels_last, the default)."""
    from dfdc_fast.models import to_channels_last

    with torch.device("meta"):
        model = create_model("efficientnet_b0_seq", num_classes=1)
    assert {p.dim() for p in model.parameters()} >= {4, 5}
    to_channels_last(model)
    for p in model.parameters():
        if p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d)
        elif p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
