"""Writing outputs so that nothing half-written ever sits under a final name.

Every file goes to a temporary beside its target, is flushed, checked (a size, and for
media a decode of its header), fsync'ed and renamed. A full disk or an I/O error becomes
:class:`StorageError`, which jobs treat as "stop cleanly and resumably", never as one
video's failure. Temporaries carry their owner's tag (``DFDC_FAST_TMP_TAG``, e.g. the
extraction shard), so a job removes only the ones its own earlier, interrupted run left.
"""
from __future__ import annotations

import errno
import json
import os
import re
from typing import Callable, Optional

from dfdc_fast.errors import FolderBusy

#: Errors that mean the storage, not the video, is at fault.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}
TAG_ENV = "DFDC_FAST_TMP_TAG"
#: Test hook: ``enospc:N`` makes the N-th write of this process fail with ENOSPC.
FAULT_ENV = "DFDC_FAST_FAULT"
_writes = {"n": 0}


class StorageError(OSError):
    """The disk is full or failing: the run must stop (its finished work stays valid)."""


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) or (isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS)


def temporary_path(path: str) -> str:
    """Where ``path`` is written before it is renamed into place: a hidden file beside it
    named after its owner (tag and pid), so concurrent runs never take each other's."""
    tag = re.sub(r"[^A-Za-z0-9]", "", os.environ.get(TAG_ENV, "")) or "x"
    return os.path.join(os.path.dirname(path), f".tmp-{tag}-{os.getpid()}-{os.path.basename(path)}")


def is_temporary(name: str, tag: Optional[str] = None) -> bool:
    """True for a temporary's file name; with ``tag``, only for that owner's."""
    if tag is None:
        return name.startswith(".tmp-")
    return name.startswith(f".tmp-{tag}-")


def _fault() -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec.startswith("enospc:"):
        _writes["n"] += 1
        if _writes["n"] == int(spec.split(":", 1)[1]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)")


def atomic_write(path: str, write: Callable[[str], None], verify: Optional[Callable[[str], None]] = None) -> None:
    """``write(tmp)`` a temporary, check it (non-empty, then ``verify(tmp)``), fsync it and
    rename it to ``path``. Any failure removes the temporary and leaves ``path`` as it was;
    a full disk or I/O error is raised as :class:`StorageError`."""
    folder = os.path.dirname(path) or "."
    tmp = temporary_path(path)
    try:
        os.makedirs(folder, exist_ok=True)
        _fault()
        write(tmp)
        if os.path.getsize(tmp) == 0:
            raise OSError(errno.EIO, f"{path}: wrote an empty file")
        if verify is not None:
            verify(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if is_storage_error(exc) and not isinstance(exc, StorageError):
            raise StorageError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def write_bytes(path: str, data: bytes, verify: Optional[Callable[[str], None]] = None) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, write, verify)


def write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path: str, obj, indent: int = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent))


def verify_image(path: str) -> None:
    """Raise unless ``path`` is a complete, decodable image (JPEG/PNG)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()


def remove_temporaries(folder: str, tag: Optional[str] = None) -> int:
    """Remove the temporaries under ``folder`` (only ``tag``'s, when given); returns how many."""
    n = 0
    for root, _, files in os.walk(folder):
        for f in files:
            if is_temporary(f, tag):
                try:
                    os.remove(os.path.join(root, f))
                    n += 1
                except FileNotFoundError:
                    pass
    return n


class FolderLock:
    """An advisory lock on ``OUT/.lock-<name>`` held for a run: a second run on the same
    folder (and shard) is refused with a message naming the holder."""

    def __init__(self, folder: str, name: str = "run"):
        self.path = os.path.join(folder, f".lock-{name}")
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusy(f"{os.path.dirname(self.path)} is in use by {holder}; wait for it to finish, "
                               "or write to another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


__all__ = ["StorageError", "is_storage_error", "temporary_path", "is_temporary", "atomic_write", "write_bytes",
           "write_text", "write_json", "verify_image", "remove_temporaries", "FolderLock"]
