"""Selim Seferbekov (DFDC 1st, private LB 0.42798): seven EfficientNet-B7 at 380 px.

Extraction (his preprocessing): MTCNN 0.85/0.95/0.95 at 0.5x on every 10th frame of the
REAL videos, fakes reusing their original's boxes; PNG crops of frames % 10 == 0, box +
a third on each side, with the detector's landmarks; SSIM diffs of each fake crop against
its original's; folds. Inference (``kernel_utils.py``): 32 frames evenly spaced, MTCNN
0.7/0.8/0.8 on each at his README's size rule, no tracking: every face cut with the same
third, letterboxed to 380, scored by every member (at most 127 faces); his confident
strategy per member, the mean over members.

His files are ``torch.save({'epoch', 'state_dict', 'bce_best'})`` from apex DDP, so every
key starts with ``module.``; the encoder is timm's ``tf_efficientnet_b7_ns`` whose own
1000-class ``classifier`` he never used (his model pools ``forward_features`` into
``fc``). Mapped onto timm ``tf_efficientnet_b7`` with a 1-logit ``classifier``.
"""
from __future__ import annotations

import os

from dfdc_fast.engine.request import CropSpec, DiffSpec, FacesRequest
from dfdc_fast.io.selectors import Evenly
from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign
from dfdc_fast.track import TrackConfig
from dfdc_fast.recipes.base import PublishedWeights, Recipe

FILES = tuple(f"final_{seed}_DeepFakeClassifier_tf_efficientnet_b7_ns_0_{epoch}" for seed, epoch in
              (("111", 36), ("555", 19), ("777", 29), ("777", 31), ("888", 37), ("888", 40), ("999", 23)))
WHERE = ("GitHub release 0.0.1 of selimsef/dfdc_deepfake_challenge (his download_weights.sh); "
         "mirror: IQTLabs/FakeFinder release weights/selimsef.tar.gz")
INPUT_SIZE = 380
#: His crop: the box grown by a third of its width and height on each side (training and inference).
MARGIN = 1 / 3
_METADATA = ("epoch", "bce_best")


def convert(path: str) -> tuple[str, Converted]:
    """One of his files as an ``efficientnet_b7`` checkpoint (``<file name>.pth``)."""
    obj = read_foreign(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ValueError(f"{path}: expected his training checkpoint, a dict with 'state_dict', 'epoch', 'bce_best'")
    unknown = sorted(set(obj) - {"state_dict", *_METADATA})
    if unknown:
        raise ValueError(f"{path}: unexpected entries {unknown} beside 'state_dict' (not one of his files?)")
    keys = KeyMap(obj["state_dict"], path)
    out = {}
    for key in keys.keys():
        name = key.removeprefix("module.")
        if name.startswith("encoder.classifier."):
            keys.drop(key, "the encoder's ImageNet head: his model pools forward_features into fc")
        elif name.startswith("encoder."):
            out[name.removeprefix("encoder.")] = keys.take(key)
        elif name in ("fc.weight", "fc.bias"):
            out["classifier." + name.removeprefix("fc.")] = keys.take(key)
    dropped = keys.finish()
    converted = Converted("efficientnet_b7", out, config={"input_size": INPUT_SIZE}, dropped=dropped,
                          metadata={k: obj[k] for k in _METADATA if k in obj},
                          source_dtypes=dtypes_of(obj["state_dict"]))
    return os.path.basename(path) + ".pth", converted


WEIGHTS = PublishedWeights(WHERE, FILES, convert, private_lb=0.42798)

EXTRACT_DEFAULTS = dict(every=10, detector="selim_export", track_method="mask", chunk_size=0, clip_size=256,
                        crops_per_video=0, crop_format="png", reuse_original="all", crop_margin=MARGIN)


def extract_request(cfg) -> FacesRequest:
    """Crops of every 10th frame of every track (his frame % 10 == 0), at native size, kept
    as images so the fakes' SSIM diffs use the exact pixels the PNG files hold."""
    track = TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size, min_clip_frames=cfg.min_clip_frames)
    return FacesRequest(
        every=cfg.every, detector=cfg.detector, track=track,
        crops=CropSpec(count=1, mode="every", every=cfg.crop_every, margin=cfg.crop_margin, encode=None),
        diffs=DiffSpec(cfg.diff_dtype), reuse=cfg.reuse_original, to_host=True)


def check_extract(cfg) -> None:
    if cfg.crop_format != "png":
        raise ValueError("recipe selim stores PNG crops (lossless, as Selim did: the SSIM diffs of a resumed run "
                         f"are computed against them), got crop_format {cfg.crop_format!r}")
    if cfg.reuse_original == "none":
        raise ValueError("recipe selim needs fakes to reuse their original's boxes (reuse_original 2d or all): "
                         "the SSIM diffs compare crops of the same box")


def infer_request(config, kinds: set) -> FacesRequest:
    """Every detected face of the evenly spaced frames, box + a third, no tracking."""
    if kinds != {"2d"}:
        raise ValueError(f"recipe selim scores 2D face crops: its checkpoints must be 2D models, got {sorted(kinds)}")
    return FacesRequest(frames=Evenly(config.frames), every=config.detect_every, detector=config.detector,
                        track=None, crops=CropSpec(count=1, mode="detections", margin=MARGIN, encode=None),
                        to_host=False)


RECIPE = Recipe("selim", WEIGHTS, train_configs=("selim_b7",), aggregator="selim",
                extract_defaults=EXTRACT_DEFAULTS, extract_request=extract_request, infer_request=infer_request,
                infer_defaults={"aggregator": "selim", "frames": 32, "detect_every": 1, "detector": "selim_inference",
                                "max_faces": 127},
                check_extract=check_extract, landmarks=True, folds=True)
