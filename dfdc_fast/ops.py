"""Python wrappers of the native ops in ``csrc/`` (one schema, CPU and CUDA kernels).

The ops live in ``torch.ops.dfdc_fast``; the wrappers here normalise inputs, document
the contract; ``dfdc_fast.fake_kernels`` registers their fake (meta) implementations so
the ops trace under ``torch.compile`` and run on fake CUDA tensors (``bench.fake_cuda``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch._subclasses.fake_tensor import is_fake

from dfdc_fast.extension import _assert_cuda_kernels, _has_ops
from dfdc_fast.runtime import fetch

__all__ = ["CONNECTIVITIES", "LAYOUTS", "NMS_MODES", "ROI_FIELDS", "label3d", "component_stats", "crop_resize", "nms_padded",
           "out_extent", "roi_rows"]

#: Neighbourhoods ``label3d`` accepts: faces (6), faces and edges (18), all (26).
#: skimage.measure.label's ``connectivity`` 1, 2, 3 are the same neighbourhoods.
CONNECTIVITIES = (6, 18, 26)

#: Overlap measures ``nms_padded`` accepts: intersection over union ("iou", torchvision's
#: ``nms``) and intersection over the smaller area with +1 pixel sizes ("min", MTCNN's last stage).
NMS_MODES = ("iou", "min")


def _assert_kernels_for(t: torch.Tensor) -> None:
    """The extension must be built, with CUDA kernels for a real CUDA tensor. A fake tensor
    (``torch.compile``'s tracing, ``bench.fake_cuda``) never reaches a kernel: its fake
    kernel is enough, whatever the build."""
    _assert_cuda_kernels(t.device, fake=is_fake(t) or t.device.type == "meta")


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype in (torch.bool, torch.uint8):
        return mask
    return mask != 0


def label3d(mask: torch.Tensor, connectivity: int = 26) -> tuple[torch.Tensor, torch.Tensor]:
    """Label the connected components of a 3D mask, or of a batch of them.

    One call labels a whole batch on the mask's device, with no host sync per mask,
    which is how the tracker labels the chunks of a video together.

    Args:
        mask: ``(T, H, W)`` or ``(B, T, H, W)``; non-zero voxels are foreground.
            bool and uint8 are used as they are, other dtypes are compared with 0.
        connectivity: 26 (any shared face, edge or corner; skimage's default for 3D),
            18 (faces and edges) or 6 (faces only).

    Returns:
        ``labels``: int32 with the shape of ``mask``; 0 is background and components are
        numbered 1..n in raster order of their first voxel, so for one mask the result
        equals ``skimage.measure.label(mask, connectivity=...)``.
        ``num_labels``: int64 on the same device, shape ``(B,)`` for a batch, ``()`` otherwise.
    """
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}")
    if mask.dim() not in (3, 4):
        raise ValueError(f"mask must be (T, H, W) or (B, T, H, W), got shape {tuple(mask.shape)}")
    _assert_kernels_for(mask)
    batched = mask.dim() == 4
    m = _as_mask(mask if batched else mask.unsqueeze(0))
    labels, num = torch.ops.dfdc_fast.label3d(m, connectivity)
    if batched:
        return labels, num
    return labels[0], num[0]


def component_stats(
    labels: torch.Tensor, num_labels: int | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes and voxel counts of every label, computed on the labels' device.

    Args:
        labels: int32 ``(T, H, W)`` or ``(B, T, H, W)`` from :func:`label3d`.
        num_labels: rows to return per mask (the largest label of the batch). An int,
            or the ``num_labels`` tensor of :func:`label3d`, whose maximum is read once
            (the only host sync; pass an int to avoid it). ``None`` reads ``labels.max()``.

    Returns:
        ``boxes``: int64 ``([B,] L, 6)`` as ``(t0, t1, y0, y1, x0, x1)``, half-open, so
        ``labels[t0:t1, y0:y1, x0:x1]`` holds the whole component; row ``k`` is label
        ``k + 1``. Rows of labels a mask does not have are all 0.
        ``counts``: int64 ``([B,] L)`` voxels per label.
    """
    if labels.dim() not in (3, 4):
        raise ValueError(f"labels must be (T, H, W) or (B, T, H, W), got shape {tuple(labels.shape)}")
    if labels.dtype != torch.int32:
        raise ValueError(f"labels must be int32 (as label3d returns them), got {labels.dtype}")
    _assert_kernels_for(labels)
    if num_labels is None:
        num_labels = labels
    if isinstance(num_labels, torch.Tensor):  # the one read, through fetch (so fake CUDA can answer it)
        num_labels = int(fetch(num_labels.max())[0]) if num_labels.numel() else 0
    batched = labels.dim() == 4
    lab = labels if batched else labels.unsqueeze(0)
    boxes, counts = torch.ops.dfdc_fast.component_stats(lab, int(num_labels))
    if batched:
        return boxes, counts
    return boxes[0], counts[0]


#: Frame layouts ``crop_resize`` reads: packed RGB ``(T, H, W, 3)``, or YUV 4:2:0 as NV12
#: (a Y plane, then interleaved U/V rows: what NVDEC returns) or I420 (Y, U, V planes:
#: what FFmpeg decodes H.264 to), both ``(T, H * 3 / 2, W)``.
LAYOUTS = {"rgb": 0, "nv12": 1, "i420": 2}
#: Columns of ``crop_resize``'s int64 ``rois`` rows.
ROI_FIELDS = ("frame", "x0", "y0", "x1", "y1", "ox", "oy", "canvas_w", "canvas_h", "out_w", "out_h", "dx", "dy")
_ROI_COLUMN = {name: i for i, name in enumerate(ROI_FIELDS)}
UP_MODES = {"bilinear": 0, "bicubic": 1}
#: YUV matrices crop_resize converts with; "bt601" is what swscale uses when a stream signals none.
MATRICES = {"bt601": 0, "bt709": 1, "bt2020": 2}


def crop_resize(
    frames: torch.Tensor,
    rois: torch.Tensor,
    out_size: tuple[int, int],
    *,
    layout: str = "rgb",
    matrix: str = "bt601",
    full_range: bool = False,
    rotation: int = 0,
    up_mode: str = "bilinear",
) -> torch.Tensor:
    """Cut, convert and resize many regions of video frames in one kernel.

    Every row of ``rois`` (int64 ``(N, 13)``, columns :data:`ROI_FIELDS`, on the frames'
    device) makes one uint8 RGB image: frame ``frame``'s window ``[x0, x1) x [y0, y1)``
    (display pixels, inside the frame) is placed at ``(ox, oy)`` in a zero canvas of
    ``canvas_w x canvas_h``, which is resized to ``out_w x out_h`` and written at
    ``(dx, dy)`` into an ``out_size`` image (the rest zero). Resampling follows
    ``F.interpolate``: "area" on an axis that shrinks, ``up_mode`` ("bilinear" or
    "bicubic", align_corners=False) on one that grows. YUV pixels are converted to RGB
    before resampling, with ``matrix`` and range, by swscale's integer arithmetic: the
    same bytes PyAV's and OpenCV's RGB frames hold (so NVDEC frames equal CPU ones); ``rotation`` (degrees, counter-clockwise, as ``VideoInfo.rotation``) is
    applied on the fly, so windows are in display coordinates.

    This is the one frame-to-pixels op of the engine: the detector's downscaled frames
    (window = the frame), the Medics' square face clips (window = the face box, canvas =
    its square, top-left), letterboxed 2D crops (canvas centred), native-size crops
    (canvas = window = output), letterboxed crops (resized, then placed centred with
    ``dx, dy``). No host sync; ``rois`` must already be on the device.

    Returns:
        uint8 ``(N, out_h, out_w, 3)`` on the frames' device.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {sorted(MATRICES)}, got {matrix!r}")
    if up_mode not in UP_MODES:
        raise ValueError(f"up_mode must be one of {sorted(UP_MODES)}, got {up_mode!r}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    _assert_kernels_for(frames)
    h, w = (int(v) for v in out_size)
    return torch.ops.dfdc_fast.crop_resize(frames, LAYOUTS[layout], rois, h, w, MATRICES[matrix], bool(full_range),
                                           (int(rotation) // 90) % 4, UP_MODES[up_mode])


def nms_padded(boxes: torch.Tensor, valid: torch.Tensor, threshold: float, mode: str = "iou") -> torch.Tensor:
    """Exact greedy non-maximum suppression of many sets at once, on their device.

    Every set ``b`` is suppressed on its own, as ``torchvision.ops.nms`` would do it on
    ``boxes[b][valid[b]]``, but the result stays a padded mask: no per-set loop, no size
    read on the host, so a GPU never waits (one thread block per set on CUDA).

    Args:
        boxes: ``(B, K, 4)`` floating point ``(x0, y0, x1, y1)``; each set's boxes must be
            sorted by decreasing score (the order decides which of two overlapping boxes wins).
        valid: bool ``(B, K)``: which rows are boxes rather than padding. Invalid rows are
            never kept and never suppress anything.
        threshold: a box is dropped when a kept, earlier box of its set overlaps it by
            more than this (compared in double for "iou", as torchvision does, and in the
            boxes' precision for "min", as facenet-pytorch's numpy code does).
        mode: "iou" (intersection over union, areas ``(x1 - x0) * (y1 - y0)``, equal to
            ``torchvision.ops.nms``) or "min" (intersection over the smaller area, with the
            original MTCNN's ``x1 - x0 + 1`` sizes: facenet-pytorch's "Min" NMS).

    Returns:
        bool ``(B, K)`` on the boxes' device: ``True`` for kept boxes. Half and bfloat16
        boxes are decided in float32.
    """
    if mode not in NMS_MODES:
        raise ValueError(f"mode must be one of {NMS_MODES}, got {mode!r}")
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, K, 4), got shape {tuple(boxes.shape)}")
    if valid.dtype != torch.bool or valid.shape != boxes.shape[:2]:
        raise ValueError(f"valid must be bool {tuple(boxes.shape[:2])}, got {valid.dtype} {tuple(valid.shape)}")
    _assert_kernels_for(boxes)
    return torch.ops.dfdc_fast.nms_padded(boxes, valid, float(threshold), mode)



if _has_ops():  # shape propagation (and the real kernels' checks) for torch.compile and fake tensors
    from dfdc_fast import fake_kernels  # noqa: F401


def roi_rows(n: int, **columns) -> np.ndarray:
    """int64 ``(n, 13)`` rows for :func:`dfdc_fast.ops.crop_resize`, each column given by
    its :data:`~dfdc_fast.ops.ROI_FIELDS` name as a scalar or an ``(n,)`` array. ``window=
    (x0, y0, x1, y1)``, ``canvas=(w, h)``, ``out=(w, h)``, ``offset=(ox, oy)`` and ``at=(dx,
    dy)`` set those pairs at once; a canvas not given is the window's size, an output not
    given is the canvas's (a plain copy); offsets default to 0."""
    groups = {"window": ("x0", "y0", "x1", "y1"), "canvas": ("canvas_w", "canvas_h"), "out": ("out_w", "out_h"),
              "offset": ("ox", "oy"), "at": ("dx", "dy")}
    named = {}
    for key, value in columns.items():
        if key in groups:
            parts = value if not isinstance(value, np.ndarray) or value.ndim == 1 and value.size == len(groups[key]) \
                else np.moveaxis(np.asarray(value), -1, 0)
            if len(parts) != len(groups[key]):
                raise ValueError(f"{key} takes {len(groups[key])} values, got {len(parts)}")
            named.update(zip(groups[key], parts))
        elif key in _ROI_COLUMN:
            named[key] = value
        else:
            raise ValueError(f"unknown crop_resize column {key!r}; columns: {', '.join(ROI_FIELDS)}")
    missing = [k for k in ("frame", "x0", "y0", "x1", "y1") if k not in named]
    if missing:
        raise ValueError(f"crop_resize rows need {', '.join(missing)}")
    rows = np.zeros((n, len(ROI_FIELDS)), dtype=np.int64)
    for key in ("frame", "x0", "y0", "x1", "y1", "ox", "oy"):
        if key in named:
            rows[:, _ROI_COLUMN[key]] = named[key]
    width = rows[:, _ROI_COLUMN["x1"]] - rows[:, _ROI_COLUMN["x0"]]
    height = rows[:, _ROI_COLUMN["y1"]] - rows[:, _ROI_COLUMN["y0"]]
    rows[:, _ROI_COLUMN["canvas_w"]] = named.get("canvas_w", width)
    rows[:, _ROI_COLUMN["canvas_h"]] = named.get("canvas_h", height)
    rows[:, _ROI_COLUMN["out_w"]] = named.get("out_w", rows[:, _ROI_COLUMN["canvas_w"]])
    rows[:, _ROI_COLUMN["out_h"]] = named.get("out_h", rows[:, _ROI_COLUMN["canvas_h"]])
    rows[:, _ROI_COLUMN["dx"]] = named.get("dx", 0)
    rows[:, _ROI_COLUMN["dy"]] = named.get("dy", 0)
    return rows


def out_extent(rows: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of the smallest output image that holds every row's output."""
    return int(rows[:, _ROI_COLUMN["out_h"]].max()), int(rows[:, _ROI_COLUMN["out_w"]].max())
