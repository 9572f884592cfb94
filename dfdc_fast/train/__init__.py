"""Training of the 3D and 2D detectors on extracted face clips (``python -m dfdc_fast.train``)."""
from dfdc_fast.train.config import TrainConfig, list_configs, load_config, save_config
from dfdc_fast.train.data import Sample, balanced_epoch, read_clip_index, split_samples
from dfdc_fast.train.loop import TrainResult, train

__all__ = ["Sample", "TrainConfig", "TrainResult", "balanced_epoch", "list_configs", "load_config", "read_clip_index",
           "save_config", "split_samples", "train"]
