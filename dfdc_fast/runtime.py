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


_NUMPY_DTYPES = {torch.bool: "bool", torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
                 torch.int32: "int32", torch.int64: "int64", torch.float16: "float16", torch.bfloat16: "float32",
                 torch.float32: "float32", torch.float64: "float64"}


def fetch(*tensors: torch.Tensor) -> list:
    """Copy several small device tensors to the host with one transfer (one host sync).

    Each ``.cpu()`` of a CUDA tensor waits for the GPU; results read back together cost
    one wait. Returns numpy arrays with the tensors' shapes and dtypes (values travel as
    float64, exact for integers below 2**53 and for float32).
    """
    import numpy as np

    if not tensors:
        return []
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    host = flat.cpu().numpy()
    out, pos = [], 0
    for t in tensors:
        n = t.numel()
        out.append(host[pos:pos + n].reshape(tuple(t.shape)).astype(_NUMPY_DTYPES[t.dtype]))
        pos += n
    return out


def to_device(array, device: torch.device | str) -> torch.Tensor:
    """A host array or tensor on ``device`` without making the host wait (a no-op on the CPU)."""
    import numpy as np

    t = torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
    return t.to(device, non_blocking=True)
