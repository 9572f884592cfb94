"""The training configuration: one dataclass, YAML files in ``dfdc_fast/configs/``.

A config file names the seed model's recipe (model, clip length, optimiser, schedule,
augmentation); the CLI overrides single fields. The resolved config is saved beside the
checkpoints, and inside each of them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from dfdc_fast.errors import ConfigError

DATASETS = ("auto", "crops_csv", "pairs")
LOSSES = ("bce", "balanced_bce")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass
class TrainConfig:
    """Everything one training run needs; ``None`` fields take the model's defaults."""

    # model
    model: str = "mc3_18"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: Optional[str] = None          # a local weights file (the head is re-initialised)
    # data
    data: str = "extract_out"                 # an extraction output folder (index.csv)
    dataset: str = "auto"                     # auto (index.csv: clips for 3D, crops for 2D) | crops_csv (Selim's
                                              # crops.csv: landmarks, diffs, folds) | pairs (NTechLab's pairs.csv)
    val_fold: Optional[int] = None            # crops_csv / pairs: hold out this fold (Selim's 0 = parts 0-2)
    val_frame_every: Optional[int] = None     # validate only on crops of frames that are multiples (Selim: 20)
    frames: Optional[int] = None              # clip length; default: the model's (64 I3D, 32 others)
    input_size: Optional[int] = None          # default: the model's
    val_parts: list = field(default_factory=list)   # DFDC parts held out, e.g. [45, 46, 47, 48, 49]
    val_fraction: float = 0.1                 # used when val_parts is empty: share of original videos held out
    balance: str = "balanced"                 # "balanced" (all reals + as many fakes per epoch) | "all"
    loader: str = "auto"                      # auto | pyav | nvdec | dali
    workers: int = 2                          # pyav: DataLoader processes; nvdec: decoder processes; dali: threads
    prefetch: int = 2                         # batches decoded ahead of the step (on the device for nvdec/dali)
    # optimisation
    epochs: int = 10
    batch_size: int = 8                       # per process
    accumulate: int = 1                       # gradient accumulation steps
    optimizer: str = "adamw"                  # adamw | adam | sgd
    lr: float = 1e-4                          # peak learning rate (OneCycle max_lr)
    weight_decay: float = 1e-2
    schedule: str = "onecycle"                # onecycle | poly (Selim) | linear (NTechLab, after warm-up) | constant
    warmup_head_steps: int = 0                # first steps train only the head, backbone in eval mode (NTechLab: 100)
    loss: str = "bce"                         # bce | balanced_bce (mean of the fakes' and the reals' BCE, Selim)
    label_smoothing: float = 0.0              # training labels clipped to [s, 1 - s] (Selim: 0.01)
    pct_start: float = 0.3
    grad_clip: Optional[float] = None
    amp: str = "auto"                         # auto (bf16 on GPUs that have it, else off) | bf16 | fp16 | none
    channels_last: bool = True
    compile: bool = False
    # augmentation
    augment: dict = field(default_factory=dict)   # ClipAugment / image augment keyword arguments
    cutmix: float = 0.0                       # probability that a batch gets 3D CutMix (the Medics: 1.0)
    cutout: dict = field(default_factory=dict)  # Selim's landmark/face-half/bit-mask cut-outs (SelimCutout kwargs;
                                              # {} off; needs dataset crops_csv)
    # NTechLab's pairs (dataset: pairs)
    pair_frames: list = field(default_factory=list)  # frame indices into each 50-frame pair clip
    pair_crop: list = field(default_factory=lambda: [224, 192])  # random (train) / centre (val) crop, height x width
    pair_min_size: int = 224                  # clips resized so their shorter side is this first
    pair_reencode: dict = field(default_factory=dict)  # Reencode kwargs ({} off; NTechLab: p 0.5)
    pair_autoaugment: float = 0.0             # probability of timm's AutoAugment "original-mstd0.5" (NTechLab: 0.5)
    pair_same_aug: bool = True                # one augmentation draw for every frame of a pair (their sequence mode)
    pair_mixup: bool = True                   # input (1 - t) real + t fake, target t, t ~ Beta(0.5, 0.5)
    # run
    seed: int = 0
    out: str = "runs/train"
    resume: bool = True                       # continue from the last checkpoint in ``out`` if one exists
    max_steps_per_epoch: Optional[int] = None # cap steps per epoch (smoke tests, benchmarks)
    log_every: int = 50                       # steps between host reads of the running loss
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.warmup_head_steps < 0:
            raise ValueError(f"warmup_head_steps must be >= 0, got {self.warmup_head_steps}")
        if self.dataset == "pairs" and not self.pair_frames:
            raise ValueError("dataset pairs needs pair_frames (frame indices into each pair clip)")
        if self.cutout and self.dataset != "crops_csv":
            raise ValueError("cutout needs landmarks and diffs: dataset crops_csv (an extraction with --recipe selim)")
        if len(self.pair_crop) != 2:
            raise ValueError(f"pair_crop is (height, width), got {self.pair_crop}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Values from a YAML file or flags, converted to the fields' types (PyYAML reads
        ``1e-4`` as a string); an unknown key is refused with the key it resembles."""
        from dfdc_fast.runtime import typed_dataclass

        return typed_dataclass(cls, values)


def list_configs() -> list[str]:
    """Names of the configs shipped in the package."""
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def config_path(name_or_path: str) -> str:
    """A shipped config's name (``mc3_18``) or a YAML file path."""
    if os.path.exists(name_or_path):
        return name_or_path
    path = os.path.join(CONFIG_DIR, f"{name_or_path}.yaml")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no config {name_or_path!r}: not a file, and not one of {list_configs()}")
    return path


def load_config(name_or_path: str | None = None, overrides: Sequence[str] = (), **fields) -> TrainConfig:
    """Read a config (shipped name or YAML path), then apply ``KEY=VALUE`` ``overrides``
    (dotted keys for nested fields, see :func:`dfdc_fast.runtime.apply_overrides`), then
    ``fields`` (``None`` values ignored: flags not given)."""
    import yaml

    from dfdc_fast.runtime import apply_overrides

    values: dict = {}
    if name_or_path:
        with open(config_path(name_or_path)) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name_or_path}: expected a mapping of options")
    values = apply_overrides(values, list(overrides))
    values.update({k: v for k, v in fields.items() if v is not None})
    return TrainConfig.from_dict(values)


def save_config(config: TrainConfig, path: str) -> None:
    import yaml

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    os.replace(tmp, path)
