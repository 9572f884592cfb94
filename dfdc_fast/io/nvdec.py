"""NVDEC hardware decoding through PyNvVideoCodec: frames go from the decoder to a CUDA
tensor by DLPack, never through host memory.

One :class:`NvdecReader` holds one decoder session and reuses it across videos
(``reconfigure_decoder``), since creating a session costs more than decoding a 10 s
clip. Several readers in several threads (:func:`dfdc_fast.io.read_videos` with
``workers=N``) keep several of the GPU's NVDEC engines busy (an H100 has 7).

``read`` was tested on an H100 (tests/test_io_cuda.py). ``read_raw`` (NV12 surfaces copied
out without conversion, the engine's input) and the fused conversion behind ``read`` are
**unverified on GPU** until a GPU session runs those tests again.
"""
from __future__ import annotations

from dfdc_fast.errors import DeviceUnavailable

import os
from typing import Iterator

import torch

from dfdc_fast.io.base import DecodePlan, FrameCollector, SegmentCollector, VideoReader, assemble, segment_video, with_count
from dfdc_fast.io.color import nv12_to_rgb
from dfdc_fast.io.errors import VideoDecodeError, check_readable
from dfdc_fast.io.header import listed_frame_count, read_header
from dfdc_fast.io.selectors import SelectorLike
from dfdc_fast.io.types import RawVideo, Video

#: Codecs NVDEC decodes (PyNvVideoCodec 2.x); anything else needs decoder="pyav".
NVDEC_CODECS = {"h264", "hevc", "av1", "vp9", "vp8", "mpeg4", "mpeg2video", "mjpeg"}

_INSTALL_HINT = (
    "The 'nvdec' decoder needs PyNvVideoCodec and an NVIDIA driver: `pip install pynvvideocodec` "
    "(or decoder='pyav' to decode on the CPU)."
)


def import_pynvvideocodec():
    """Import PyNvVideoCodec or raise an ImportError that says what is missing.

    Without a driver its import raises RuntimeError (it probes libnvidia-encode), not
    ImportError, so both are caught here.
    """
    try:
        import PyNvVideoCodec as nvc
    except (ImportError, RuntimeError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportError(f"{_INSTALL_HINT} Import failed with: {first_line}") from exc
    return nvc


def nvdec_available() -> bool:
    """True when PyNvVideoCodec imports and a CUDA device is visible."""
    return nvdec_problem() is None


def nvdec_problem() -> str | None:
    """Why NVDEC cannot be used here, in a few words (None when it can): no visible GPU,
    PyNvVideoCodec not installed, or its import failing (without a driver it fails although
    it is installed, and "install pynvvideocodec" would then mislead)."""
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) == "PyNvVideoCodec":
            return "PyNvVideoCodec is not installed (pip install pynvvideocodec)"
        return f"PyNvVideoCodec is installed but its import failed: {_first_line(exc)}"
    except (RuntimeError, OSError) as exc:
        return f"PyNvVideoCodec is installed but its import failed: {_first_line(exc)}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NvdecReader(VideoReader):
    """Decode on the GPU's NVDEC engines into CUDA tensors.

    Args:
        device: a CUDA device; frames are returned there.
        batch: frames fetched from the decoder per call.
        cache_size: decoders PyNvVideoCodec keeps for reconfiguration across sizes/codecs.
        color: "torch" (default) takes NV12 surfaces and converts them with the stream's
            matrix (BT.601 when unsignalled, as PyAV/OpenCV do; see :mod:`dfdc_fast.io.color`);
            "nvdec" uses PyNvVideoCodec's own RGB conversion, whose matrix guess for
            unsignalled streams differs from FFmpeg's on some sizes.
    """

    name = "nvdec"

    def __init__(self, device: torch.device | str = "cuda", batch: int = 32, cache_size: int = 4,
                 color: str = "torch"):
        super().__init__(device)
        if color not in ("torch", "nvdec"):
            raise ValueError(f"color must be 'torch' or 'nvdec', got {color!r}")
        self.color = color
        if self.device.type != "cuda":
            raise ValueError(f"the nvdec decoder returns CUDA tensors; device must be cuda, got {self.device}")
        if not torch.cuda.is_available():
            raise DeviceUnavailable("the nvdec decoder needs a CUDA GPU, and torch sees none (decoder='pyav' decodes on the CPU)")
        self._nvc = import_pynvvideocodec()
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.batch = batch
        self.cache_size = cache_size
        self._stream = torch.cuda.Stream(self.device)
        self._decoder = None

    def _open(self, path: str):
        nvc = self._nvc
        if self._decoder is None:
            self._decoder = nvc.SimpleDecoder(
                path,
                gpu_id=self.device.index,
                cuda_stream=self._stream.cuda_stream,
                use_device_memory=True,
                decoder_cache_size=self.cache_size,
                output_color_type=nvc.OutputColorType.RGB if self.color == "nvdec" else nvc.OutputColorType.NATIVE,
            )
        else:
            self._decoder.reconfigure_decoder(path)
        return self._decoder

    def read(self, path: str | os.PathLike, frames: SelectorLike = None) -> Video:
        if self.color == "torch":  # NV12 out of the decoder, then one fused conversion kernel
            return self.read_raw(path, frames).to_video()
        buffer, kept, result, header = self._decode(path, frames, raw=False)
        if buffer is None:
            return self.read(path, result.indices.tolist())
        out, idx = assemble(buffer, kept, result.indices, header.rotation, self.device)
        return Video(out, idx, with_count(header, result.num_frames, result.exact), self.name)

    def read_raw(self, path: str | os.PathLike, frames: SelectorLike = None) -> RawVideo:
        """The selected frames as NV12 ``(T, H * 3 / 2, W)`` CUDA tensors, the decoder's own
        format, copied out of its surfaces with no conversion (see :class:`RawVideo`)."""
        buffer, kept, result, header = self._decode(path, frames, raw=True)
        if buffer is None:
            return self.read_raw(path, result.indices.tolist())
        data, idx = assemble(buffer, kept, result.indices, 0, self.device)
        layout = "nv12" if data.dim() == 3 else "rgb"
        return RawVideo(data, layout, idx, with_count(header, result.num_frames, result.exact), self.name)

    def iter_raw(self, path: str | os.PathLike, frames: SelectorLike = None, segment: int = 600) -> Iterator[RawVideo]:
        """:meth:`read_raw` a segment at a time (see :meth:`VideoReader.iter_raw`). The
        decoder's stream is current only while frames are copied, never while a segment is
        out with the caller. **Unverified on GPU.**"""
        path, header, decoder = self._begin(path)
        planar, shape = self._layout(header, raw=True)
        layout = "nv12" if planar else "rgb"
        col = SegmentCollector(frames, segment,
                               lambda n: torch.empty((n, *shape), dtype=torch.uint8, device=self.device),
                               len(decoder) or header.num_frames)
        while not col.done:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
                    batch = decoder.get_batch_frames(self.batch)
            except Exception as exc:
                self._decoder = None
                raise VideoDecodeError(path, f"NVDEC decoding failed after {col.decoded} frame(s): {exc}") from exc
            if not batch:
                break
            for frame in batch:
                if col.full:
                    yield self._hand_on(col, shape, layout, header, last=False)
                with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
                    self._copy_into(path, frame, col.slot(), header, planar)
                if col.done:
                    break
        count, exact = col.finish(path, listed_frame_count(header, len(decoder)))
        yield self._hand_on(col, shape, layout, with_count(header, count, exact), last=True)

    def _hand_on(self, col: SegmentCollector, shape: tuple, layout: str, info, last: bool) -> RawVideo:
        """The collected segment, made safe to use on the caller's stream."""
        rows, indices = col.take()
        if rows is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self._stream)
            rows.record_stream(current)
        return segment_video(rows, indices, shape, layout, info, self.name, self.device, last)

    def _begin(self, path):
        path = check_readable(path)
        header = read_header(path)  # no decoding for MP4: the rotation comes from the track header
        if header.codec not in NVDEC_CODECS:
            raise VideoDecodeError(path, f"codec {header.codec!r} is not decodable by NVDEC; use decoder='pyav'")
        try:
            decoder = self._open(path)
        except Exception as exc:  # PyNvVideoCodec raises plain Exception/RuntimeError
            self._decoder = None  # a failed reconfigure leaves the session unusable
            raise VideoDecodeError(path, f"NVDEC could not open the stream: {exc}") from exc
        return path, header, decoder

    def _decode(self, path, frames: SelectorLike, raw: bool):
        path, header, decoder = self._begin(path)
        total = len(decoder) or header.num_frames
        planar, shape = self._layout(header, raw)
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            col = FrameCollector(DecodePlan.make(frames, total), total,
                                 lambda n: torch.empty((n, *shape), dtype=torch.uint8, device=self.device))
            try:
                while not col.done:
                    batch = decoder.get_batch_frames(self.batch)
                    if not batch:
                        break
                    for frame in batch:
                        row = col.slot()
                        if row is not None:
                            self._copy_into(path, frame, row, header, planar)
                        if col.done:
                            break
            except VideoDecodeError:
                raise
            except Exception as exc:
                self._decoder = None
                raise VideoDecodeError(path, f"NVDEC decoding failed after {col.decoded} frame(s): {exc}") from exc
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        col.buffer.record_stream(torch.cuda.current_stream(self.device))
        result = col.finish(path, listed_frame_count(header, len(decoder)))
        if result.incomplete:
            return None, None, result, header
        return col.buffer, col.kept, result, header

    def _layout(self, header, raw: bool) -> tuple:
        """Whether frames are kept as NV12 (``raw``, converted by us, an even size), and a frame's shape."""
        h, w = header.coded_height, header.coded_width
        planar = raw and self.color == "torch" and h % 2 == 0 and w % 2 == 0
        return planar, (h * 3 // 2, w) if planar else (h, w, 3)

    def _copy_into(self, path: str, frame, row: torch.Tensor, header, planar: bool) -> None:
        """One decoded surface into its buffer row: as NV12, or converted to RGB."""
        if planar:
            _copy_nv12(path, torch.from_dlpack(frame), row)
        else:
            self._copy_frame(path, torch.from_dlpack(frame), row, header)

    def _copy_frame(self, path: str, src: torch.Tensor, row: torch.Tensor, header) -> None:
        """Copy one decoder surface into ``row`` as RGB (the decoder reuses its surfaces)."""
        h, w = row.shape[:2]
        if self.color == "nvdec":
            if src.shape != (h, w, 3):
                raise VideoDecodeError(path, f"NVDEC returned a {tuple(src.shape)} frame, expected {(h, w, 3)}")
            row.copy_(src)
            return
        nv12_to_rgb(_surface(path, src, h, w), h, w, header.color_matrix, header.full_range, out=row)

    def close(self) -> None:
        self._decoder = None


def _surface(path: str, src: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The 2D uint8 NV12 surface of a decoded frame (alignment padding included)."""
    if src.dim() == 3 and src.shape[-1] == 1:
        src = src[..., 0]
    if src.dim() != 2 or src.shape[0] < h * 3 // 2 or src.shape[1] < w:
        raise VideoDecodeError(path, f"NVDEC returned a {tuple(src.shape)} surface, expected NV12 for {h}x{w}")
    return src


def _copy_nv12(path: str, src: torch.Tensor, row: torch.Tensor) -> None:
    """Copy an NV12 surface into a compact ``(h * 3 / 2, w)`` row: two strided device copies,
    no conversion, no host sync."""
    h, w = row.shape[0] // 3 * 2, row.shape[1]
    src = _surface(path, src, h, w)
    luma_rows = src.shape[0] * 2 // 3
    row[:h].copy_(src[:h, :w], non_blocking=True)
    row[h:].copy_(src[luma_rows:luma_rows + h // 2, :w], non_blocking=True)
