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

import yaml

from dfdc_fast.errors import ConfigError
from dfdc_fast.models import list_models, model_spec
from dfdc_fast.runtime import AMP_MODES

DATASETS = ("auto", "crops_csv", "pairs")
LOSSES = ("bce", "balanced_bce")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "poly", "linear", "constant")
BALANCES = ("balanced", "all")
LOADERS = ("auto", "pyav", "nvdec", "dali")
#: settings a resumed run may change: where and how it runs, not what it learns
RUN_KEYS = ("out", "resume", "progress", "log_every", "workers", "prefetch", "loader", "compile", "checkpoint_keep")
#: settings that set a run's length: raising them extends a run (its schedule is rebuilt)
LENGTH_KEYS = ("epochs", "max_steps_per_epoch")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass
class TrainConfig:
    """Everything one training run needs; ``None`` fields take the model's defaults."""

    # model
    model: str = "mc3_18"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: Optional[str] = None          # a local weights file (the head is re-initialised)
    resume_from: Optional[str] = None         # a checkpoint whose weights (head too) start a new run
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
    resume: bool = True                       # continue from the last checkpoint in ``out`` if one exists;
                                              # False: remove the run's checkpoints and metrics, start over
    checkpoint_keep: int = 3                  # epoch_NNN.pth files kept (newest); last.pth and best.pth always
    max_steps_per_epoch: Optional[int] = None # cap steps per epoch (smoke tests, benchmarks)
    log_every: int = 50                       # steps between host reads of the running loss
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        """Every value checked before anything is read or written: one line naming the option."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        for name, allowed in (("dataset", DATASETS), ("loss", LOSSES), ("optimizer", OPTIMIZERS),
                              ("schedule", SCHEDULES), ("balance", BALANCES), ("loader", LOADERS), ("amp", AMP_MODES)):
            need(getattr(self, name) in allowed, f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "accumulate", "log_every"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("frames", "input_size", "max_steps_per_epoch"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be >= 1 (or null for the default), got {value}")
        for name in ("workers", "warmup_head_steps", "checkpoint_keep", "weight_decay"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.prefetch >= 1, f"prefetch must be >= 1, got {self.prefetch}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        need(0 < self.pct_start < 1, f"pct_start must be in (0, 1), got {self.pct_start}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 (or null: off), got {self.grad_clip}")
        need(0 <= self.cutmix <= 1, f"cutmix is a probability in [0, 1], got {self.cutmix}")
        need(0 <= self.pair_autoaugment <= 1, f"pair_autoaugment is a probability in [0, 1], got {self.pair_autoaugment}")
        need(0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        need(self.val_frame_every is None or self.val_frame_every >= 1,
             f"val_frame_every must be >= 1 (or null: every frame), got {self.val_frame_every}")
        need(not (self.pretrained and self.resume_from),
             "pretrained and resume_from both name starting weights: give one")
        for name in ("model_kwargs", "augment", "cutout", "pair_reencode"):
            check_options(name, getattr(self, name))
        need(self.dataset != "pairs" or bool(self.pair_frames),
             "dataset pairs needs pair_frames (frame indices into each pair clip)")
        need(all(isinstance(i, int) and i >= 0 for i in self.pair_frames),
             f"pair_frames are frame indices >= 0, got {self.pair_frames}")
        need(self.dataset != "pairs" or self.loader in ("auto", "pyav"),
             f"NTechLab's pairs are re-encoded and augmented in CPU workers: loader pyav, got {self.loader!r}")
        need(not self.cutout or self.dataset == "crops_csv",
             "cutout needs landmarks and diffs: dataset crops_csv (an extraction with --recipe selim)")
        need(len(self.pair_crop) == 2 and all(int(v) >= 1 for v in self.pair_crop),
             f"pair_crop is (height, width), got {self.pair_crop}")
        need(self.pair_min_size >= 1, f"pair_min_size must be >= 1, got {self.pair_min_size}")
        need(self.model in list_models(), f"unknown model {self.model!r}; registered: {', '.join(list_models())}")
        need(self.dataset != "crops_csv" or model_spec(self.model).kind == "2d",
             f"dataset crops_csv holds 2D crops, but {self.model} is a {model_spec(self.model).kind} model")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Values from a YAML file or flags, converted to the fields' types (PyYAML reads
        ``1e-4`` as a string); an unknown key is refused with the key it resembles."""
        from dfdc_fast.runtime import typed_dataclass

        return typed_dataclass(cls, values)


def check_options(name: str, options: dict) -> None:
    """A free mapping of keyword options (``model_kwargs``, ``augment``, ...): names that a
    Python keyword can have, plain YAML values; ``{"__class__": 1}`` is refused here, by name."""
    if not isinstance(options, dict):
        raise ConfigError(f"{name} must be a mapping of options, got {options!r}")
    for key, value in options.items():
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            raise ConfigError(f"{name}: {key!r} is not an option name (letters, digits and _, not starting with _)")
        if not _plain(value):
            raise ConfigError(f"{name}.{key}: expected a number, text, true/false or a list of them, got {value!r}")


def _plain(value, depth: int = 0) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)) and depth < 2:
        return all(_plain(v, depth + 1) for v in value)
    return False


def read_yaml(text: str, where: str):
    """YAML text as plain values, or one line saying why not. Anchors and aliases are refused
    before anything is built (an alias bomb would expand into the config's conversion), and
    PyYAML's safe loader refuses ``!!python/...`` tags."""
    try:
        refuse_aliases(text, where)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(problem).split())}{at}") from None


def refuse_aliases(text: str, where: str) -> None:
    """Raise when YAML ``text`` has an anchor or alias; a streaming parse, so linear in the text."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(f"{where}: YAML anchors and aliases (&name, *name) are not allowed in configs; "
                              "write the values out")


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


def read_config_file(name_or_path: str) -> dict:
    """The mapping of a config file (shipped name or path), read safely (:func:`read_yaml`)."""
    path = config_path(name_or_path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML config is expected)") from None
    values = read_yaml(text, path) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{name_or_path}: expected a mapping of options")
    return values


def load_config(name_or_path: str | None = None, overrides: Sequence[str] = (), **fields) -> TrainConfig:
    """Read a config (shipped name or YAML path), then apply ``KEY=VALUE`` ``overrides``
    (dotted keys for nested fields, see :func:`dfdc_fast.runtime.apply_overrides`), then
    ``fields`` (``None`` values ignored: flags not given)."""
    from dfdc_fast.runtime import apply_overrides

    values: dict = read_config_file(name_or_path) if name_or_path else {}
    for item in overrides:  # values are YAML too: no aliases there either (text that is not YAML stays text)
        key, _, text = item.partition("=")
        try:
            refuse_aliases(text, f"override {key}")
        except yaml.YAMLError:
            pass
    values = apply_overrides(values, list(overrides))
    values.update({k: v for k, v in fields.items() if v is not None})
    return TrainConfig.from_dict(values)


def recipe_of(config: TrainConfig) -> str:
    """Which ``extract --recipe`` prepares the data ``config`` reads."""
    return {"crops_csv": "selim", "pairs": "ntech"}.get(config.dataset, "medics")


def describe_configs() -> list[dict]:
    """One row per shipped config: name, model, input size x frames, epochs, the extraction
    recipe it needs and the first line of its comment."""
    rows = []
    for name in list_configs():
        config = load_config(name)
        spec = model_spec(config.model)
        frames = len(config.pair_frames) if config.dataset == "pairs" else (config.frames or spec.frames)
        with open(config_path(name), encoding="utf-8") as f:
            comment = next((line.lstrip("#").strip() for line in f if line.startswith("#")), "")
        rows.append({"name": name, "model": config.model, "input": f"{config.input_size or spec.input_size} x {frames}",
                     "epochs": str(config.epochs), "recipe": recipe_of(config), "description": comment})
    return rows


def config_table() -> str:
    """:func:`describe_configs` as an aligned text table."""
    rows = describe_configs()
    heads = {"name": "name", "model": "model", "input": "input x frames", "epochs": "epochs", "recipe": "recipe",
             "description": "description"}
    widths = {k: max(len(heads[k]), *(len(r[k]) for r in rows)) for k in heads if k != "description"}
    lines = ["  ".join([heads[k].ljust(w) for k, w in widths.items()] + [heads["description"]])]
    lines += ["  ".join([r[k].ljust(w) for k, w in widths.items()] + [r["description"]]) for r in rows]
    return "\n".join(lines)


def save_config(config: TrainConfig, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    os.replace(tmp, path)
