"""Loading of the native extension ``dfdc_fast._C`` (the torchvision way).

``import dfdc_fast`` never needs the extension; code that calls a native op asks for
it with :func:`_assert_has_ops`, which raises an error saying how to build it.
"""
from __future__ import annotations

from dfdc_fast.errors import DeviceUnavailable

import functools

_BUILD_HINT = (
    "The native extension dfdc_fast._C is not built. From the repository root run "
    "`bash scripts/setup.sh` (or `python setup.py build_ext --inplace`; add FORCE_CUDA=1 "
    "to compile the CUDA kernels without a visible GPU)."
)


@functools.lru_cache(maxsize=None)
def _load() -> tuple[object | None, str | None]:
    try:
        from dfdc_fast import _C  # noqa: F401  (import registers torch.ops.dfdc_fast.*)
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return _C, None


def _has_ops() -> bool:
    """True when the native ops are registered."""
    return _load()[0] is not None


def _assert_has_ops() -> None:
    module, error = _load()
    if module is None:
        raise DeviceUnavailable(f"{_BUILD_HINT}\nImport error was: {error}")


def cuda_version() -> int:
    """CUDA runtime version the extension was compiled with (e.g. 13000), -1 for a CPU-only build."""
    _assert_has_ops()
    return int(_load()[0].cuda_version())


def _assert_cuda_kernels(device, fake: bool = False) -> None:
    """Raise a clear error when a CUDA tensor meets a CPU-only build of the extension
    (``fake``: the tensor is a fake one, which only needs the fake kernel)."""
    _assert_has_ops()
    if not fake and getattr(device, "type", str(device).split(":")[0]) == "cuda" and cuda_version() < 0:
        raise RuntimeError(
            "dfdc_fast._C was built without CUDA kernels. Rebuild on a machine with CUDA "
            "(or with FORCE_CUDA=1): `FORCE_CUDA=1 bash scripts/setup.sh`."
        )
