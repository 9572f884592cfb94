"""The display rotation of an MP4/MOV video track, read from its ``tkhd`` box.

Hardware decoders never apply a display matrix, and PyAV exposes it only on decoded
frames, so the GPU path used to decode one frame on the CPU per video just to learn its
orientation (~110 ms). The matrix sits in the track header: a few hundred bytes into
the ``moov`` box, read here without decoding anything.
"""
from __future__ import annotations

import math
import os
import struct
from typing import BinaryIO, Iterator, Optional

_CONTAINERS = {b"moov", b"trak", b"mdia"}
_MAX_MOOV = 64 << 20  # a moov box larger than this is not a short clip's; give up


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in [start, end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            big = f.read(8)
            if len(big) < 8:
                return
            size, header = struct.unpack(">Q", big)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _matrix(f: BinaryIO, start: int, end: int) -> Optional[tuple[float, ...]]:
    f.seek(start)
    version = f.read(1)
    if not version:
        return None
    # version, flags; creation, modification, track id, reserved, duration (v1: 64-bit times);
    # 8 reserved, layer, alternate group, volume, 2 reserved; then the 3x3 matrix
    offset = 4 + (32 if version[0] == 1 else 20) + 16
    if start + offset + 36 > end:
        return None
    f.seek(start + offset)
    raw = struct.unpack(">9i", f.read(36))
    return tuple(v / 65536.0 for v in raw[:2]) + (raw[2],) + tuple(v / 65536.0 for v in raw[3:5])


def display_rotation(path: str | os.PathLike) -> Optional[int]:
    """Counter-clockwise display rotation (0, 90, 180, 270) of the first video track of an
    MP4/MOV file, the same value PyAV reports as ``frame.rotation``; None when the file is
    not an ISO media file or holds no video track header."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        for kind, start, end in _boxes(f, 0, size):
            if kind != b"moov":
                continue
            if end - start > _MAX_MOOV:
                return None
            return _video_rotation(f, start, end)
    return None


def _video_rotation(f: BinaryIO, start: int, end: int) -> Optional[int]:
    for kind, t_start, t_end in _boxes(f, start, end):
        if kind != b"trak":
            continue
        matrix, handler = None, None
        for sub, s_start, s_end in _boxes(f, t_start, t_end):
            if sub == b"tkhd":
                matrix = _matrix(f, s_start, s_end)
            elif sub == b"mdia":
                for leaf, l_start, _ in _boxes(f, s_start, s_end):
                    if leaf == b"hdlr":
                        f.seek(l_start + 8)  # version/flags, pre-defined
                        handler = f.read(4)
        if handler == b"vide" and matrix is not None:
            a, b, _, c, d = matrix
            if math.hypot(a, c) == 0 or math.hypot(b, d) == 0:
                return 0
            degrees = -math.degrees(math.atan2(b, a))  # FFmpeg's av_display_rotation_get
            return int(round(degrees / 90.0)) % 4 * 90
    return None
