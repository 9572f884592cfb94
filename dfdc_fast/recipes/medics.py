"""The Medics (DFDC 5th, private LB 0.43711): seven 3D CNNs and one SE-ResNeXt50.

Their files are flat state dicts (``torch.save(model.state_dict())``). The 3D heads have
two classes in ``os.listdir`` order, FAKE = 0 and REAL = 1, and they scored
p_fake = 1 - P(REAL) = softmax_0; that is exactly one logit with ``w0 - w1`` and
``b0 - b1``. The 2D model already has one logit. I3D keeps their windowed head.
"""
from __future__ import annotations

import os

from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign, two_class_head_to_one
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

RECIPE = Recipe("medics", WEIGHTS, train_configs=("i3d", "i3d_cutmix", "r3d_34", "mc3_18", "mc3_18_224", "r2plus1d_18",
                                                  "r2plus1d_18_cutmix", "seresnext50"),
                aggregator="medics", infer_defaults={})
