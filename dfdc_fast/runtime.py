"""Process-wide settings the command-line jobs apply before they start.

Kept out of ``import dfdc_fast``: a library should not change its host's allocator, but
the jobs own their process. Also the device-capability helpers every job shares.
"""
from __future__ import annotations

import os

import torch

AMP_MODES = ("auto", "bf16", "fp16", "none")


def tune_host_allocator() -> None:
    """Back large CPU tensors with transparent huge pages (unless the user decided otherwise).

    A decoded 1080p clip is one ~1.9 GB tensor; filling fresh 4 KiB pages costs one page
    fault each, which made CPU decoding ~20% slower than it needs to be. PyTorch's CPU
    allocator madvises huge pages for large blocks when THP_MEM_ALLOC_ENABLE=1 (read at
    allocation time). Set THP_MEM_ALLOC_ENABLE=0 to keep the default.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` ("auto": bf16 on GPUs that support it, else none)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {mode!r}")
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[mode]
