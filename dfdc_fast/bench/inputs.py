"""The clips the stage benchmarks run on."""
from __future__ import annotations

import glob
import os
from typing import Optional

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The DFDC sample clips beside the checkout, or $DFDC_SAMPLES.
DEFAULT_SAMPLES = os.environ.get("DFDC_SAMPLES", os.path.join(_REPO, "..", "shared", "data", "dfdc_samples"))


def sample_clips(src: str, limit: Optional[int] = None) -> list[str]:
    """The ``.mp4`` files of ``src`` in name order, the first ``limit`` of them (None: all).

    Raises ``ValueError`` when there are none, so a benchmark never times an empty run.
    """
    paths = sorted(glob.glob(os.path.join(src, "*.mp4")))[:limit]
    if not paths:
        raise ValueError(f"no .mp4 files in {src}")
    return paths
