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
from dfdc_fast.recipes import RECIPES, get_recipe
from dfdc_fast.runtime import check_device

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "demo")
REUSE = ("none", "2d", "all")
#: What each recipe prepares (the settings it gives the fields left None) lives in its
#: module: dfdc_fast.recipes.<name>.EXTRACT_DEFAULTS.
RECIPE_DEFAULTS = {name: r.extract_defaults for name, r in RECIPES.items()}
EXECUTORS = ("local", "ray")

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
    #: What to prepare: "medics" (default), "selim" or "ntech" (a name or a dfdc_fast.recipes.Recipe);
    #: it sets the fields left None below.
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
    crop_margin: Optional[float] = None  # box growth per side of the 2D crops (all recipes: 1/3)
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
    #: Videos whose header declares bigger frames, or more frames, are refused as decode_error
    #: before decoding (defaults far above DFDC's 1920x1080x300; see FacesRequest).
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 108_000
    #: A longer video is decoded and worked on this many frames at a time, so its memory is
    #: one segment's (medics; see FacesRequest.segment_frames).
    segment_frames: int = 600
    contact_sheet: int = 12
    shard: Optional[str] = None
    #: Only merge the records of finished ``--shard`` runs into one index.csv/crops.csv/pairs.csv/summary.json.
    merge: bool = False
    #: "local": this process and its workers; "ray": actors on a Ray cluster (dfdc_fast.cluster).
    executor: str = "local"
    #: Ray cluster to join ("auto", "HOST:PORT"); None: the running one, else a local one on 127.0.0.1.
    ray_address: Optional[str] = None
    #: Ray actors; None: one per GPU of the cluster, or one per node on CPU-only clusters.
    ray_actors: Optional[int] = None
    overwrite: bool = False
    limit: Optional[int] = None  # only the first N videos (after ordering), for a quick try
    #: accept symbolic links out of a dataset folder: each resolved once, its target recorded as the path
    follow_links: bool = False
    progress: bool = True

    def __post_init__(self):
        recipe = get_recipe(self.recipe)
        self.recipe = recipe.name  # the name: the config is written as JSON
        for name, value in recipe.extract_defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        checks.integer("chunk_size", self.chunk_size, 0, none_ok=True)
        if self.chunk_size == 0:
            self.chunk_size = None  # whole tracks
        recipe.check_extract(self)
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
        for name in ("max_pending", "clip_keyint", "min_clip_frames", "max_frame_pixels", "max_frames", "segment_frames"):
            checks.integer(name, getattr(self, name), 1)
        for name in ("workers", "encoders", "limit"):
            checks.integer(name, getattr(self, name), 0, none_ok=True)
        for name in ("crops_per_video", "contact_sheet"):
            checks.integer(name, getattr(self, name), 0)
        checks.integer("chunk_size", self.chunk_size, 1, none_ok=True)
        checks.integer("threads", self.threads, 1, none_ok=True)
        checks.integer("clip_crf", self.clip_crf, 0, 51)
        checks.number("video_timeout", self.video_timeout, 0, none_ok=True)
        checks.number("crop_margin", self.crop_margin, 0, strict=False, none_ok=True)
        checks.choice("decoder", self.decoder, DECODERS)
        checks.choice("diff_dtype", self.diff_dtype, ("float64", "float32"))
        checks.choice("executor", self.executor, EXECUTORS)
        if self.executor == "ray" and self.shard:
            raise ValueError("--executor ray schedules the whole dataset itself: drop --shard")
        checks.integer("ray_actors", self.ray_actors, 1, none_ok=True)
        parse_shard(self.shard)
        check_decoder(self.decoder, check_device(self.device))

    @property
    def recipe_object(self):
        """The :class:`dfdc_fast.recipes.Recipe` this extraction runs."""
        return get_recipe(self.recipe)

    def output_settings(self) -> dict:
        out = {k: getattr(self, k) for k in OUTPUT_SETTINGS}
        if self.recipe_object.records_recipe:  # the Medics' folders keep the settings.json they always had
            out.update({k: getattr(self, k) for k in RECIPE_SETTINGS})
        return out


class SettingsMismatch(ValueError):
    """The output folder was made with other output-shaping settings."""


def settings_key(settings: dict) -> str:
    """A short fingerprint of output settings, stamped on every record made with them."""
    import hashlib

    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def check_settings(cfg: ExtractConfig) -> tuple[str, Optional[str]]:
    """Record the output-shaping settings in ``OUT/settings.json`` on a folder's first run;
    on later runs refuse different ones. ``--overwrite`` redoes everything with the new
    ones, and is recorded as in progress (``"overwrite"``: its generation) until every
    record of the folder is redone: a rerun, with or without ``--overwrite``, finishes it.
    Returns (the settings' key, the overwrite generation in progress or None)."""
    import uuid

    from dfdc_fast.files import write_json

    path = os.path.join(cfg.out, "settings.json")
    mine = json.loads(json.dumps(cfg.output_settings()))
    key = settings_key(mine)
    theirs = None
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        theirs.setdefault("recipe", "medics")
    compare = {**mine, "recipe": mine.get("recipe", "medics")}
    same = theirs is not None and all(theirs.get(k) == v for k, v in compare.items())
    generation = theirs.get("overwrite") if same else None
    if theirs is not None and not same and not cfg.overwrite:
        what = ", ".join(f"{k}: {theirs.get(k)!r} there, {v!r} now" for k, v in sorted(compare.items())
                         if theirs.get(k) != v)
        pending = " (an --overwrite with those settings is in progress: rerun it to finish)" \
            if theirs.get("overwrite") else ""
        raise SettingsMismatch(f"{cfg.out} was extracted with other settings ({what}){pending}. Rerun with --overwrite "
                               "to redo every video with the new settings, or choose another output folder (-o).")
    if cfg.overwrite and generation is None:  # a new overwrite (one in progress with these settings resumes)
        generation = uuid.uuid4().hex[:12]
    if theirs is None or generation != (theirs.get("overwrite") if same else None) or not same:
        write_json(path, {**mine, **({"overwrite": generation} if generation else {})})
    return key, generation


def finish_overwrite(cfg: ExtractConfig) -> None:
    """Mark the folder's overwrite done (every record has the new settings)."""
    from dfdc_fast.files import write_json

    write_json(os.path.join(cfg.out, "settings.json"), json.loads(json.dumps(cfg.output_settings())))


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
           "settings_key", "finish_overwrite",
           "parse_shard", "resolve_device", "asdict"]
