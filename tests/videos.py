"""Synthetic test videos written with PyAV: each frame encodes its own index, so tests can
check that the right frames came back."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def frame_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A frame whose mean brightness identifies index ``i`` (bands survive lossy coding)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (i * 37) % 200 + 20
    img[:, : max(w // 8, 1), 0] = 255  # a red bar on the left edge shows the orientation
    return img


def frame_level(i: int) -> int:
    return (i * 37) % 200 + 20


def make_video(path: str, frames: int = 30, width: int = 64, height: int = 48, *, codec: str = "libx264",
               fps: int = 30, rotation: int = 0, vfr: bool = False, faststart: bool = True, audio: bool = False,
               container: str | None = None) -> str:
    """Write a small test clip; ``vfr`` makes the frame durations uneven."""
    opts = {"movflags": "faststart"} if faststart and path.endswith((".mp4", ".mov")) else {}
    pix = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(path, "w", format=container, options=opts) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, pix
        s.codec_context.time_base = Fraction(1, fps * 10)
        if codec == "libx264":
            s.options = {"crf": "10", "preset": "ultrafast"}
        if rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=8000)
        pts = 0
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame_pattern(i, height, width), format="rgb24")
            f.pts, f.time_base = pts, s.codec_context.time_base
            pts += (5 + 10 * (i % 3)) if vfr else 10
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
        if a is not None:
            _write_tone(out, a, seconds=frames / fps)
    return path


def make_audio_only(path: str, seconds: float = 0.5) -> str:
    with av.open(path, "w") as out:
        a = out.add_stream("aac", rate=8000)
        _write_tone(out, a, seconds)
    return path


def _write_tone(out, stream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    n = int(rate * seconds)
    t = np.arange(n) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, n - frame_size + 1, frame_size):
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + frame_size]), format="fltp", layout="mono")
        f.sample_rate = rate
        f.pts = start
        for p in stream.encode(f):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)


def truncate(src: str, dst: str, fraction: float = 0.5) -> str:
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * fraction)])
    return dst


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
