"""Count kernel launches and host syncs of a piece of code, on any device (a CPU too).

Most GPU time in a pipeline like ours is lost on the host: every op is a kernel launch,
and every op whose result size or value the host must know (``.item()``, ``nonzero``,
boolean-mask indexing, ``unique``, ``.tolist()``, ``.cpu()``...) makes the host wait for the GPU.
Both are visible without a GPU: :class:`OpCounter` is a ``TorchDispatchMode`` that sees
every aten op, plus wrappers of the few ``Tensor`` methods that read data on the host
without dispatching an op. Tests assert budgets with it on the CPU; on a GPU,
``torch.cuda.set_sync_debug_mode("error")`` (see :func:`no_syncs`) confirms them.

The CPU count of syncs is an upper bound of the GPU one: ``.tolist()``/``.cpu()`` of a
tensor that lives on the host anyway is counted too, so hot paths keep host-side
bookkeeping in numpy or Python (``.numpy()`` of a host tensor is free), and device data
in torch.

    with OpCounter() as c:
        detector.detect(frames)
    c.kernels, c.syncs, c.sync_ops  # counts, and which ops synced (Counter)
"""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

#: Ops whose result the host must wait for: a value read back, or an output size that
#: depends on the data.
SYNC_OPS = {
    aten._local_scalar_dense.default,  # .item(), int(t), float(t), bool(t)
    aten.is_nonzero.default,
    aten.nonzero.default,
    aten.nonzero.out,
    aten.masked_select.default,
    aten.equal.default,
    aten.bincount.default,
    aten.unique_consecutive.default,
    aten.unique_dim.default,
    aten._unique.default,
    aten._unique2.default,
    aten.repeat_interleave.Tensor,  # without output_size
    aten.allclose.default,
}

#: Ops that never launch a kernel: views, metadata, allocation without initialisation.
_FREE_OPS = {
    aten.empty.memory_format,
    aten.empty_strided.default,
    aten.empty_like.default,
    aten.new_empty.default,
    aten.new_empty_strided.default,
    aten.detach.default,
    aten.lift_fresh.default,
    aten.sym_size.int,
    aten.sym_stride.int,
    aten.sym_numel.default,
    aten.sym_storage_offset.default,
    aten.is_same_size.default,
    aten.set_.source_Storage_storage_offset,
    aten.resize_.default,
    torch.ops.prim.device.default,  # ``t.device`` of a tensor subclass (fake tensors) dispatches this
    torch.ops.prim.layout.default,
}

#: Host reads that dispatch no op. ``.numpy()`` is not among them: it fails on a CUDA
#: tensor, so code that runs on a GPU always reaches it through ``.cpu()``, counted here.
_HOST_READ_METHODS = ("tolist", "cpu")


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else None
    if not isinstance(indices, (list, tuple)):
        return False
    return any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices)


class OpCounter(TorchDispatchMode):
    """Counts aten ops that launch a kernel, and host syncs, while active.

    Attributes:
        kernels: ops that would launch at least one kernel (views and allocations excluded).
        syncs: host syncs (ops in :data:`SYNC_OPS`, boolean-mask indexing, ``repeat_interleave``
            without ``output_size``, and the host reads ``.tolist()``/``.cpu()``).
        host_to_device: tensors made from host data (``torch.tensor(...)``), each a copy to
            the device when the code runs on a GPU.
        ops / sync_ops: ``Counter`` by op name, for reports and failing tests.
    """

    def __init__(self, device_type: str | None = None):
        super().__init__()
        #: count only ops with a tensor on this device type ("cuda" under ``fake_cuda``,
        #: where host-side bookkeeping runs on real CPU tensors); None counts every op
        self.device_type = device_type
        self.kernels = 0
        self.syncs = 0
        self.host_to_device = 0
        self.ops: Counter = Counter()
        self.sync_ops: Counter = Counter()
        self._patches = contextlib.ExitStack()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket.__name__)
        if func is aten.lift_fresh.default:
            self.host_to_device += 1
        sync = func in SYNC_OPS
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default):
            sync = _has_bool_index(args)
        if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is not None:
            sync = False
        if sync and self._on_device((args, kwargs)):
            self._sync(name)
        out = func(*args, **kwargs)
        if func not in _FREE_OPS and not func.is_view and self._on_device((args, kwargs, out)):
            self.kernels += 1
            self.ops[name] += 1
        return out

    def _on_device(self, tree) -> bool:
        if self.device_type is None:
            return True
        return any(isinstance(t, torch.Tensor) and t.device.type == self.device_type for t in tree_leaves(tree))

    def _sync(self, name: str) -> None:
        self.syncs += 1
        self.sync_ops[name] += 1

    def __enter__(self):
        counter = self
        for method in _HOST_READ_METHODS:
            original = getattr(torch.Tensor, method)

            def wrapped(t, *a, __original=original, __name=method, **k):
                if counter.device_type is None or t.device.type == counter.device_type:
                    counter._sync(f"Tensor.{__name}")
                return __original(t, *a, **k)

            self._patches.enter_context(_patched(torch.Tensor, method, wrapped))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._patches.close()

    def summary(self) -> dict:
        """Counts as a JSON-ready dict (the benchmarks record it)."""
        return {"kernels": self.kernels, "syncs": self.syncs, "host_to_device": self.host_to_device,
                "sync_ops": dict(self.sync_ops.most_common())}

    def __repr__(self) -> str:
        return f"OpCounter(kernels={self.kernels}, syncs={self.syncs}, host_to_device={self.host_to_device})"


@contextlib.contextmanager
def _patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def no_syncs(device: torch.device | str, mode: str = "error") -> Iterator[None]:
    """On a CUDA device, make every synchronising CUDA call raise (``mode="error"``) or warn
    inside the block; on other devices, do nothing (use :class:`OpCounter` there)."""
    device = torch.device(device)
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


__all__ = ["OpCounter", "SYNC_OPS", "no_syncs"]
