"""Writers for face clips (H.264 MP4 through PyAV/libx264) and crops (JPEG/PNG).

Every file is written under a temporary name in its folder, checked (the MP4's header
must list every frame, the image must decode), fsync'ed and renamed when complete
(:mod:`dfdc_fast.files`), so a killed run or a full disk never leaves a half-written
clip under its final name.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch

from dfdc_fast.files import atomic_write, temporary_path, verify_image, write_bytes  # noqa: F401


def write_mp4(path: str, frames, fps: float, crf: int = 18, preset: str = "veryfast", threads: int = 1,
              keyint: int | None = None) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames (tensor or array; H and W even) as H.264 yuv420p.

    ``keyint`` caps the distance between keyframes (x264's default is 250, a single
    keyframe for a DFDC clip): a training loader that wants frames 80..111 of a clip must
    decode from the keyframe before frame 80, so short intervals make windows cheap.
    """
    import av

    arr = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {arr.dtype} {arr.shape}")
    if keyint is not None and keyint < 1:
        raise ValueError(f"keyint must be >= 1, got {keyint}")

    def write(tmp):
        with av.open(tmp, "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            stream.thread_count = threads
            if keyint is not None:
                stream.codec_context.gop_size = keyint
            for frame in arr:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())

    def verify(tmp):
        with av.open(tmp) as c:
            listed = c.streams.video[0].frames
        if listed != len(arr):
            raise OSError(f"{path}: the encoded clip lists {listed} of {len(arr)} frames")

    atomic_write(path, write, verify)


def write_jpeg(path: str, image, quality: int = 95) -> None:
    """Write a uint8 ``(H, W, 3)`` RGB image (tensor or array) as JPEG (``.jpg``) or PNG (``.png``)."""
    from PIL import Image

    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    fmt = "PNG" if path.endswith(".png") else "JPEG"

    def write(tmp):
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))

    atomic_write(path, write, verify_image)
