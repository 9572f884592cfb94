"""``run_extraction``: the job on the executor its config names (this process and its
workers, or a Ray cluster), above both so that neither imports the other."""
from __future__ import annotations

from dfdc_fast.extract.config import ExtractConfig
from dfdc_fast.extract.job import Extractor


def run_extraction(cfg: ExtractConfig) -> dict:
    """Run the job; returns the summary that is also written to ``OUT/summary.json``.

    Raises :class:`~dfdc_fast.extract.SettingsMismatch` when ``cfg.out`` holds outputs of
    other settings, ``RuntimeError`` when another run is writing there, and
    :class:`~dfdc_fast.files.StorageError` when the disk filled up (what was done is kept).
    """
    if cfg.executor == "ray" and not cfg.merge:
        from dfdc_fast.extract.on_ray import run_on_ray  # optional backend: the dfdc_fast[ray] extra

        return run_on_ray(cfg)
    return Extractor(cfg).run()


__all__ = ["run_extraction"]
