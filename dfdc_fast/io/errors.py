"""The one error a bad video raises, whatever the backend."""
from __future__ import annotations

import os


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded.

    Attributes:
        path: the file that failed.
        cause: a short human-readable reason ("empty file", "no video stream", ...).
    """

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = os.fspath(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")

    def __reduce__(self):  # keep (path, cause) through pickling (worker processes)
        return (type(self), (self.path, self.cause))


def check_readable(path: str | os.PathLike) -> str:
    """Fail early, with a precise cause, for paths no decoder could read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(path, "no such file")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "permission denied")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return path
