"""Video decoding: one API over NVDEC (PyNvVideoCodec), DALI and PyAV.

Frames are uint8 ``(T, H, W, 3)``, RGB, contiguous, on the requested device::

    from dfdc_fast.io import read_video, Every
    video = read_video("clip.mp4", Every(10), device="cuda", decoder="auto")
    video.frames.shape, video.indices, video.info.fps
"""
from dfdc_fast.io.api import DECODERS, check_decoder, open_reader, read_video, read_videos, resolve_decoder
from dfdc_fast.io.base import VideoReader
from dfdc_fast.io.errors import VideoDecodeError
from dfdc_fast.io.header import read_header
from dfdc_fast.io.selectors import All, Chunk, Evenly, Every, First, FrameSelector, Indices, num_chunks
from dfdc_fast.io.types import RawVideo, Video, VideoInfo

__all__ = [
    "DECODERS", "check_decoder", "open_reader", "read_video", "read_videos", "resolve_decoder", "read_header",
    "VideoReader", "VideoDecodeError", "Video", "VideoInfo", "RawVideo",
    "FrameSelector", "All", "Every", "First", "Evenly", "Chunk", "Indices", "num_chunks",
]
