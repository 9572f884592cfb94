"""YUV 4:2:0 to RGB on the device, so a GPU decoder's frames match the CPU path's colours.

Hardware decoders convert with their own guess of the colour matrix when the stream does
not signal one (DFDC clips do not). FFmpeg's swscale, and so PyAV and OpenCV, use BT.601
for an unspecified matrix, and the seed solutions' models were trained on such frames.
Converting NV12 ourselves with the same rule keeps NVDEC frames within rounding of PyAV's.
"""
from __future__ import annotations

import torch

#: (Kr, Kb) luma coefficients per matrix name.
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}

#: FFmpeg's AVColorSpace codes -> our matrix names (everything else, unspecified included, is BT.601 as in swscale).
_AVCOL_SPC = {1: "bt709", 9: "bt2020", 10: "bt2020"}


def matrix_for(colorspace_code: int | None) -> str:
    """Matrix name for an FFmpeg AVColorSpace code, with swscale's default for unspecified."""
    return _AVCOL_SPC.get(int(colorspace_code or 2), "bt601")


def yuv_to_rgb_matrix(matrix: str = "bt601", full_range: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(3x3 matrix, offset) with ``rgb = M @ yuv + offset`` for 8-bit YUV, in float32."""
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full_range else (255.0 / 219.0, 255.0 / 224.0)
    m = torch.tensor([
        [ys, 0.0, 2 * (1 - kr) * cs],
        [ys, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs],
        [ys, 2 * (1 - kb) * cs, 0.0],
    ], dtype=torch.float32)
    y0 = 0.0 if full_range else 16.0
    offset = -(m @ torch.tensor([y0, 128.0, 128.0]))
    return m, offset


def nv12_to_rgb(nv12: torch.Tensor, height: int, width: int, matrix: str = "bt601",
                full_range: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Convert one NV12 surface to uint8 RGB (height, width, 3) on ``nv12``'s device.

    Args:
        nv12: uint8 (H_alloc*3/2, W_alloc) with the Y plane on top and interleaved UV
            below; rows and columns past ``height``/``width`` (alignment padding) are cut.
        out: optional (height, width, 3) uint8 tensor to write into.
    Chroma is upsampled by repetition (nearest), as NVDEC and swscale's fast path do.
    """
    if nv12.dtype != torch.uint8 or nv12.dim() != 2 or nv12.shape[0] % 3:
        raise ValueError(f"expected a uint8 (H*3/2, W) NV12 surface, got {tuple(nv12.shape)} {nv12.dtype}")
    luma_rows = nv12.shape[0] * 2 // 3
    y = nv12[:height, :width].float()
    uv = nv12[luma_rows:luma_rows + (height + 1) // 2, : (width + 1) // 2 * 2].float()
    uv = uv.view(uv.shape[0], -1, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)[:height, :width]
    m, offset = yuv_to_rgb_matrix(matrix, full_range)
    m, offset = m.to(nv12.device), offset.to(nv12.device)
    rgb = y.unsqueeze(-1) * m[:, 0] + uv @ m[:, 1:].T + offset
    rgb = rgb.round_().clamp_(0, 255)
    if out is None:
        return rgb.to(torch.uint8)
    out.copy_(rgb)
    return out
