"""YUV 4:2:0 to RGB exactly as FFmpeg's swscale converts, so GPU-decoded frames equal the
CPU path's (and the seed solutions', which read frames with OpenCV) bit for bit.

Hardware decoders convert with their own guess of the colour matrix when the stream does
not signal one (DFDC clips do not), and in floating point. swscale (under PyAV and
OpenCV alike) uses BT.601 for an unspecified matrix, and integer arithmetic: 13-bit
fixed-point coefficients (FFmpeg's ``ff_yuv2rgb_coeffs``), luma and each chroma term
floored separately. The native ``crop_resize`` op does the same in its kernels; this
module is the plain-torch version for whole frames.
"""
from __future__ import annotations

import torch

#: FFmpeg's coefficients (crv, cbu, cgu, cgv), 16.16 fixed point, limited range.
COEFFICIENTS = {"bt601": (104597, 132201, 25675, 53279), "bt709": (117489, 138438, 13975, 34925),
                "bt2020": (110013, 140363, 12277, 42626)}
MATRICES = tuple(COEFFICIENTS)

#: FFmpeg's AVColorSpace codes -> our matrix names (everything else, unspecified included, is BT.601 as in swscale).
_AVCOL_SPC = {1: "bt709", 9: "bt2020", 10: "bt2020"}


def matrix_for(colorspace_code: int | None) -> str:
    """Matrix name for an FFmpeg AVColorSpace code, with swscale's default for unspecified."""
    return _AVCOL_SPC.get(int(colorspace_code or 2), "bt601")


def swscale_coefficients(matrix: str = "bt601", full_range: bool = False) -> tuple[int, int, int, int, int, int]:
    """(y offset, y, r, b, g from u, g from v) integer coefficients of swscale's conversion:
    ``y' = ((8 Y - y_off) * c_y) >> 16``, ``R = y' + ((8 V - 1024) * c_r) >> 16``, ..."""
    crv, cbu, cgu, cgv = COEFFICIENTS[matrix]
    cy = 1 << 16
    if full_range:
        crv, cbu, cgu, cgv = (c * 224 // 255 for c in (crv, cbu, cgu, cgv))
    else:
        cy = cy * 255 // 219

    def q13(c):
        return (c * 8192 + 32768) >> 16

    return (0 if full_range else 128), q13(cy), q13(crv), q13(cbu), -q13(cgu), -q13(cgv)


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str = "bt601",
               full_range: bool = False) -> torch.Tensor:
    """uint8 RGB ``(..., 3)`` from uint8 Y, U, V of equal shapes (chroma already upsampled)."""
    y_off, c_y, c_r, c_b, c_gu, c_gv = swscale_coefficients(matrix, full_range)
    yy = ((y.to(torch.int32) * 8 - y_off) * c_y) >> 16
    uu = u.to(torch.int32) * 8 - 1024
    vv = v.to(torch.int32) * 8 - 1024
    rgb = torch.stack([yy + ((vv * c_r) >> 16), yy + ((uu * c_gu) >> 16) + ((vv * c_gv) >> 16),
                       yy + ((uu * c_b) >> 16)], dim=-1)
    return rgb.clamp_(0, 255).to(torch.uint8)


def nv12_to_rgb(nv12: torch.Tensor, height: int, width: int, matrix: str = "bt601",
                full_range: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Convert one NV12 surface to uint8 RGB (height, width, 3) on ``nv12``'s device.

    Args:
        nv12: uint8 (H_alloc*3/2, W_alloc) with the Y plane on top and interleaved UV
            below; rows and columns past ``height``/``width`` (alignment padding) are cut.
        out: optional (height, width, 3) uint8 tensor to write into.
    Chroma is upsampled by repetition (nearest), as swscale's unscaled converter does.
    """
    if nv12.dtype != torch.uint8 or nv12.dim() != 2 or nv12.shape[0] % 3:
        raise ValueError(f"expected a uint8 (H*3/2, W) NV12 surface, got {tuple(nv12.shape)} {nv12.dtype}")
    luma_rows = nv12.shape[0] * 2 // 3
    y = nv12[:height, :width]
    uv = nv12[luma_rows:luma_rows + (height + 1) // 2, : (width + 1) // 2 * 2]
    uv = uv.view(uv.shape[0], -1, 2).repeat_interleave(2, 0, output_size=uv.shape[0] * 2)
    uv = uv.repeat_interleave(2, 1, output_size=uv.shape[1] * 2)[:height, :width]
    rgb = yuv_to_rgb(y, uv[..., 0], uv[..., 1], matrix, full_range)
    if out is None:
        return rgb
    out.copy_(rgb)
    return out
