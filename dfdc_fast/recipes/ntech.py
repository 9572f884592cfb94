"""NTechLab (DFDC 3rd, private LB 0.43452): three EfficientNet-B7 of efficientnet_pytorch 0.6.3.

Extraction: faces on every 6th frame, the IoU tracker, tracks of >= 5 detections; per REAL
track a 50-frame window with one 1.5x box, and the FAKE's aligned track cut with the same
box (pair clips). Inference (``predict.py``): frames at ~15 fps, faces on every 3rd, IoU
tracks of >= 7 detections; sequence members take 7-frame windows every 14 kept frames
(middle box x 1.5, shorter side 224, centre crop 224 x 192), frame members every 2nd
frame, two to model A ("large_crop") and the next two to model B, in turn; every other
sample flipped; every probability pooled and sharpened.

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

from dfdc_fast.engine.request import FacesRequest, PairSpec, WindowSpec
from dfdc_fast.io.selectors import First
from dfdc_fast.models.convert import Converted, KeyMap, dtypes_of, read_foreign
from dfdc_fast.track import TrackConfig
from dfdc_fast.recipes.base import PublishedWeights, Recipe

_RUN = "efficientnet-b7_ns_{}_100k_v4_cad79a/snapshot_100000.fp16.pth"
FILES = (_RUN.format("seq_aa-original-mstd0.5"), _RUN.format("aa-original-mstd0.5_large_crop"),
         _RUN.format("aa-original-mstd0.5_re"))
WHERE = ("their README's Google Drive link (expired, NTech-Lab/deepfake-detection-challenge issue #6); "
         "mirror: IQTLabs/FakeFinder release weights/ntech.tar.gz")
INPUT_SIZE = (224, 192)   # height x width
SEQUENCE_KWARGS = {"temporal_padding": "zeros", "output": "frames"}
#: predict.py decodes at ~15 fps (every round(fps / 15)-th frame).
SAMPLE_FPS = 15.0

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

EXTRACT_DEFAULTS = dict(every=6, detector="ntech_export", track_method="iou", chunk_size=0, clip_size=256,
                        crops_per_video=0, crop_format="jpg", reuse_original="none", crop_margin=1 / 3)


def extract_request(cfg) -> FacesRequest:
    """IoU tracks of >= 5 detections (their pairing rule), pair clips, nothing else."""
    track = TrackConfig(method="iou", chunk_size=None, min_detections=5, min_frames=1, max_frames=10**9,
                        min_clip_frames=cfg.pair_length)
    return FacesRequest(every=cfg.every, detector=cfg.detector, track=track,
                        pairs=PairSpec(length=cfg.pair_length, box_mult=cfg.pair_box_mult), reuse="none",
                        to_host=True)


def check_extract(cfg) -> None:
    if cfg.track_method != "iou":
        raise ValueError(f"recipe ntech pairs IoU-tracker tracks (track_method iou), got {cfg.track_method!r}")


#: The sequence model's windows: 7 kept frames every 14, shorter side 224, centre 224 x 192.
SEQUENCE_WINDOWS = WindowSpec(length=7, stride=14)
#: Frame model B's (and any other frame member's): every 2nd kept frame, cut as the sequence's.
FRAME_WINDOWS = WindowSpec(length=1, stride=2)
#: Frame model A's ("large_crop"): shorter side 192, reflect-padded to 224 x 192 (PadIfNeeded).
LARGE_CROP_WINDOWS = WindowSpec(length=1, stride=2, min_size=192, pad="reflect")


def infer_request(config, kinds: set) -> FacesRequest:
    """Sequence windows for 3D members, every 2nd frame for 2D members (both frame models'
    cuts: which member takes which is the scorer's, from each checkpoint's ``ntech_crop``),
    from IoU tracks."""
    windows = []
    if "3d" in kinds:
        windows.append(SEQUENCE_WINDOWS)
    if "2d" in kinds:
        windows += [FRAME_WINDOWS, LARGE_CROP_WINDOWS]
    track = TrackConfig(method="iou", chunk_size=None, min_detections=config.min_face_frames, min_frames=1,
                        max_frames=10**9, min_clip_frames=1)
    return FacesRequest(frames=First(config.frames) if config.frames else None, sample_fps=SAMPLE_FPS,
                        every=config.detect_every, detector=config.detector, track=track, windows=windows,
                        to_host=False)


RECIPE = Recipe("ntech", WEIGHTS, train_configs=("ntech_b7_seq",), aggregator="ntech",
                extract_defaults=EXTRACT_DEFAULTS, extract_request=extract_request, infer_request=infer_request,
                infer_defaults={"aggregator": "ntech", "detect_every": 3, "detector": "ntech_inference",
                                "min_face_frames": 7, "frames": 0},
                check_extract=check_extract, folds=True)
