"""Results of the video readers: small dataclasses whose repr shows shapes, not data."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, independent of which frames were read.

    ``width``/``height`` are the *displayed* size (after ``rotation`` is applied), so a
    portrait clip is always ``height > width``. ``coded_width``/``coded_height`` are the
    size in the bitstream.
    """

    path: str
    num_frames: int
    #: True when ``num_frames`` was counted by decoding or demuxing to the end; False
    #: when it is the container's header value (exact for MP4/MOV sample tables).
    num_frames_exact: bool
    width: int
    height: int
    fps: float
    duration: Optional[float]
    codec: str
    pix_fmt: Optional[str]
    #: Counter-clockwise rotation in degrees (0, 90, 180, 270) applied to coded frames for display.
    rotation: int
    coded_width: int
    coded_height: int
    #: Container format as FFmpeg names it (e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm").
    container: str = ""
    #: True/False once timestamps were inspected (probe), None when not checked.
    variable_frame_rate: Optional[bool] = None
    #: YUV->RGB matrix every backend converts with ("bt601" when the stream signals none, as swscale does).
    color_matrix: str = "bt601"
    #: True for full-range ("JPEG") YUV, False for limited (16-235) range.
    full_range: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Video:
    """Frames read from one video.

    Attributes:
        frames: uint8 tensor ``(T, H, W, 3)``, RGB, contiguous, on the requested device.
        indices: int64 tensor ``(T,)`` on CPU: the absolute 0-based index of each frame.
        info: :class:`VideoInfo` of the whole video.
        decoder: the backend that decoded it (``"pyav"``, ``"nvdec"``, ``"dali"``).
    """

    frames: torch.Tensor
    indices: torch.Tensor
    info: VideoInfo
    decoder: str

    def __post_init__(self):
        f = self.frames
        if f.dtype != torch.uint8 or f.dim() != 4 or f.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {f.dtype} {tuple(f.shape)}")
        if self.indices.shape != (f.shape[0],):
            raise ValueError(f"indices shape {tuple(self.indices.shape)} does not match {f.shape[0]} frames")

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __repr__(self) -> str:
        return (
            f"Video(frames=uint8{tuple(self.frames.shape)} on {self.frames.device}, "
            f"indices=[{_span(self.indices)}], decoder={self.decoder!r}, "
            f"info={self.info.width}x{self.info.height} {self.info.num_frames} frames @ {self.info.fps:.3f} fps "
            f"{self.info.codec} rot={self.info.rotation} {self.info.path!r})"
        )


def _span(indices: torch.Tensor) -> str:
    n = indices.numel()
    if n == 0:
        return ""
    if n <= 4:
        return ", ".join(str(int(i)) for i in indices)
    return f"{int(indices[0])}, {int(indices[1])}, ..., {int(indices[-1])} ({n})"
