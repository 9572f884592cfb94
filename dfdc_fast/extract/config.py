"""The extraction job's settings, and the check that a rerun does not mix settings."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from dfdc_fast import checks
from dfdc_fast.detect import PRESETS
from dfdc_fast.io import DECODERS, check_decoder
from dfdc_fast.runtime import check_device

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "demo")
REUSE = ("none", "2d", "all")
RECIPES = ("medics", "selim", "ntech")

#: What each recipe prepares, as the settings it gives the fields left unset (None). The
#: Medics' (the default) cuts 256x256 face clips per 150-frame chunk and 32 JPEG crops;
#: Selim's cuts PNG crops of every 10th frame of every track with landmarks, SSIM diffs
#: for fakes and folds (crops.csv); NTechLab's tracks faces with the IoU tracker on every
#: 6th frame and cuts aligned 50-frame REAL/FAKE pair clips (pairs.csv).
RECIPE_DEFAULTS = {
    "medics": dict(every=10, detector="medics_export", track_method="mask", chunk_size=150, clip_size=256,
                   crops_per_video=32, crop_format="jpg", reuse_original="2d"),
    "selim": dict(every=10, detector="selim_export", track_method="mask", chunk_size=0, clip_size=256,
                  crops_per_video=0, crop_format="png", reuse_original="2d"),
    "ntech": dict(every=6, detector="ntech_export", track_method="iou", chunk_size=0, clip_size=256,
                  crops_per_video=0, crop_format="jpg", reuse_original="none"),
}

#: Settings that change what the outputs contain. A rerun into a folder made with other
#: values of these would mix two kinds of outputs, so it is refused (see SettingsMismatch).
OUTPUT_SETTINGS = ("every", "detector", "track_method", "chunk_size", "clip_size", "min_clip_frames", "clip_crf",
                   "clip_keyint", "crops_per_video", "crop_margin", "crop_format", "reuse_original")
#: Extra output-shaping settings of the recipes other than the Medics' (recorded only for them).
RECIPE_SETTINGS = ("recipe", "pair_length", "pair_box_mult", "crop_every", "diff_dtype")


@dataclass
class ExtractConfig:
    """Options of the extraction job (the CLI maps its flags onto these)."""

    inputs: list = field(default_factory=lambda: [DEMO_DIR])
    out: str = "extract_out"
    #: What to prepare: "medics" (default), "selim" or "ntech"; it sets the fields left None below.
    recipe: str = "medics"
    every: Optional[int] = None
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    decoder: str = "auto"
    workers: Optional[int] = None  # engine worker processes; None: one per NVDEC engine / CPU core; 0: in-process
    threads: Optional[int] = None  # torch + decoder threads per worker; None: cores / workers
    encoders: Optional[int] = None  # encoder processes; None: the cores the workers leave, at least 2; 0: inline
    video_timeout: Optional[float] = 600.0
    detector: Optional[str] = None
    track_method: Optional[str] = None
    chunk_size: Optional[int] = None  # 0: whole tracks
    clip_size: Optional[int] = None
    min_clip_frames: int = 64
    clip_crf: int = 18
    clip_keyint: int = 16
    crops_per_video: Optional[int] = None
    crop_margin: float = 1 / 3
    crop_format: Optional[str] = None
    reuse_original: Optional[str] = None
    #: selim: crops at frames that are multiples of this (None: ``every``, his frame % 10 == 0).
    crop_every: Optional[int] = None
    #: selim: floating point type of the SSIM formula (float64 as skimage).
    diff_dtype: str = "float64"
    #: ntech: frames per pair clip and the box growth (their 50 and 1.5).
    pair_length: int = 50
    pair_box_mult: float = 1.5
    max_pending: int = 4
    contact_sheet: int = 12
    shard: Optional[str] = None
    overwrite: bool = False
    limit: Optional[int] = None  # only the first N videos (after ordering), for a quick try
    #: accept symbolic links out of a dataset folder: each resolved once, its target recorded as the path
    follow_links: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        for name, value in RECIPE_DEFAULTS[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        checks.integer("chunk_size", self.chunk_size, 0, none_ok=True)
        if self.chunk_size == 0:
            self.chunk_size = None  # whole tracks
        if self.recipe == "selim" and self.crop_format != "png":
            raise ValueError("recipe selim stores PNG crops (lossless, as Selim did: the SSIM diffs of a resumed run "
                             f"are computed against them), got crop_format {self.crop_format!r}")
        if self.recipe == "selim" and self.reuse_original == "none":
            raise ValueError("recipe selim needs fakes to reuse their original's boxes (reuse_original 2d or all): "
                             "the SSIM diffs compare crops of the same box")
        if self.recipe == "ntech" and self.track_method != "iou":
            raise ValueError(f"recipe ntech pairs IoU-tracker tracks (track_method iou), got {self.track_method!r}")
        checks.integer("pair_length", self.pair_length, 1)
        checks.number("pair_box_mult", self.pair_box_mult, 0)
        checks.integer("crop_every", self.crop_every, 1, none_ok=True)
        checks.integer("every", self.every, 1)
        if self.reuse_original not in REUSE:
            raise ValueError(f"reuse_original must be one of {REUSE}, got {self.reuse_original!r}")
        if self.detector not in PRESETS:
            raise ValueError(f"detector must be one of {sorted(PRESETS)}, got {self.detector!r}")
        if self.crop_format not in ("jpg", "png"):
            raise ValueError(f"crop_format must be jpg or png, got {self.crop_format!r}")
        if self.clip_size < 2 or self.clip_size % 2:
            raise ValueError(f"--clip-size must be even and >= 2 (H.264 4:2:0), got {self.clip_size}")
        for name in ("max_pending", "clip_keyint", "min_clip_frames"):
            checks.integer(name, getattr(self, name), 1)
        for name in ("workers", "encoders", "limit"):
            checks.integer(name, getattr(self, name), 0, none_ok=True)
        for name in ("crops_per_video", "contact_sheet"):
            checks.integer(name, getattr(self, name), 0)
        checks.integer("chunk_size", self.chunk_size, 1, none_ok=True)
        checks.integer("threads", self.threads, 1, none_ok=True)
        checks.integer("clip_crf", self.clip_crf, 0, 51)
        checks.number("video_timeout", self.video_timeout, 0, none_ok=True)
        checks.number("crop_margin", self.crop_margin, 0, strict=False)
        checks.choice("decoder", self.decoder, DECODERS)
        checks.choice("diff_dtype", self.diff_dtype, ("float64", "float32"))
        parse_shard(self.shard)
        check_decoder(self.decoder, check_device(self.device))

    def output_settings(self) -> dict:
        out = {k: getattr(self, k) for k in OUTPUT_SETTINGS}
        if self.recipe != "medics":  # the Medics' folders keep the settings.json they always had
            out.update({k: getattr(self, k) for k in RECIPE_SETTINGS})
        return out


class SettingsMismatch(ValueError):
    """The output folder was made with other output-shaping settings."""


def check_settings(cfg: ExtractConfig) -> None:
    """Record the output-shaping settings in ``OUT/settings.json`` on a folder's first run;
    on later runs refuse different ones (``--overwrite`` redoes everything with the new ones)."""
    from dfdc_fast.files import write_json

    path = os.path.join(cfg.out, "settings.json")
    mine = json.loads(json.dumps(cfg.output_settings()))
    if os.path.exists(path) and not cfg.overwrite:
        with open(path) as f:
            theirs = json.load(f)
        theirs.setdefault("recipe", "medics")
        mine.setdefault("recipe", "medics")
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in sorted(diff.items()))
            raise SettingsMismatch(f"{cfg.out} was extracted with other settings ({what}). Rerun with --overwrite to "
                                   "redo every video with the new settings, or choose another output folder (-o).")
        return
    write_json(path, mine)


def parse_shard(shard: Optional[str]) -> tuple[int, int]:
    """``"i/N"`` → (i, N); else the torchrun rank (RANK/WORLD_SIZE); else (0, 1)."""
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {shard!r}: need 0 <= i < N")
        return i, n
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    return device


__all__ = ["DEMO_DIR", "REUSE", "RECIPES", "RECIPE_DEFAULTS", "OUTPUT_SETTINGS", "ExtractConfig", "SettingsMismatch", "check_settings",
           "parse_shard", "resolve_device", "asdict"]
