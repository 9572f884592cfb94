"""NTechLab's on-the-fly re-encoding of training clips (CPU, in loader worker processes).

With probability ``p`` (0.5) a clip is re-encoded before it is used: its frame rate is
changed to a random integer in [15, 30) with p 0.5, its size scaled by U(0.25, 1) with
p 0.5 (each side rounded to an even number), and it goes through libx264 at a random CRF
in [17, 40) with one of six tunings, as a raw H.264 stream that is decoded again
(``TrackTransform`` of their training scripts). The REAL and FAKE clips of a pair get the
same parameters (one draw), so the pair stays aligned.

They piped PNG frames through the ffmpeg command line; here PyAV does the same in memory
(``libx264`` encoder, ``h264`` decoder, swscale's bicubic for the scale as the ``scale``
filter's default), one thread per clip, since the loaders parallelise over processes. The
``fps`` filter is reproduced by taking, for each output frame, the input frame nearest in
time. The training frame indices are then mapped as theirs:
``round(index / clip_length * frames_after)``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np

TUNES = ("film", "animation", "grain", "stillimage", "fastdecode", "zerolatency")


@dataclass(frozen=True)
class ReencodeParams:
    """One draw: output frame rate, size and x264 settings."""

    fps: float
    height: int
    width: int
    crf: int
    tune: str


@dataclass
class Reencode:
    """The parameters of NTechLab's ``TrackTransform`` and its ``get_params`` draw order."""

    p: float = 0.5
    fps_p: float = 0.5
    fps_range: tuple = (15, 30)
    scale_p: float = 0.5
    scale_range: tuple = (0.25, 1.0)
    crf_range: tuple = (17, 40)
    tunes: Sequence[str] = field(default_factory=lambda: list(TUNES))

    def __post_init__(self):
        unknown = set(self.tunes) - set(TUNES)
        if unknown:
            raise ValueError(f"unknown x264 tunes {sorted(unknown)}; allowed: {', '.join(TUNES)}")
        if not self.tunes:
            raise ValueError("tunes must not be empty")

    def sample(self, rng: random.Random, src_fps: float, height: int, width: int) -> Optional[ReencodeParams]:
        """None (no re-encode, probability 1 - p) or the parameters, drawn as theirs."""
        if rng.random() > self.p:
            return None
        fps = src_fps
        if rng.random() > 1 - self.fps_p:
            fps = rng.randrange(*self.fps_range)
        scale = 1.0
        if rng.random() > 1 - self.scale_p:
            scale = rng.uniform(*self.scale_range)
        h = max(2, round(scale * height) // 2 * 2)
        w = max(2, round(scale * width) // 2 * 2)
        return ReencodeParams(float(fps), h, w, rng.randrange(*self.crf_range), rng.choice(list(self.tunes)))


def output_frames(n: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Input frame of each output frame when ``n`` frames at ``src_fps`` become ``dst_fps``."""
    if dst_fps >= src_fps:
        return np.arange(n)
    count = max(1, int(round(n * dst_fps / src_fps)))
    return np.minimum(np.round(np.arange(count) * src_fps / dst_fps).astype(np.int64), n - 1)


def reencode(frames: np.ndarray, src_fps: float, params: ReencodeParams) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` RGB frames through libx264 with ``params`` and back:
    ``(T', params.height, params.width, 3)``."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    keep = output_frames(len(frames), src_fps, params.fps)
    rate = Fraction(params.fps).limit_denominator(1001)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = params.width, params.height, "yuv420p"
    enc.time_base = 1 / rate
    enc.framerate = rate
    enc.options = {"crf": str(params.crf), "tune": params.tune, "threads": "1"}
    packets = []
    for i, k in enumerate(keep):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[k]), format="rgb24")
        frame = frame.reformat(width=params.width, height=params.height, format="yuv420p", interpolation="BICUBIC")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    out = []
    for packet in packets:
        for f in dec.decode(packet):
            out.append(_rgb(f))
    for f in dec.decode(None):
        out.append(_rgb(f))
    if not out:
        raise RuntimeError(f"re-encoding {len(keep)} frames with {params} gave no frames back")
    return np.stack(out)


def _rgb(frame) -> np.ndarray:
    """A decoded 4:2:0 frame as RGB, the same bytes on every call. swscale's conversion reads
    past a plane's width into its row padding at some sizes (seen at 22 x 26: chroma 11
    wide), and the decoder's pooled buffers leave whatever an earlier frame put there, so the
    same frame came back a few grey levels apart from call to call. The planes are copied
    into a fresh frame whose padding repeats each row's last pixel."""
    import av

    if frame.format.name != "yuv420p":
        return frame.to_ndarray(format="rgb24")
    clean = av.VideoFrame(frame.width, frame.height, "yuv420p")
    for src, dst in zip(frame.planes, clean.planes):
        rows = np.frombuffer(src, np.uint8).reshape(src.height, src.line_size)[:, :src.width]
        dst.update(np.ascontiguousarray(np.pad(rows, ((0, dst.height - src.height), (0, dst.line_size - src.width)),
                                               mode="edge")))
    return clean.to_ndarray(format="rgb24")


def map_indices(indices: Sequence[int], clip_length: int, frames_after: int) -> np.ndarray:
    """NTechLab's index mapping after a re-encode changed the frame count."""
    idx = np.asarray(indices, dtype=np.float32) / clip_length * frames_after
    return np.round(idx).astype(np.int64).clip(0, frames_after - 1)


__all__ = ["TUNES", "Reencode", "ReencodeParams", "reencode", "output_frames", "map_indices"]
