"""Writing outputs so that nothing half-written ever sits under a final name.

Every file goes to a temporary beside its target, is flushed, checked (a size, and for
media a decode of its header), fsync'ed and renamed. A full disk or an I/O error becomes
:class:`StorageError`, which jobs treat as "stop cleanly and resumably", never as one
video's failure. Temporaries carry their owner's tag (``DFDC_FAST_TMP_TAG``, e.g. the
extraction shard), so a job removes only the ones its own earlier, interrupted run left.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from typing import Callable, Optional

from dfdc_fast.errors import FolderBusy

#: Errors that mean the storage, not the video, is at fault.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}
TAG_ENV = "DFDC_FAST_TMP_TAG"
#: Test hook: ``enospc:N`` makes the N-th write of this process fail with ENOSPC (the tests
#: reset the count per test: tests/conftest.py).
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
    _IN_FLIGHT.add(tmp)
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
    finally:
        _IN_FLIGHT.discard(tmp)


#: The temporaries this process is writing now (atomic_write's), for :func:`remove_in_flight`.
_IN_FLIGHT: set = set()


def remove_in_flight() -> int:
    """Remove the temporaries this process is writing: what a helper process whose job died
    does before it exits (``runtime.exit_with_parent``), so that none it was half-way through
    outlives it in the folder. Returns how many were removed."""
    n = 0
    for tmp in list(_IN_FLIGHT):
        try:
            os.remove(tmp)
            n += 1
        except OSError:
            pass
    return n


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


def make_dirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, a read-only or full disk raised as :class:`StorageError`."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        if is_storage_error(exc):
            raise StorageError(exc.errno, f"cannot make {path}: {exc.strerror or exc}") from exc
        raise


#: How many bytes of a file's head and tail :func:`source_identity` hashes.
IDENTITY_BLOCK = 1 << 16


def source_identity(path: str) -> dict:
    """What tells a source file from another one of the same name, cheaply: its size, mtime
    and a BLAKE2b hash of its size, first and last 64 KiB (a full hash of every video would
    cost a second read of the dataset; a different video differs in its header or its end)."""
    st = os.stat(path)
    h = hashlib.blake2b(str(st.st_size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(IDENTITY_BLOCK))
        if st.st_size > IDENTITY_BLOCK:
            f.seek(max(IDENTITY_BLOCK, st.st_size - IDENTITY_BLOCK))
            h.update(f.read(IDENTITY_BLOCK))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hash": h.hexdigest()}


#: The marker of which job made a folder, and the lock every job holds on it.
OWNER_FILE = ".dfdc_fast-job.json"
LOCK_FILE = ".lock"
#: Test hook: ``lock-enospc`` makes writing the lock's holder text fail with ENOSPC.
_LEGACY_SIGNS = (("settings.json", "extract"), ("submission.csv", "infer"), ("checkpoints", "train"))


def folder_owner(folder: str) -> Optional[str]:
    """The job that made ``folder`` (its marker, or for folders of older versions the files
    it leaves), or None for a folder no job made."""
    try:
        with open(os.path.join(folder, OWNER_FILE)) as f:
            return str(json.load(f).get("job"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        return "an unknown job (unreadable marker)"
    for name, job in _LEGACY_SIGNS:
        if os.path.exists(os.path.join(folder, name)):
            return job
    return None


def is_job_folder(folder: str) -> bool:
    """True for an output folder of any dfdc_fast job (never an input)."""
    return os.path.isfile(os.path.join(folder, OWNER_FILE))


class FolderLock:
    """One owner per output folder, across jobs.

    ``OUT/.dfdc_fast-job.json`` says which job made the folder; another job is refused
    there. ``OUT/.lock`` is held by every run on the folder: exclusively by infer and train,
    shared by the shards of one extraction (each shard also holds ``.lock-extract-<i>``
    exclusively), so two runs never write one folder. The lock files are removed when the
    last holder ends; a refused run leaves no folder it made.
    """

    def __init__(self, folder: str, job: str, shard: Optional[int] = None):
        self.folder, self.job, self.shard = folder, job, shard
        self.path = os.path.join(folder, LOCK_FILE)
        self._fds: list = []  # (fd, path)
        self._created = False

    @property
    def holder(self) -> str:
        who = self.job if self.shard is None else f"{self.job} (shard {self.shard})"
        return f"{who}, pid {os.getpid()} on {os.uname().nodename}"

    def acquire(self) -> "FolderLock":
        import fcntl

        self._created = not os.path.exists(self.folder)
        make_dirs(self.folder)
        try:
            owner = folder_owner(self.folder)
            if owner is not None and owner != self.job:
                raise FolderBusy(f"{self.folder} was made by {owner}; {self.job} writes only to its own folders "
                                 "(choose another output folder)")
            shared = self.shard is not None
            self._lock(self.path, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, write=True)
            if shared:
                self._lock(os.path.join(self.folder, f".lock-{self.job}-{self.shard}"), fcntl.LOCK_EX, write=True)
            if not os.path.isfile(os.path.join(self.folder, OWNER_FILE)):
                write_json(os.path.join(self.folder, OWNER_FILE), {"job": self.job})
        except BaseException:
            self._unlock(remove=False)
            self._remove_if_made()
            raise
        return self

    def _lock(self, path: str, mode: int, write: bool) -> None:
        import fcntl

        while True:
            existed = os.path.exists(path)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if is_storage_error(exc):
                    raise StorageError(exc.errno, f"cannot make the lock {path}: {exc.strerror or exc}") from exc
                raise
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another run"
                os.close(fd)
                raise FolderBusy(f"{self.folder} is in use by {holder}; wait for it to finish, "
                                 "or write to another output folder") from None
            try:  # the file may have been removed by its last holder meanwhile: lock the new one
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        self._fds.append((fd, path))
        if write:
            try:
                if os.environ.get(FAULT_ENV) == "lock-enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)")
                os.ftruncate(fd, 0)
                os.write(fd, self.holder.encode())
            except OSError as exc:
                self._fds.pop()
                if not existed:
                    os.remove(path)  # no 0-byte lock left behind
                os.close(fd)
                if is_storage_error(exc):
                    raise StorageError(exc.errno, f"cannot write the lock {path}: {exc.strerror or exc}") from exc
                raise

    def _unlock(self, remove: bool) -> None:
        import fcntl

        for fd, path in reversed(self._fds):
            if remove:
                try:  # the last holder (an exclusive lock is free) removes the file
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.remove(path)
                except OSError:
                    pass
            os.close(fd)  # closing drops the flock
        self._fds.clear()

    def _remove_if_made(self) -> None:
        """A folder this run made and wrote nothing into (a refused run) is removed again."""
        if not self._created:
            return
        try:
            left = set(os.listdir(self.folder)) - {OWNER_FILE, LOCK_FILE}
            if not any(not n.startswith(".lock-") for n in left):
                for n in os.listdir(self.folder):
                    os.remove(os.path.join(self.folder, n))
                os.rmdir(self.folder)
        except OSError:
            pass

    def release(self, ok: bool = True) -> None:
        self._unlock(remove=True)
        if not ok:
            self._remove_if_made()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release(ok=exc[0] is None)


__all__ = ["StorageError", "is_storage_error", "temporary_path", "is_temporary", "atomic_write", "write_bytes",
           "write_text", "write_json", "verify_image", "remove_temporaries", "make_dirs", "source_identity",
           "folder_owner", "is_job_folder", "OWNER_FILE", "FolderLock"]
