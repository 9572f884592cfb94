"""The Medics (DFDC 5th, private LB 0.43711): seven 3D CNNs and one SE-ResNeXt50.

Extraction: MTCNN on every 10th frame, 3D-mask tracks, 256 x 256 face clips per 150-frame
chunk and 32 JPEG crops per video; fakes reuse their original's tracks. Inference (their
notebook): the first 100 frames, detection on every 10th at a long side of 480 (2x
retry), tracks of >= 30 frames ordered by score (<= 5 faces): 3D members take each
face's clip (with flip TTA), 2D members its first 32 crops (box grown 10 % a side); mean
over faces and members, clipped.

Their files are flat state dicts (``torch.save(model.state_dict())``). The 3D heads have
two classes in ``os.listdir`` order, FAKE = 0 and REAL = 1, and they scored
p_fake = 1 - P(REAL) = softmax_0; that is exactly one logit with ``w0 - w1`` and
``b0 - b1``. The 2D model already has one logit. I3D keeps their windowed head.
"""
from __future__ import annotations

import os

from dfdc_fast.engine.request import ClipSpec, CropSpec, FacesRequest
from dfdc_fast.io.selectors import First
from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign, two_class_head_to_one
from dfdc_fast.track import TrackConfig
from dfdc_fast.recipes.base import PublishedWeights, Recipe

FILES = ("j3d_e1_l0.1374.model", "res34_1cy_minaug_nonorm_e4_l0.1794.model",
         "mc3_18_112_1cy_lilaug_nonorm_e9_l0.1905.model", "mc3_18_112t224_1cy_lilaug_nonorm_e7_l0.1901.model",
         "r2p1_18_8_112tr_112te_e12_l0.1741.model", "i3dcutmix_e11_l0.1612.model",
         "r2plus1dcutmix_112_e10_l0.1608.model", "SRXT50_094_VM-0.2504.PTH")
WHERE = ("Kaggle datasets of notebook vaillant/dfdc-3d-2d-inc-cutmix-with-3d-model-fix (deepfake-detection-jph: "
         "the 7 .model files; deepfake: SRXT50_094_VM-0.2504.PTH); mirror: IQTLabs/FakeFinder weights/medics.tar.gz")

#: Published name prefix -> (model, model kwargs, key of its 2-class head or None).
#: "nonorm" in their names means "not I3D's scaling": MC3/R(2+1)D used ImageNet's, Res34 raw pixels.
MODELS = {
    "j3d_": ("i3d", {"head_pool": "windows"}, "logits.conv3d"),
    "i3dcutmix_": ("i3d", {"head_pool": "windows"}, "logits.conv3d"),
    "res34_": ("r3d_34", {}, "fc"),
    "mc3_18_112t224_": ("mc3_18_224", {}, "fc"),   # the 112 model fine-tuned at 224
    "mc3_18_112_": ("mc3_18", {}, "fc"),
    "r2p1_18_": ("r2plus1d_18", {}, "fc"),
    "r2plus1dcutmix_112_": ("r2plus1d_18", {}, "fc"),
    "SRXT50_": ("legacy_seresnext50_32x4d", {}, None),
}


def model_of(path: str) -> tuple[str, dict, str | None]:
    name = os.path.basename(path)
    prefix = max((p for p in MODELS if name.startswith(p)), key=len, default=None)
    if prefix is None:
        raise ValueError(f"{path}: not one of the Medics' file names ({', '.join(FILES)})")
    return MODELS[prefix]


def convert(path: str) -> tuple[str, Converted]:
    """One of their files as a checkpoint of the matching registered model."""
    model_name, kwargs, head = model_of(path)
    state = read_foreign(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a flat state dict, got {type(state).__name__}")
    keys = KeyMap(state, path)
    out = {}
    for key in keys.keys():
        if head is None or not key.startswith(head + "."):
            out[key] = keys.take(key)
    if head is not None:
        weight, bias = keys.take(f"{head}.weight"), keys.take(f"{head}.bias")
        flat = weight.reshape(weight.shape[0], -1)
        w, b = two_class_head_to_one(flat, bias)
        out[f"{head}.weight"], out[f"{head}.bias"] = w.reshape((1,) + tuple(weight.shape[1:])), b
    dropped = keys.finish()
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"medics_{stem}.pth", Converted(model_name, out, model_kwargs=dict(kwargs), dropped=dropped,
                                           source_dtypes=dtypes_of(state))


WEIGHTS = PublishedWeights(WHERE, FILES, convert, private_lb=0.43711)

EXTRACT_DEFAULTS = dict(every=10, detector="medics_export", track_method="mask", chunk_size=150, clip_size=256,
                        crops_per_video=32, crop_format="jpg", reuse_original="all", crop_margin=1 / 3)


def extract_request(cfg) -> FacesRequest:
    """Face clips per chunk and evenly spaced crops, from mask tracks."""
    track = TrackConfig(method=cfg.track_method, chunk_size=cfg.chunk_size, min_clip_frames=cfg.min_clip_frames)
    return FacesRequest(
        every=cfg.every, detector=cfg.detector, track=track, clips=ClipSpec(size=cfg.clip_size),
        crops=CropSpec(count=cfg.crops_per_video, margin=cfg.crop_margin,
                       encode=cfg.crop_format) if cfg.crops_per_video > 0 else None,
        reuse=cfg.reuse_original, to_host=True)


def infer_request(config, kinds: set) -> FacesRequest:
    """What the engine cuts per video for an ensemble of these member kinds ("3d", "2d")."""
    return FacesRequest(
        frames=First(config.frames), every=config.detect_every, detector=config.detector,
        retry_scale=config.retry_scale, relax_short=True,
        track=TrackConfig(min_frames=config.min_face_frames, max_frames=config.frames, min_clip_frames=1,
                          order="score", max_faces=config.max_faces),
        clips=ClipSpec(config.clip_size) if "3d" in kinds else None,
        crops=CropSpec(count=config.frames_2d, mode="first", margin=config.margin_2d, encode=None)
        if "2d" in kinds else None,
        to_host=False)


RECIPE = Recipe("medics", WEIGHTS, train_configs=("i3d", "i3d_cutmix", "r3d_34", "mc3_18", "mc3_18_224", "r2plus1d_18",
                                                  "r2plus1d_18_cutmix", "seresnext50"),
                aggregator="medics", extract_defaults=EXTRACT_DEFAULTS, extract_request=extract_request,
                infer_request=infer_request, infer_defaults={}, records_recipe=False)
