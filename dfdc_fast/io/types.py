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


@dataclass
class RawVideo:
    """Frames of one video as the decoder left them: YUV 4:2:0 in coded orientation.

    Converting every decoded frame to RGB costs more than most consumers need (the
    detector wants a tenth of the frames at half size, the cropper only face regions);
    :func:`dfdc_fast.ops.crop_resize` converts, rotates and resizes just the pixels used.

    Attributes:
        data: uint8 on the requested device, ``(T, H * 3 / 2, W)`` for ``"nv12"`` (NVDEC)
            and ``"i420"`` (FFmpeg), or ``(T, H, W, 3)`` for ``"rgb"`` (formats without an
            even-sized 4:2:0 layout are converted when decoded). ``H, W`` are the coded size.
        layout: ``"nv12"``, ``"i420"`` or ``"rgb"``.
        indices: int64 ``(T,)`` on CPU, absolute frame numbers.
        info: :class:`VideoInfo`; ``info.rotation`` is *not* applied to ``data``.
        decoder: the backend that decoded it.
        last: False for a segment of :meth:`~dfdc_fast.io.base.VideoReader.iter_raw` that
            more frames follow (its ``info.num_frames`` is then the header's).
    """

    data: torch.Tensor
    layout: str
    indices: torch.Tensor
    info: VideoInfo
    decoder: str
    last: bool = True

    def __post_init__(self):
        d = self.data
        if d.dtype != torch.uint8:
            raise ValueError(f"data must be uint8, got {d.dtype}")
        if self.layout == "rgb":
            ok = d.dim() == 4 and d.shape[-1] == 3
        elif self.layout in ("nv12", "i420"):
            ok = d.dim() == 3 and d.shape[1] % 3 == 0
        else:
            raise ValueError(f"layout must be rgb, nv12 or i420, got {self.layout!r}")
        if not ok:
            raise ValueError(f"data shape {tuple(d.shape)} does not fit layout {self.layout!r}")
        if self.indices.shape != (d.shape[0],):
            raise ValueError(f"indices shape {tuple(self.indices.shape)} does not match {d.shape[0]} frames")

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def coded_size(self) -> tuple[int, int]:
        """(height, width) of the stored frames."""
        if self.layout == "rgb":
            return self.data.shape[1], self.data.shape[2]
        return self.data.shape[1] // 3 * 2, self.data.shape[2]

    def to_video(self) -> Video:
        """Every frame as display-oriented RGB (what :func:`read_video` returns)."""
        import numpy as np

        from dfdc_fast.ops import crop_resize, roi_rows

        h, w = self.info.height, self.info.width
        rois = torch.from_numpy(roi_rows(len(self), frame=np.arange(len(self)), window=(0, 0, w, h)))
        frames = crop_resize(self.data, rois.to(self.data.device, non_blocking=True), (h, w), layout=self.layout,
                             matrix=self.info.color_matrix, full_range=self.info.full_range, rotation=self.info.rotation)
        return Video(frames, self.indices, self.info, self.decoder)

    def __repr__(self) -> str:
        return (f"RawVideo(data=uint8{tuple(self.data.shape)} {self.layout} on {self.data.device}, "
                f"indices=[{_span(self.indices)}], decoder={self.decoder!r}, "
                f"info={self.info.width}x{self.info.height} {self.info.num_frames} frames rot={self.info.rotation} "
                f"{self.info.path!r})")


def _span(indices: torch.Tensor) -> str:
    n = indices.numel()
    if n == 0:
        return ""
    if n <= 4:
        return ", ".join(str(int(i)) for i in indices)
    return f"{int(indices[0])}, {int(indices[1])}, ..., {int(indices[-1])} ({n})"


def normalize_rotation(degrees: float | int | None) -> int:
    """Display rotation in {0, 90, 180, 270}; non-right angles round to the nearest."""
    if degrees is None:
        return 0
    return int(round(float(degrees) / 90.0)) % 4 * 90
