"""Python wrappers of the native ops in ``csrc/`` (one schema, CPU and CUDA kernels)."""
from __future__ import annotations

import torch

from dfdc_fast.extension import _assert_cuda_kernels, _has_ops

__all__ = ["build_check"]


def build_check(x: torch.Tensor) -> torch.Tensor:
    """Return ``x + 1`` through the native op; proves the extension builds and dispatches.

    Args:
        x: a tensor of any shape and integer or floating dtype, on CPU or CUDA.

    Returns:
        A new tensor on ``x.device``.
    """
    _assert_cuda_kernels(x.device)
    return torch.ops.dfdc_fast.build_check(x)


if _has_ops():  # shape propagation for torch.compile / meta tensors

    @torch.library.register_fake("dfdc_fast::build_check")
    def _build_check_fake(x):
        return torch.empty_like(x)
