"""Rehearse the GPU path on a machine without a GPU: CUDA tensors that carry no data.

Most failures a first GPU run finds are not numerical: a tensor left on the CPU, a host
read nobody planned, a dtype or shape that differs. All of them show on *fake* CUDA tensors
(``FakeTensorMode``: shapes, dtypes and devices, no data), so CI can run every stage with
``device="cuda"``:

    with record_fetches() as reads:               # a real CPU run records its deliberate reads
        cpu_result = stage(cpu_inputs, device="cpu")
    with fake_cuda(replay=reads) as fc:
        frames = fc.tensor(cpu_frames)            # fake CUDA tensor, same shape/dtype/strides
        model = fc.module(model)                  # parameters and buffers to fake CUDA, in place
        stage(frames, device="cuda")
    fc.host_reads, fc.counter.kernels             # fetches answered; ops on CUDA tensors (launches)

Inside, tensors on the CPU are real (host bookkeeping runs as it would), CUDA ones are
fake. The block fails on: a CPU tensor meeting a CUDA one (``FakeTensorDeviceMismatchError``),
a host read of a CUDA tensor outside :func:`dfdc_fast.runtime.fetch` (``.item()``,
``.cpu()``, ``.tolist()``, ``.numpy()``, ``nonzero``, boolean-mask indexing, data-dependent
shapes: :class:`HostReadError`), and shape/dtype errors of any op, the native ones included
(their fake kernels check what the real ones check). ``fetch`` answers from ``replay``, the
reads a CPU run of the same code on the same inputs recorded, in order; a read beyond the
recording, or one whose shapes or dtypes differ, raises :class:`ReplayError`.

``torch.cuda``'s runtime calls (streams, events, ``synchronize``, ``is_available``, pinned
memory) are answered by stand-ins while the block runs; a copy from a CUDA tensor into
pinned host memory made inside the block is the one bulk read allowed (``fc.bulk_reads``;
it leaves the host buffer zero). Known limits: backward does not run on fake tensors in
the eager autograd engine; ``autocast("cuda")`` is switched off (bf16 is not covered);
NVDEC's decode and DALI's graph cannot run.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException, FakeTensor,
                                           FakeTensorMode)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_leaves, tree_map_only

from dfdc_fast import runtime
from dfdc_fast.bench.counting import SYNC_OPS, OpCounter, _has_bool_index, _patched

aten = torch.ops.aten

def _fused_sgd_meta(params, grads, momentum_buffers, *, weight_decay, momentum, lr, dampening, nesterov, maximize,
                    is_first_step, grad_scale=None, found_inf=None):
    """torch has no fake kernel for the fused SGD step (it has one for fused Adam/AdamW): the
    checks of its CUDA kernel, in place, nothing returned."""
    torch._check(len(params) == len(grads), lambda: "_fused_sgd_: as many gradients as parameters")
    torch._check(not momentum or len(momentum_buffers) == len(params),
                 lambda: "_fused_sgd_: as many momentum buffers as parameters")
    for i, (p, g) in enumerate(zip(params, grads)):
        torch._check(p.device == g.device and p.shape == g.shape and p.dtype == g.dtype,
                     lambda: f"_fused_sgd_: parameter {i} and its gradient differ: {p.device} {p.dtype} "
                             f"{tuple(p.shape)} and {g.device} {g.dtype} {tuple(g.shape)}")
        if momentum_buffers:
            b = momentum_buffers[i]
            torch._check(b.device == p.device and b.shape == p.shape,
                         lambda: f"_fused_sgd_: momentum buffer {i} is not like its parameter")


def _register_nvjpeg_fake() -> None:
    """torchvision's nvJPEG encoder has no fake kernel. Its outputs' sizes depend on the pixels,
    so on a GPU it waits for the device (the router counts it as a sync); here each image gets
    a tenth of its raw size, which is about what JPEG at quality 90 makes of a face."""
    try:
        import torchvision.io  # noqa: F401  (registers torch.ops.image)
        op = torch.ops.image.encode_jpegs_cuda
    except (ImportError, AttributeError, RuntimeError):
        return
    if getattr(_register_nvjpeg_fake, "done", False):
        return

    @torch.library.register_fake("image::encode_jpegs_cuda")
    def _encode_jpegs_cuda(images, quality):
        for im in images:
            torch._check(im.dtype == torch.uint8 and im.dim() == 3 and im.shape[0] in (1, 3),
                         lambda: f"encode_jpegs_cuda: expected uint8 (C, H, W) images, got {im.dtype} {tuple(im.shape)}")
            torch._check(im.device.type == "cuda", lambda: "encode_jpegs_cuda: images must be on a CUDA device")
        return [im.new_empty((max(1, im.numel() // 10),)) for im in images]

    _register_nvjpeg_fake.done = op is not None


#: Library ops whose outputs' sizes the host learns from the device: each call is a host sync.
_SIZE_SYNC_OPS = {"image::encode_jpegs_cuda"}

_FUSED_SGD_LIB = torch.library.Library("aten", "IMPL")
_FUSED_SGD_LIB.impl("_fused_sgd_", _fused_sgd_meta, "Meta")
_FUSED_SGD_LIB.impl("_fused_sgd_.tensor_lr", _fused_sgd_meta, "Meta")

__all__ = ["FakeCuda", "HostReadError", "ReplayError", "fake_cuda", "record_fetches"]


class HostReadError(RuntimeError):
    """A CUDA tensor's data was read on the host outside ``runtime.fetch`` (an unbudgeted sync)."""


class ReplayError(RuntimeError):
    """A ``fetch`` under ``fake_cuda`` that the recording does not answer (one too many, or other shapes)."""


@contextlib.contextmanager
def record_fetches() -> Iterator[list]:
    """Record every :func:`dfdc_fast.runtime.fetch` of the block (a list of lists of numpy arrays)."""
    reads: list = []

    def hook(tensors):
        out = runtime.read_to_host(tensors)
        reads.append([a.copy() for a in out])
        return out

    runtime.FETCH_HOOKS.append(hook)
    try:
        yield reads
    finally:
        runtime.FETCH_HOOKS.remove(hook)


@contextlib.contextmanager
def fake_cuda(replay: list | None = None) -> Iterator["FakeCuda"]:
    """A block where ``device="cuda"`` tensors exist without a GPU (see the module's docstring)."""
    fc = FakeCuda(replay)
    with fc:
        yield fc


class FakeCuda:
    """State of one :func:`fake_cuda` block: the fake mode, the counter, the replayed reads."""

    def __init__(self, replay: list | None = None):
        self.replay = list(replay) if replay is not None else None
        self.mode = _NoDeviceFakeMode(allow_non_fake_inputs=True)
        #: ops on CUDA tensors (each about one kernel launch) and host syncs, as OpCounter counts them
        self.counter = OpCounter(device_type="cuda")
        #: ``fetch`` calls answered (each is one host sync on a GPU)
        self.host_reads = 0
        #: copies from CUDA into pinned host memory (the engine's one output transfer per video)
        self.bulk_reads = 0
        self._pinned: set[int] = set()  # storages of host memory pinned inside the block
        self._active = False
        self._stack = contextlib.ExitStack()

    # ---- what a test uses ---------------------------------------------------------------

    def tensor(self, like, device: str | torch.device = "cuda") -> torch.Tensor:
        """A fake tensor on ``device`` with the shape, dtype and strides of ``like`` (tensor or array)."""
        if isinstance(like, np.ndarray):
            like = torch.from_numpy(np.ascontiguousarray(like))
        with self._inside():
            return torch.empty_strided(tuple(like.shape), tuple(like.stride()), dtype=like.dtype, device=device)

    def module(self, module: torch.nn.Module, device: str | torch.device = "cuda") -> torch.nn.Module:
        """``module`` with its parameters and buffers on fake ``device`` (converted in place)."""
        with self._inside():
            return module.to(device)

    def is_pinned(self, t: torch.Tensor) -> bool:
        """Whether ``t`` lies in host memory pinned inside the block."""
        return not isinstance(t, FakeTensor) and t.device.type == "cpu" and t.untyped_storage().data_ptr() in self._pinned

    @property
    def replay_left(self) -> int:
        """Recorded reads not asked for (a test may want 0: the GPU path read what the CPU one did)."""
        return len(self.replay) - self._next if self.replay is not None else 0

    # ---- the block ------------------------------------------------------------------------

    def _inside(self):
        return contextlib.nullcontext() if self._active else self

    def __enter__(self) -> "FakeCuda":
        _register_nvjpeg_fake()
        self._next, self._active = 0, True
        stack = self._stack
        stack.callback(setattr, self, "_active", False)
        previous_swap = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(False)  # fakes cannot be swapped into real params
        stack.callback(torch.__future__.set_swap_module_params_on_conversion, previous_swap)
        stack.enter_context(self.mode)
        stack.enter_context(_Router(self))
        stack.enter_context(self.counter)
        stack.enter_context(_GeneratorCheck())
        for owner, name, value in self._runtime_stand_ins():
            stack.enter_context(_patched(owner, name, value))
        runtime.FETCH_HOOKS.append(self._fetch)
        stack.callback(runtime.FETCH_HOOKS.remove, self._fetch)
        return self

    def __exit__(self, *exc):
        try:
            return self._stack.__exit__(*exc)
        finally:
            _drop_fake_cache_entries()

    def _fetch(self, tensors) -> list:
        self.host_reads += 1
        self.counter._sync("runtime.fetch")
        runtime.pack_for_fetch(tensors)  # the device side of a fetch: one device, and its kernels counted
        if self.replay is None:
            raise ReplayError("fetch under fake_cuda(replay=None): pass the reads a CPU run recorded "
                              "(record_fetches) to answer it")
        if self._next >= len(self.replay):
            raise ReplayError(f"fetch #{self._next + 1} under fake_cuda, but the CPU run recorded {len(self.replay)}")
        recorded = self.replay[self._next]
        got = [(tuple(t.shape), np.dtype(runtime._NUMPY_DTYPES[t.dtype])) for t in tensors]
        want = [(a.shape, a.dtype) for a in recorded]
        if got != want:
            raise ReplayError(f"fetch #{self._next + 1}: asked for {_describe(got)}, the CPU run read {_describe(want)}")
        self._next += 1
        return [a.copy() for a in recorded]

    def _runtime_stand_ins(self):
        cuda = torch.cuda
        debug = {"mode": 0}
        return [
            (cuda, "is_available", lambda: True),
            (cuda, "device_count", lambda: 1),
            (cuda, "current_device", lambda: 0),
            (cuda, "set_device", lambda device: None),
            (cuda, "synchronize", lambda device=None: self.counter._sync("cuda.synchronize")),
            (cuda, "empty_cache", lambda: None),
            (cuda, "max_memory_allocated", lambda device=None: 0),
            (cuda, "reset_peak_memory_stats", lambda device=None: None),
            (cuda, "is_bf16_supported", lambda including_emulation=True: True),
            (cuda, "get_device_name", lambda device=None: "fake CUDA"),
            (cuda, "get_sync_debug_mode", lambda: debug["mode"]),
            (cuda, "set_sync_debug_mode", lambda mode: debug.update(mode=mode)),
            (cuda, "get_rng_state", lambda device="cuda": torch.zeros(16, dtype=torch.uint8)),
            (cuda, "set_rng_state", lambda state, device="cuda": None),
            (cuda, "Stream", _Stream.factory(self)),
            (cuda, "Event", _Event.factory(self)),
            (cuda, "current_stream", lambda device=None: _Stream(self)),
            (cuda, "default_stream", lambda device=None: _Stream(self)),
            (cuda, "stream", lambda stream: contextlib.nullcontext(stream)),
            (cuda, "device", lambda device: contextlib.nullcontext(device)),
            (torch, "load", _real_load(torch.load, self)),
            (torch, "Generator", _Generator),
            # Module._apply swaps a fake parameter's tensor (which the fake mode's weak references
            # forbid) where it sets .data of a real one: model.to(device) then
            # model.to(memory_format=...) must work as on a GPU
            (torch.utils, "swap_tensors", _swap_or_set_data(torch.utils.swap_tensors)),
            (torch.Tensor, "record_stream", _record_stream),
            (torch.Tensor, "numpy", _guarded_numpy(torch.Tensor.numpy)),
            (torch.Tensor, "pin_memory", _pin_memory(self)),
            (torch.Tensor, "is_pinned", lambda t, device=None: self.is_pinned(t)),
        ]


class _NoDeviceFakeMode(FakeTensorMode):
    """FakeTensorMode that knows there is no device, although ``torch.cuda.is_available`` says so in the block."""

    @property
    def avoid_device_init(self) -> bool:
        return True


class _Router(TorchDispatchMode):
    """Runs ops on real CPU tensors for real, sends the rest to the fake mode, stops host reads."""

    def __init__(self, fc: FakeCuda):
        super().__init__()
        self.fc = fc

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = tree_leaves((args, kwargs))
        fakes = [t for t in leaves if isinstance(t, FakeTensor)]
        pinned = bool(kwargs.get("pin_memory"))
        if not fakes and not _to_cuda(kwargs):
            if pinned:  # host memory pinned for the device: real, and remembered as pinned
                kwargs = {**kwargs, "pin_memory": False}
            with _disable_current_modes():
                out = func(*args, **kwargs)
            if pinned and isinstance(out, torch.Tensor):
                self.fc._pinned.add(out.untyped_storage().data_ptr())
            return out
        if func is aten.to.dtype_layout and not fakes:
            # Under inference_mode a host tensor's .to("cuda") arrives as aten.to itself, which the
            # fake mode would constant-fold into a real copy to the missing GPU: make it the
            # _to_copy the fake mode knows to keep fake.
            func, kwargs = aten._to_copy.default, {k: v for k, v in kwargs.items() if k != "copy"}
        name = str(func.overloadpacket.__name__)
        if func.name().split(".")[0] in _SIZE_SYNC_OPS:
            self.fc.counter._sync(name)
        if func is aten.copy_.default and isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu" \
                and args[1].device.type == "cuda":
            return self._bulk_read(args[0])
        if func is aten._to_copy.default and args[0].device.type == "cuda" and _device(kwargs) == "cpu":
            raise HostReadError(f"{name}: a CUDA tensor {_shape(args[0])} copied to the host outside runtime.fetch")
        if func in SYNC_OPS or (func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                                          aten._index_put_impl_.default) and _has_bool_index(args)):
            raise HostReadError(f"{name} of a device tensor: its result needs the data on the host "
                                "(an unbudgeted sync); read deliberately with runtime.fetch")
        try:
            return func(*args, **kwargs)
        except (DataDependentOutputException, DynamicOutputShapeException) as exc:
            raise HostReadError(f"{name} of a device tensor depends on its data (an unbudgeted sync): {exc}") from None

    def _bulk_read(self, host: torch.Tensor) -> torch.Tensor:
        if not self.fc.is_pinned(host):
            raise HostReadError(f"copy_ of a CUDA tensor into pageable host memory {_shape(host)}: "
                                "outside runtime.fetch only a copy into pinned memory is planned")
        self.fc.bulk_reads += 1
        with _disable_current_modes():
            return host.zero_()


_REAL_GENERATOR = torch.Generator


class _Generator(_REAL_GENERATOR):
    """``torch.Generator`` in the block: a CUDA one is a CPU generator that says it is on CUDA
    (fake ops take any generator; the router checks that its device is the op's)."""

    def __new__(cls, device="cpu"):
        self = _REAL_GENERATOR.__new__(cls, "cpu")
        self._device = torch.device(device)
        return self

    @property
    def device(self) -> torch.device:
        return self._device


class _GeneratorCheck(TorchFunctionMode):
    """A generator must be on the device it draws for (torch refuses the mix on a GPU); the
    dispatcher sees a fake CUDA generator as the CPU one it is, so this is checked here."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        g = kwargs.get("generator")
        if g is not None:
            device = kwargs.get("device")
            if device is None:
                device = next((t.device for t in tree_leaves(args) if isinstance(t, torch.Tensor)), "cpu")
            if torch.device(device).type != g.device.type:
                raise RuntimeError(f"{getattr(func, '__name__', func)}: a {g.device.type} generator draws for a "
                                   f"{torch.device(device).type} tensor (torch refuses this on a GPU)")
        return func(*args, **kwargs)


class _Stream:
    """Stand-in for ``torch.cuda.Stream``: ordering is what a fake cannot check; waits are counted."""

    def __init__(self, fc: FakeCuda, device=None, priority: int = 0):
        self.fc, self.device = fc, torch.device("cuda", 0)
        self.cuda_stream = 0  # the raw handle a decoder library would be given

    @staticmethod
    def factory(fc: FakeCuda):
        return lambda device=None, priority=0: _Stream(fc, device, priority)

    def synchronize(self) -> None:
        self.fc.counter._sync("Stream.synchronize")

    def wait_stream(self, stream) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def record_event(self, event=None):
        return event if event is not None else _Event(self.fc)

    def query(self) -> bool:
        return True


class _Event:
    def __init__(self, fc: FakeCuda, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        self.fc = fc

    @staticmethod
    def factory(fc: FakeCuda):
        return lambda enable_timing=False, blocking=False, interprocess=False: _Event(fc)

    def record(self, stream=None) -> None:
        pass

    def wait(self, stream=None) -> None:
        pass

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        self.fc.counter._sync("Event.synchronize")

    def elapsed_time(self, other) -> float:
        return 0.0


def _drop_fake_cache_entries() -> None:
    """Libraries cache device tensors by (dtype, device) (kornia's JPEG tables and DCT basis):
    fakes left there would meet the next block's fake mode, or real code."""
    import sys

    jpeg = sys.modules.get("kornia.enhance.jpeg")
    for cache in (getattr(jpeg, "_DEFAULT_QT_CACHE", None), getattr(jpeg, "_DCT8_CACHE", None)):
        if isinstance(cache, dict):
            for key in [k for k, v in cache.items() if any(isinstance(t, FakeTensor) for t in tree_leaves(v))]:
                del cache[key]


def _real_load(original, fc: FakeCuda):
    """``torch.load`` as outside the block (a fake mode would make every loaded tensor fake):
    a checkpoint is host data; one mapped to CUDA comes out as fake CUDA tensors."""
    def load(f, map_location=None, *a, **k):
        to_cuda = map_location is not None and not callable(map_location) and not isinstance(map_location, dict) \
            and torch.device(map_location).type == "cuda"
        with _disable_current_modes():
            out = original(f, *a, map_location="cpu" if to_cuda else map_location, **k)
        if not to_cuda:
            return out
        return tree_map_only(torch.Tensor, lambda t: t.to(map_location), out)
    return load


def _swap_or_set_data(original):
    def swap_tensors(t1, t2):
        if isinstance(t1, FakeTensor) and isinstance(t2, FakeTensor):
            with torch.no_grad():
                t1.data = t2.detach()
            return
        original(t1, t2)
    return swap_tensors


def _record_stream(t: torch.Tensor, stream) -> None:
    if t.device.type != "cuda":
        raise RuntimeError(f"record_stream of a {t.device} tensor (only CUDA tensors belong to streams)")


def _guarded_numpy(original):
    def numpy(t, *a, **k):
        if isinstance(t, FakeTensor):
            where = "a CUDA tensor" if t.device.type == "cuda" else "a tensor made from CUDA data"
            raise HostReadError(f".numpy() of {where} {_shape(t)} outside runtime.fetch")
        return original(t, *a, **k)
    return numpy


def _pin_memory(fc: FakeCuda):
    def pin_memory(t, device=None):
        if isinstance(t, FakeTensor) or t.device.type != "cpu":
            raise RuntimeError(f"cannot pin a {t.device} tensor (only dense CPU tensors can be pinned)")
        out = t.clone()
        fc._pinned.add(out.untyped_storage().data_ptr())
        return out
    return pin_memory


def _to_cuda(kwargs) -> bool:
    return _device(kwargs) == "cuda"


def _device(kwargs) -> str | None:
    device = kwargs.get("device")
    return None if device is None else torch.device(device).type


def _shape(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"


def _describe(items) -> str:
    return "[" + ", ".join(f"{dtype} {shape}" for shape, dtype in items) + "]"

