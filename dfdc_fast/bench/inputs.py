"""The clips the stage benchmarks run on."""
from __future__ import annotations

import glob
import os
import shutil
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


def repeated_clips(paths: list[str], count: int, folder: str) -> list[str]:
    """``count`` videos in ``folder``: the given clips repeated under distinct names
    (``r00_name.mp4``, ``r01_name.mp4``...), so a benchmark can run at a size where fixed
    costs don't dominate. Hard links where the filesystem allows (no extra disk), else
    copies; never symbolic links, which dataset discovery resolves to the original name."""
    if not paths:
        raise ValueError("no clips to repeat")
    os.makedirs(folder, exist_ok=True)
    out = []
    for i in range(count):
        src = os.path.abspath(paths[i % len(paths)])
        dst = os.path.join(folder, f"r{i // len(paths):02d}_{os.path.basename(src)}")
        if not os.path.lexists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        out.append(dst)
    return out
