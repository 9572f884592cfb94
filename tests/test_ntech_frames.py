"""NTechLab's two frame models as their predict.py ran them: model A's crop (shorter side 192,
PadIfNeeded's reflected border, centre 224 x 192) against OpenCV's, and the alternation of
samples between model A and model B (``i % 4 < 2``), with every other sample flipped."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dfdc_fast import models as models_pkg
from dfdc_fast.crops.boxes import reflect_rows, smallest_side_crop
from dfdc_fast.crops.resize import reflect_pad
from dfdc_fast.engine.request import VideoFaces, WindowMeta
from dfdc_fast.infer.ensemble import Ensemble
from dfdc_fast.infer.pipeline import InferConfig
from dfdc_fast.infer.scorers import WindowScorer
from dfdc_fast.models.checkpoint import FORMAT, Checkpoint
from dfdc_fast.ops import crop_resize, roi_rows
from dfdc_fast.recipes import get_recipe
from dfdc_fast.recipes.ntech import FRAME_WINDOWS, LARGE_CROP_WINDOWS

needs_ops = pytest.mark.skipif(not hasattr(torch.ops.dfdc_fast, "crop_resize"), reason="native extension not built")


@pytest.mark.parametrize("start,length,size", [(0, 5, 5), (3, 4, 12), (0, 1, 4), (7, 10, 20), (2, 2, 9)])
def test_reflect_rows_is_numpy_reflect_padding(start, length, size):
    line = np.arange(100, 100 + length)
    ref = np.pad(line, (start, size - start - length), mode="reflect") if length > 1 else np.full(size, 100)
    got = 100 + reflect_rows([start], [length], size)[0] - start
    assert got.tolist() == ref.tolist()


def test_padding_is_centred_as_pad_if_needed_centres_it():
    # 150 x 100 (w x h): shorter side 100 -> 192: 288 x 192, 32 rows short of 224: 16 above, 16 below
    assert smallest_side_crop((0, 0, 150, 100), 192, (224, 192)) == (288, 192, -48, 16)
    # 129 x 130: shorter 129 -> 192 wide, 193 high: 31 rows short, PadIfNeeded puts 15 above
    nw, nh, dx, dy = smallest_side_crop((0, 0, 129, 130), 192, (224, 192))
    assert (nw, nh, dx, dy) == (192, 193, 0, 15)


def _authors_model_a(face: np.ndarray) -> np.ndarray:
    """SmallestMaxSize(192) + PadIfNeeded(224, 192) + CenterCrop(224, 192) as albumentations
    0.4 does them with OpenCV: INTER_LINEAR, BORDER_REFLECT_101, the pads' first half floored."""
    h, w = face.shape[:2]
    scale = 192 / min(h, w)
    nh, nw = int(round(h * scale)), int(round(w * scale))
    x = cv2.resize(face, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = max(0, (224 - nh) // 2), max(0, (192 - nw) // 2)
    x = cv2.copyMakeBorder(x, top, max(0, 224 - nh - top), left, max(0, 192 - nw - left), cv2.BORDER_REFLECT_101)
    y0, x0 = (x.shape[0] - 224) // 2, (x.shape[1] - 192) // 2
    return x[y0:y0 + 224, x0:x0 + 192]


@needs_ops
@pytest.mark.parametrize("window", [(40, 30, 190, 130), (10, 5, 139, 135), (60, 0, 160, 160)])
def test_model_a_window_matches_the_authors_transform(window):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:180, 0:240]
    frame = np.stack([(xx * 2 + yy) % 256, (yy * 3) % 256, (xx + 2 * yy) % 256], -1).astype(np.float64)
    frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    nw, nh, dx, dy = smallest_side_crop(window, 192, (224, 192))
    assert min(nw, nh) == 192 and max(window[2] - window[0], window[3] - window[1]) < 192  # upscaled: bilinear both
    rois = roi_rows(1, frame=0, window=window, out=(nw, nh), at=(dx, dy))
    ours = crop_resize(torch.from_numpy(frame)[None], torch.from_numpy(rois), (224, 192))
    ours = reflect_pad(ours, np.array([[dx, nw, dy, nh]]))[0].numpy().astype(np.int16)
    x0, y0, x1, y1 = window
    theirs = _authors_model_a(frame[y0:y1, x0:x1]).astype(np.int16)
    assert ours.shape == theirs.shape == (224, 192, 3)
    diff = np.abs(ours - theirs)
    assert diff.mean() < 0.6 and np.percentile(diff, 99) <= 2, (diff.mean(), diff.max())
    if dy > 0:  # the border is the picture reflected, not zeros
        assert (ours[:dy] > 0).any() and np.abs(ours[dy - 1].astype(int) - ours[dy + 1]).mean() < 2


def test_the_frame_models_take_alternate_pairs_of_samples(tmp_path, monkeypatch):
    """Model A (large_crop) gets samples 0, 1, 4, 5 ... of a track from its reflect-padded cuts,
    model B (re) 2, 3, 6, 7 ... from the centre crops; each sample flipped when its index is even."""
    roles = {"a.pth": ("large_crop", "resize_pad"), "b.pth": ("re", "resize_crop")}

    def load_model(path, device="cpu"):
        role, crop = roles[path.split("/")[-1]]
        ckpt = Checkpoint(FORMAT, "efficientnet_b0", {"num_classes": 1}, {},
                          config={"input_size": 224, "ntech_role": role, "ntech_crop": crop})
        return torch.nn.Identity(), ckpt

    monkeypatch.setattr(models_pkg, "load_model", load_model)
    paths = []
    for name in roles:
        (tmp_path / name).write_bytes(b"")
        paths.append(str(tmp_path / name))
    config = InferConfig.from_dict({"recipe": "ntech", "checkpoints": paths, "device": "cpu"})
    ensemble = Ensemble(paths, torch.device("cpu"))
    request = get_recipe("ntech").infer_request(config, ensemble.kinds)
    assert request.windows == [FRAME_WINDOWS, LARGE_CROP_WINDOWS]
    seen = {}

    def score_windows(member, x, flip):
        seen[member.name] = (x[:, 0, 0, 0, 0].tolist(), [bool(f) for f in flip])
        return torch.zeros(len(x))

    monkeypatch.setattr(ensemble, "score_windows", score_windows)
    scorer = WindowScorer(config, ensemble, torch.device("cpu"), request.windows)
    n = 7
    res = VideoFaces(key=0, path="v.mp4", tracks=[SimpleNamespace(track_id=0)])
    metas = [WindowMeta(track=0, index=i, frames=[2 * i], offset=i) for i in range(n)]
    res.windows = [(metas, torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 4, 4, 3)),  # B's cuts
                   (metas, (100 + torch.arange(n, dtype=torch.uint8)).view(n, 1, 1, 1).expand(n, 4, 4, 3))]  # A's
    per_video = scorer.score([res], level=0)
    a, b = (m.name for m in ensemble.members)
    assert seen[a] == ([100, 101, 104, 105], [True, False, True, False])
    assert seen[b] == ([2, 3, 6], [True, False, True])
    assert {k: len(v) for k, v in per_video[0].items()} == {a: 4, b: 3}


def test_a_lone_frame_model_takes_every_sample(tmp_path, monkeypatch):
    def load_model(path, device="cpu"):
        return torch.nn.Identity(), Checkpoint(FORMAT, "efficientnet_b0", {"num_classes": 1}, {},
                                               config={"ntech_role": "re", "ntech_crop": "resize_crop"})

    monkeypatch.setattr(models_pkg, "load_model", load_model)
    (tmp_path / "b.pth").write_bytes(b"")
    ensemble = Ensemble([str(tmp_path / "b.pth")], torch.device("cpu"))
    scorer = WindowScorer(None, ensemble, torch.device("cpu"), [FRAME_WINDOWS, LARGE_CROP_WINDOWS])
    (name,) = (m.name for m in ensemble.members)
    assert scorer.window_of == {name: 0} and scorer.phases == {name: None}
