"""Process-wide settings the command-line jobs apply before they start.

Kept out of ``import dfdc_fast``: a library should not change its host's allocator, but
the jobs own their process. Also the device-capability helpers every job shares.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

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


def check_device(name: str | None) -> torch.device | None:
    """The torch device ``name`` names, refused in one line when this machine cannot run it.

    A job asked for ``--device cuda`` on a machine without a usable GPU would otherwise fail
    deep inside its first CUDA call with a long traceback; this says what is missing and
    what to pass instead. ``None`` (the job's default) is returned as is.
    """
    from dfdc_fast.errors import ConfigError, DeviceUnavailable

    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"--device {name!r}: this toolkit runs on cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"--device {name}: no usable GPU here ({_cuda_problem()}); use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def _cuda_problem() -> str:
    """Why CUDA is unusable, in a few words: what torch's own initialisation says."""
    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 - the message is the point
        text = str(exc).strip().splitlines()
        return text[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
    return "torch.cuda.is_available() is False"


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


#: Hooks that answer :func:`fetch` instead of the device, innermost last: ``bench.fake_cuda``
#: replays a recorded CPU run's reads there, and ``record_fetches`` records them.
FETCH_HOOKS: list = []


def fetch(*tensors: torch.Tensor) -> list:
    """Copy several small device tensors to the host with one transfer (one host sync).

    Each ``.cpu()`` of a CUDA tensor waits for the GPU; results read back together cost
    one wait. Returns numpy arrays with the tensors' shapes and dtypes (values travel as
    float64, exact for integers below 2**53 and for float32). Every deliberate
    device-to-host read of the GPU path goes through here, so that a rehearsal on fake
    CUDA tensors (``dfdc_fast.bench.fake_cuda``) can answer it and count it.
    """
    if not tensors:
        return []
    if FETCH_HOOKS:
        return FETCH_HOOKS[-1](tensors)
    return read_to_host(tensors)


def pack_for_fetch(tensors) -> torch.Tensor:
    """The one flat float64 device tensor :func:`fetch` copies to the host."""
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])


def read_to_host(tensors) -> list:
    """:func:`fetch` itself, without the hooks."""
    flat = pack_for_fetch(tensors)
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


def typed_dataclass(cls, values: dict):
    """``cls(**values)`` for a dataclass, with each value converted to its field's type.

    YAML reads ``1e-4`` as a string and a command line gives strings: a value that parses as
    the field's type is converted (``"1e-4"`` -> 1e-4, ``"true"`` -> True, ``"45,46"`` ->
    [45, 46] for a list of ints); one that does not, or an unknown key, raises
    :class:`~dfdc_fast.errors.ConfigError` naming the key and, for a typo, the key meant.
    """
    import dataclasses
    import difflib
    import typing

    from dfdc_fast.errors import ConfigError

    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown option {key!r} for {cls.__name__}{hint}")
        try:
            out[key] = _convert(value, hints.get(key, typing.Any))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"option {key!r}: {exc}") from None
    try:
        return cls(**out)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _convert(value, hint):
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or value is None and (origin is typing.Union and type(None) in args):
        return value
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and len(inner) < len(args)):
            return None
        errors = []
        for a in inner:
            try:
                return _convert(value, a)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ValueError(f"expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, (int, float)) and (hint is float or float(value).is_integer()):
            return hint(value)
        if isinstance(value, str):
            number = float(value)  # raises ValueError naming the text
            if hint is int and not number.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return hint(number)
        raise ValueError(f"expected a {hint.__name__}, got {value!r}")
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"expected text, got {value!r}")
        return str(value)
    if origin in (list, tuple) or hint in (list, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        item_hint = args[0] if args else typing.Any
        items = [_convert(v, item_hint) for v in items if not (isinstance(v, str) and v == "")]
        return tuple(items) if (origin or hint) is tuple else items
    return value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``values`` with ``KEY=VALUE`` overrides applied; dotted keys reach into nested mappings.

    ``augment.hflip=0.3`` sets ``values["augment"]["hflip"]``; a value is read as a YAML
    scalar or flow collection (``1e-4``, ``true``, ``[45, 46]``, ``{a: 1}``), so the command
    line and a YAML file give the same types; :func:`typed_dataclass` then checks the keys.
    The mapping passed in is not modified.
    """
    import copy

    import yaml

    from dfdc_fast.errors import ConfigError

    out = copy.deepcopy(values)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (dotted keys for nested options, e.g. augment.hflip=0.3)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parents[:i + 1])} is {child!r}, not a mapping")
            node = child
        node[leaf] = value
    return out


def exit_with_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """End this child process when the process that started it is gone (killed, crashed,
    out of memory): a child busy with a video or a file, or blocked where a closed pipe
    cannot reach it, would otherwise live on as an orphan holding its memory and writing."""
    import threading
    import time

    def watch() -> None:
        from dfdc_fast.files import remove_in_flight

        while True:
            time.sleep(every_s)
            if os.getppid() != parent_pid:
                remove_in_flight()  # a half-written temporary of this process would outlive it
                os._exit(75)

    threading.Thread(target=watch, name="dfdc-parent-watch", daemon=True).start()


def kill_children() -> int:
    """SIGKILL every descendant of this process (found in /proc on Linux; elsewhere the
    children multiprocessing knows of). What a stop that cannot finish cleanly does last,
    so that no helper outlives the job. Returns how many were signalled."""
    import multiprocessing
    import signal

    children: dict = {}
    try:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile
                children.setdefault(ppid, []).append(int(name))
        pids, todo = [], [os.getpid()]
        while todo:
            for child in children.get(todo.pop(), []):
                pids.append(child)
                todo.append(child)
    except OSError:  # no /proc
        pids = [p.pid for p in multiprocessing.active_children()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


def child_of_job(parent_pid: int) -> None:
    """Set up a job's helper process: it dies with its parent, and it leaves Ctrl-C (which
    the terminal sends to every process of the group) and SIGTERM to its parent, which
    stops it cleanly, so an interrupt prints one line and no helper's traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Start child processes inside this: they inherit an ignored SIGINT from their first
    instruction (a Ctrl-C during their start-up would otherwise print their traceback);
    the job's own handler is back as soon as they are started."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
