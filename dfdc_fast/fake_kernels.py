"""Fake (meta) kernels of the native ops: output shapes, dtypes and devices, no data.

``torch.compile`` traces through them, and ``bench.fake_cuda`` runs the GPU path on them
without a GPU. Each one checks its arguments as the real kernels do (``csrc/*_checks.h``
and the CUDA kernels' own limits), so a rehearsal on fake tensors refuses what a GPU
would refuse: boxes on the CPU with a validity mask on CUDA, ROIs on another device than
the frames, a wrong rank, size or dtype. Imported by ``dfdc_fast.ops`` once the extension
has registered the schemas.
"""
from __future__ import annotations

import torch

#: Columns of a crop_resize ROI row (crop_resize_common.h's kRoiFields).
ROI_COLUMNS = 13
#: Boxes per set the CUDA NMS kernel takes (csrc/cuda/nms_kernel.cu's kMaxBoxes).
NMS_MAX_BOXES_CUDA = 48 * 1024 * 8
_INT32_MAX = 2**31 - 1
_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_RGB, _NV12, _I420 = 0, 1, 2


def _same_device(a: torch.Tensor, b: torch.Tensor, message: str) -> None:
    torch._check(a.device == b.device, lambda: f"{message}, got {a.device} and {b.device}")


@torch.library.register_fake("dfdc_fast::label3d")
def _label3d(mask, connectivity=26):
    torch._check(mask.dim() == 4, lambda: f"label3d: expected a (B, T, H, W) mask, got shape {tuple(mask.shape)}")
    torch._check(mask.dtype in (torch.bool, torch.uint8), lambda: f"label3d: mask must be bool or uint8, got {mask.dtype}")
    torch._check(connectivity in (6, 18, 26), lambda: f"label3d: connectivity must be 6, 18 or 26, got {connectivity}")
    b, t, h, w = mask.shape
    torch._check(t * h * w < _INT32_MAX,
                 lambda: f"label3d: one mask may hold at most 2^31 - 2 voxels, got shape {tuple(mask.shape)}")
    if mask.device.type == "cuda":
        torch._check(mask.numel() < _INT32_MAX,
                     lambda: f"label3d (CUDA): a batch may hold at most 2^31 - 2 voxels, got shape {tuple(mask.shape)}")
    return (mask.new_empty(mask.shape, dtype=torch.int32), mask.new_empty((b,), dtype=torch.int64))


@torch.library.register_fake("dfdc_fast::component_stats")
def _component_stats(labels, num_labels):
    torch._check(labels.dim() == 4,
                 lambda: f"component_stats: expected (B, T, H, W) labels, got shape {tuple(labels.shape)}")
    torch._check(labels.dtype == torch.int32, lambda: f"component_stats: labels must be int32, got {labels.dtype}")
    torch._check(num_labels >= 0, lambda: f"component_stats: num_labels must be >= 0, got {num_labels}")
    b = labels.shape[0]
    return (labels.new_empty((b, num_labels, 6), dtype=torch.int64),
            labels.new_empty((b, num_labels), dtype=torch.int64))


@torch.library.register_fake("dfdc_fast::crop_resize")
def _crop_resize(frames, layout, rois, out_h, out_w, matrix=0, full_range=False, rotation=0, up_mode=0):
    torch._check(frames.dtype == torch.uint8, lambda: f"crop_resize: frames must be uint8, got {frames.dtype}")
    torch._check(frames.is_contiguous(), lambda: "crop_resize: frames must be contiguous")
    torch._check(rois.dtype == torch.int64 and rois.dim() == 2 and rois.shape[1] == ROI_COLUMNS,
                 lambda: f"crop_resize: rois must be int64 (N, {ROI_COLUMNS}), got {rois.dtype} {tuple(rois.shape)}")
    torch._check(rois.is_contiguous(), lambda: "crop_resize: rois must be contiguous")
    _same_device(rois, frames, "crop_resize: rois must be on the frames' device")
    torch._check(out_h >= 1 and out_w >= 1, lambda: f"crop_resize: output size must be positive, got {out_h}x{out_w}")
    torch._check(0 <= rotation <= 3, lambda: f"crop_resize: rotation is in quarter turns 0..3, got {rotation}")
    torch._check(up_mode in (0, 1), lambda: "crop_resize: up_mode must be 0 (bilinear) or 1 (bicubic)")
    if layout == _RGB:
        torch._check(frames.dim() == 4 and frames.shape[3] == 3,
                     lambda: f"crop_resize: RGB frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    else:
        torch._check(layout in (_NV12, _I420),
                     lambda: f"crop_resize: layout must be 0 (RGB), 1 (NV12) or 2 (I420), got {layout}")
        torch._check(frames.dim() == 3 and frames.shape[1] % 3 == 0,
                     lambda: f"crop_resize: YUV 4:2:0 frames must be (T, H*3/2, W), got {tuple(frames.shape)}")
        h, w = frames.shape[1] // 3 * 2, frames.shape[2]
        torch._check(h % 2 == 0 and w % 2 == 0, lambda: f"crop_resize: YUV 4:2:0 frames need an even size, got {h}x{w}")
    return frames.new_empty((rois.shape[0], out_h, out_w, 3))


@torch.library.register_fake("dfdc_fast::nms_padded")
def _nms_padded(boxes, valid, threshold, mode="iou"):
    torch._check(boxes.dim() == 3 and boxes.shape[2] == 4,
                 lambda: f"nms_padded: boxes must be (B, K, 4), got shape {tuple(boxes.shape)}")
    torch._check(boxes.dtype in _FLOATING, lambda: f"nms_padded: boxes must be floating point, got {boxes.dtype}")
    torch._check(valid.dtype == torch.bool, lambda: f"nms_padded: valid must be bool, got {valid.dtype}")
    torch._check(valid.dim() == 2 and tuple(valid.shape) == tuple(boxes.shape[:2]),
                 lambda: f"nms_padded: valid must be (B, K) = {tuple(boxes.shape[:2])}, got shape {tuple(valid.shape)}")
    _same_device(valid, boxes, "nms_padded: boxes and valid must be on one device")
    torch._check(threshold == threshold, lambda: "nms_padded: threshold must not be NaN")
    torch._check(mode in ("iou", "min"), lambda: f'nms_padded: mode must be "iou" or "min", got "{mode}"')
    if boxes.device.type == "cuda":
        k = boxes.shape[1]
        torch._check(k <= NMS_MAX_BOXES_CUDA,
                     lambda: f"nms_padded_cuda: at most {NMS_MAX_BOXES_CUDA} boxes per set, got {k}")
    return valid.new_empty(valid.shape)
