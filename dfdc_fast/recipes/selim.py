"""Selim Seferbekov (DFDC 1st, private LB 0.42798): seven EfficientNet-B7 at 380 px.

His files are ``torch.save({'epoch', 'state_dict', 'bce_best'})`` from apex DDP, so every
key starts with ``module.``; the encoder is timm's ``tf_efficientnet_b7_ns`` whose own
1000-class ``classifier`` he never used (his model pools ``forward_features`` into
``fc``). Mapped onto timm ``tf_efficientnet_b7`` with a 1-logit ``classifier``.
"""
from __future__ import annotations

import os

from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign
from dfdc_fast.recipes.base import PublishedWeights, Recipe

FILES = tuple(f"final_{seed}_DeepFakeClassifier_tf_efficientnet_b7_ns_0_{epoch}" for seed, epoch in
              (("111", 36), ("555", 19), ("777", 29), ("777", 31), ("888", 37), ("888", 40), ("999", 23)))
WHERE = ("GitHub release 0.0.1 of selimsef/dfdc_deepfake_challenge (his download_weights.sh); "
         "mirror: IQTLabs/FakeFinder release weights/selimsef.tar.gz")
INPUT_SIZE = 380
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

RECIPE = Recipe("selim", WEIGHTS, train_configs=("selim_b7",), aggregator="selim",
                infer_defaults={"aggregator": "selim", "frames": 32, "detect_every": 1, "detector": "selim_inference",
                                "max_faces": 127})
