"""NTechLab (DFDC 3rd, private LB 0.43452): three EfficientNet-B7 of efficientnet_pytorch 0.6.3.

Their files are flat fp16 state dicts in efficientnet_pytorch's layout (``_conv_stem``,
``_blocks.N._expand_conv`` ...). The sequence model's expansion convs are (3, 1, 1)
temporal convs (``_blocks.N._expand_conv.conv.weight``) with zero temporal padding, and it
gives one logit per frame. The two frame models differ only in their crops: model A
("large_crop") resizes the shorter side to 192 and pads to 224 x 192, model B ("re")
resizes it to 224 and centre-crops. All three map onto timm ``tf_efficientnet_b7``
(flat block ``_blocks.i`` -> ``blocks.<stage>.<index>``).
"""
from __future__ import annotations

import os
import re

from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign
from dfdc_fast.recipes.base import PublishedWeights, Recipe

_RUN = "efficientnet-b7_ns_{}_100k_v4_cad79a/snapshot_100000.fp16.pth"
FILES = (_RUN.format("seq_aa-original-mstd0.5"), _RUN.format("aa-original-mstd0.5_large_crop"),
         _RUN.format("aa-original-mstd0.5_re"))
WHERE = ("their README's Google Drive link (expired, NTech-Lab/deepfake-detection-challenge issue #6); "
         "mirror: IQTLabs/FakeFinder release weights/ntech.tar.gz")
INPUT_SIZE = (224, 192)   # height x width
SEQUENCE_KWARGS = {"temporal_padding": "zeros", "output": "frames"}

_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.", "_fc.": "classifier."}
_MBCONV = {"_expand_conv.conv.": "conv_pw.", "_expand_conv.": "conv_pw.", "_bn0.": "bn1.", "_depthwise_conv.": "conv_dw.",
           "_bn1.": "bn2.", "_se_reduce.": "se.conv_reduce.", "_se_expand.": "se.conv_expand.",
           "_project_conv.": "conv_pwl.", "_bn2.": "bn3."}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_se_reduce.": "se.conv_reduce.",
                        "_se_expand.": "se.conv_expand.", "_project_conv.": "conv_pw.", "_bn2.": "bn2."}


def role_of(path: str) -> str:
    """``seq``, ``large_crop`` (frame model A) or ``re`` (frame model B), from the release's
    folder name (the three files are all called ``snapshot_100000.fp16.pth``)."""
    where = os.path.abspath(path)
    for role, pattern in (("seq", r"_seq_"), ("large_crop", r"_large_crop_"), ("re", r"_re_\d")):
        if re.search(pattern, where):
            return role
    raise ValueError(f"{path}: cannot tell which NTechLab model this is; keep the release's folder names "
                     f"({', '.join(os.path.dirname(f) for f in FILES)})")


def _block_order(sequence: bool) -> list[str]:
    """timm B7's block prefixes ``blocks.s.j.`` in efficientnet_pytorch's flat order."""
    from dfdc_fast.models import create_model
    import torch

    with torch.device("meta"):
        net = create_model("efficientnet_b7", num_classes=1)
    prefix = "net." if sequence else ""
    return [f"{prefix}blocks.{s}.{j}." for s, stage in enumerate(net.blocks) for j in range(len(stage))]


def convert(path: str) -> tuple[str, Converted]:
    """One of their files as an ``efficientnet_b7_seq`` (zero temporal padding, per-frame
    logits) or ``efficientnet_b7`` (frame models) checkpoint."""
    role = role_of(path)
    state = read_foreign(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a flat state dict, got {type(state).__name__}")
    keys = KeyMap(state, path)
    sequence = role == "seq"
    has_temporal = any(k.endswith("_expand_conv.conv.weight") for k in state)
    if has_temporal != sequence:
        raise ValueError(f"{path}: its folder says {role!r} but its expansion convs are "
                         f"{'temporal' if has_temporal else '1x1'}")
    blocks = _block_order(sequence)
    prefix = "net." if sequence else ""
    out = {}
    for key in keys.keys():
        found = re.match(r"_blocks\.(\d+)\.(.+)$", key)
        if found:
            index, rest = int(found.group(1)), found.group(2)
            if index >= len(blocks):
                raise ValueError(f"{path}: block {index} beyond B7's {len(blocks)} blocks")
            separable = f"_blocks.{index}._expand_conv.weight" not in state and \
                f"_blocks.{index}._expand_conv.conv.weight" not in state
            table = _DEPTHWISE_SEPARABLE if separable else _MBCONV
            old = next((o for o in table if rest.startswith(o)), None)
            if old is not None:
                out[blocks[index] + table[old] + rest[len(old):]] = keys.take(key)
            continue
        old = next((o for o in _TOP if key.startswith(o)), None)
        if old is not None:
            out[prefix + _TOP[old] + key[len(old):]] = keys.take(key)
    dropped = keys.finish()
    crop = {"seq": "resize_crop", "large_crop": "resize_pad", "re": "resize_crop"}[role]
    config = {"input_size": INPUT_SIZE[0], "input_hw": list(INPUT_SIZE), "ntech_role": role, "ntech_crop": crop}
    if sequence:
        converted = Converted("efficientnet_b7_seq", out, model_kwargs=dict(SEQUENCE_KWARGS), config=config,
                              dropped=dropped, source_dtypes=dtypes_of(state))
    else:
        converted = Converted("efficientnet_b7", out, config=config, dropped=dropped, source_dtypes=dtypes_of(state))
    return f"ntech_{role}.pth", converted


WEIGHTS = PublishedWeights(WHERE, FILES, convert, private_lb=0.43452)

RECIPE = Recipe("ntech", WEIGHTS, train_configs=("ntech_b7_seq",), aggregator="ntech",
                infer_defaults={"aggregator": "ntech", "detect_every": 3, "detector": "ntech_inference",
                                "min_face_frames": 7, "frames": 0})
