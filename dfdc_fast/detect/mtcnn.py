"""Batched MTCNN: facenet-pytorch's detector, rewritten so that a batch of frames is a few
large device kernels per stage with fixed shapes, and the host reads three small tensors
per detection pass, whatever the number of frames and boxes.

The arithmetic of every stage follows facenet-pytorch 2.x (pyramid, box regression,
squaring, clamping, +1 pixel conventions, the three NMS passes and their order), so the
boxes, scores and landmarks match it (see tests/test_detect.py for the tolerances). What
changes is how:

* Frames are kept as uint8 ``(N, H, W, 3)`` at detector scale (full-resolution frames are
  resized a few at a time, so no float copy of all of them exists). The pyramid is
  ``F.interpolate(mode="area")`` of a channels-last float copy, as facenet-pytorch does
  it; R-Net and O-Net crops of all boxes come out of one gather from summed-area tables
  (``resample.py``), bit-identical to facenet-pytorch's per-box ``interpolate``.
* Every pyramid scale of a frame is pasted into one canvas (``pyramid.py``), and P-Net
  runs once on the canvases of all frames (in chunks of ``frame_batch``), not once per
  scale. Its candidates stay padded: a fixed top-k per frame and scale
  (``max_candidates``), ranked by score and then raster position, with a validity mask. NMS per frame and scale, the
  merge of the scales and NMS per frame are all on padded ``(frames, K)`` tensors with the
  native ``nms_padded`` op (one thread block per set on a GPU), so this stage never syncs.
* At each stage boundary the host reads one small tensor, the number of candidates per
  frame, and chooses the padded width for the next stage from it (exact on a CPU, a
  quarter-octave bucket on a GPU so shapes repeat). The candidates of all frames go
  through R-Net and O-Net as one flat, padded batch; their results go back to the
  per-frame layout for the next NMS. Boxes are never compacted with boolean masks.
* Frames of several sizes (several videos) go through one call: P-Net per size, R-Net
  and O-Net over the candidates of all of them together.

Host syncs: three per pass (candidates after P-Net, after R-Net, faces after O-Net). A
preset with ``fallback_thresholds`` runs a second pass on the frames left without a face,
which adds at most three more, and only when some frame has no face.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch._guards import detect_fake_mode

from dfdc_fast.detect.nets import load_nets
from dfdc_fast.detect.nms import nms_padded_reference
from dfdc_fast.detect.pyramid import PyramidLayout, pyramid_layout
from dfdc_fast.detect.resample import crop_resize_area_nhwc, integral_image
from dfdc_fast.detect.types import Detections
from dfdc_fast.runtime import fetch, to_device

log = logging.getLogger(__name__)

SIZE_RULES = ("selim", "ntech_area")
PNET_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Summed-area tables built for the R-Net crops are kept for the O-Net crops up to this
#: many bytes in all; beyond it they are built again.
TABLE_CACHE_BYTES = 4 << 30


@dataclass
class MTCNNConfig:
    """Detector settings. The defaults are facenet-pytorch's; ``PRESETS`` holds the seeds'."""

    #: Face-probability thresholds of P-Net, R-Net and O-Net.
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    #: Ratio between pyramid scales.
    factor: float = 0.709
    #: Smallest face searched for, in pixels of the image the nets see.
    min_face_size: float = 20
    #: Resize frames by this factor before detecting (the Medics' export: 0.5).
    scale: Optional[float] = None
    #: ...or so that their longer side has this many pixels (the Medics' inference: 480).
    long_side: Optional[int] = None
    #: ...or by a named rule: "selim" = 2x under 300 px, 1x to 1000, 0.5x above, 0.33x above 1900;
    #: "ntech_area" = an area of about 512 x 512, aspect kept (NTechLab's training detection).
    size_rule: Optional[str] = None
    #: Keep at most this many faces per frame, the most probable first. None keeps all.
    max_faces: Optional[int] = None
    #: Frames with no face are detected again with these thresholds (the Medics: 0.5 each).
    fallback_thresholds: Optional[tuple[float, float, float]] = None
    #: Faces kept per frame in the fallback pass (the Medics kept 1).
    fallback_max_faces: Optional[int] = 1
    #: P-Net candidates kept per frame and pyramid scale, the most probable first, and per
    #: frame after the NMS within each scale. Bounds memory and the padded widths on busy
    #: frames; facenet-pytorch has no cap (a cap that binds changes results; on DFDC
    #: frames at most a few hundred candidates pass P-Net).
    max_candidates: int = 5000
    #: Frames per P-Net chunk (the pass itself covers all frames of a call); halved and
    #: retried when the device runs out of memory. Host syncs do not depend on it. None:
    #: 256 on a GPU; on a CPU, P-Net canvases of about 250k pixels (1 frame of 960x540, 2
    #: of 480x270: the packed pyramid of one 960x540 frame is 442x987), where P-Net per
    #: frame was 1.3-1.6x faster than in chunks of 8 (its activations stay in cache), and
    #: R-Net/O-Net crops from about 4 megapixels of frames at a time.
    frame_batch: Optional[int] = None
    #: Crops per R-Net / O-Net forward. None: 8192 on a GPU, 512 on a CPU (fastest there).
    net_batch: Optional[int] = None
    #: P-Net's precision: "float32" (exact, the default), "bfloat16" or "float16". A GPU
    #: lever, not yet measured on a GPU, hence off; R-Net and O-Net stay in float32.
    pnet_dtype: str = "float32"
    #: Run the nets on channels-last tensors. None: on for CPUs (measured 1.5-1.7x faster
    #: on P-Net there), off on GPUs (not measured yet).
    channels_last: Optional[bool] = None

    def __post_init__(self):
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if len(self.thresholds) != 3 or not all(0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be three probabilities, got {self.thresholds}")
        if self.fallback_thresholds is not None:
            self.fallback_thresholds = tuple(float(t) for t in self.fallback_thresholds)
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        if self.min_face_size < 12:
            raise ValueError(f"min_face_size must be >= 12 (P-Net's window), got {self.min_face_size}")
        chosen = [n for n in ("scale", "long_side", "size_rule") if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise ValueError(f"choose one of scale, long_side, size_rule; got {chosen}")
        if self.size_rule is not None and self.size_rule not in SIZE_RULES:
            raise ValueError(f"size_rule must be one of {SIZE_RULES}, got {self.size_rule!r}")
        if self.scale is not None and self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
        for name in ("max_faces", "fallback_max_faces", "frame_batch", "net_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.pnet_dtype not in PNET_DTYPES:
            raise ValueError(f"pnet_dtype must be one of {tuple(PNET_DTYPES)}, got {self.pnet_dtype!r}")

    def resize_factor(self, height: int, width: int) -> float:
        """Factor applied to a ``height x width`` frame before detection."""
        if self.scale is not None:
            return float(self.scale)
        if self.long_side is not None:
            return self.long_side / max(height, width)
        if self.size_rule == "selim":
            side = max(height, width)
            return 2.0 if side < 300 else 1.0 if side <= 1000 else 0.5 if side <= 1900 else 0.33
        if self.size_rule == "ntech_area":
            return (512 * 512 / (height * width)) ** 0.5
        return 1.0

    def detector_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` a ``height x width`` frame is resized to before detection.

        Frames already at this size can be passed to :meth:`MTCNN.detect_many` with
        ``frame_sizes=[(height, width), ...]``: they are used as they are, and boxes come
        back in pixels of the ``height x width`` frame.
        """
        factor = self.resize_factor(height, width)
        if factor == 1.0:
            return int(height), int(width)
        return max(1, round(height * factor)), max(1, round(width * factor))


PRESETS = {
    # facenet-pytorch's defaults, at full resolution
    "facenet": MTCNNConfig(),
    # The Medics' training export: every 10th frame at 0.5x, thresholds 0.6/0.7/0.7
    "medics_export": MTCNNConfig(thresholds=(0.6, 0.7, 0.7), scale=0.5),
    # The Medics' inference: longer side 480, 0.8/0.8/0.9, up to 5 faces, 0.5/0.5/0.5 fallback
    "medics_inference": MTCNNConfig(thresholds=(0.8, 0.8, 0.9), long_side=480, max_faces=5,
                                    fallback_thresholds=(0.5, 0.5, 0.5)),
    # Selim's preprocessing (0.85/0.95/0.95 at 0.5x) and the size rule of his README
    "selim_export": MTCNNConfig(thresholds=(0.85, 0.95, 0.95), scale=0.5),
    "selim_inference": MTCNNConfig(thresholds=(0.7, 0.8, 0.8), size_rule="selim"),
    # NTechLab ran DSFD (not shipped here): our MTCNN with facenet-pytorch's thresholds at their
    # detector input sizes, an area of ~512^2 for training tracks and a long side of 512 at inference
    "ntech_export": MTCNNConfig(size_rule="ntech_area"),
    "ntech_inference": MTCNNConfig(long_side=512),
}


@dataclass
class _Group:
    """Frames of one size at detector scale: rows ``[start, start + n)`` of a pass."""

    images: torch.Tensor  # uint8 (n, h, w, 3) on the device
    start: int
    #: summed-area tables by first frame, kept between the R-Net and O-Net crops
    tables: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]


@dataclass
class _Faces:
    """Faces of a pass, padded per frame: ``counts[f]`` valid rows, zeros after them."""

    boxes: torch.Tensor  # (N, K, 4) in detector pixels
    scores: torch.Tensor  # (N, K)
    landmarks: torch.Tensor  # (N, K, 5, 2)
    counts: torch.Tensor  # int64 (N,) on the device
    counts_host: np.ndarray  # the same, on the host


class MTCNN:
    """Batched MTCNN face detector on ``device``.

    Args:
        device: where the nets run and results live ("cpu", "cuda", "cuda:1", ...).
        config: an :class:`MTCNNConfig` or the name of a preset in ``PRESETS``.
        weights_dir: folder with ``pnet.pt``, ``rnet.pt``, ``onet.pt``; default: the
            installed facenet-pytorch package's.
        **overrides: fields of the config to replace.

    ``host_reads`` counts the host syncs of the last call (the small tensors read to
    size the next stage), for tests and benchmarks.
    """

    def __init__(self, device: torch.device | str = "cpu", config: MTCNNConfig | str | None = None,
                 weights_dir: Optional[str] = None, **overrides):
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"unknown preset {config!r}; allowed: {', '.join(PRESETS)}")
            config = PRESETS[config]
        self.config = replace(config or MTCNNConfig(), **overrides)
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = load_nets(weights_dir, self.device)
        cl = self.config.channels_last
        self.channels_last = (self.device.type == "cpu") if cl is None else bool(cl)
        if self.channels_last:
            for net in (self.pnet, self.rnet, self.onet):
                net.to(memory_format=torch.channels_last)
        self._pnet_dtype = PNET_DTYPES[self.config.pnet_dtype]
        self._pnet_run = self.pnet if self._pnet_dtype == torch.float32 else copy.deepcopy(self.pnet).to(self._pnet_dtype)
        self._nms = _native_nms(self.device)
        gpu = self.device.type == "cuda"
        self.net_batch = self.config.net_batch or (8192 if gpu else 512)
        self.host_reads = 0
        self._layouts: dict = {}

    def __repr__(self) -> str:
        return f"MTCNN(device={self.device}, config={self.config})"

    @torch.inference_mode()
    def detect(self, frames: torch.Tensor, frame_indices: Optional[Sequence[int] | torch.Tensor] = None,
               frame_size: Optional[tuple[int, int]] = None) -> Detections:
        """Faces on each frame of a uint8 ``(N, H, W, 3)`` RGB batch (any device).

        Returns a :class:`Detections` on this detector's device, boxes and landmarks in
        pixels of the given frames (or of ``frame_size``, see :meth:`detect_many`), faces
        of each frame by decreasing score. ``frame_indices`` labels the frames (default
        ``0..N-1``).
        """
        sizes = None if frame_size is None else [frame_size]
        return self.detect_many([frames], [frame_indices], frame_sizes=sizes)[0]

    @torch.inference_mode()
    def detect_many(self, videos: Sequence[torch.Tensor],
                    frame_indices: Optional[Sequence[Optional[Sequence[int] | torch.Tensor]]] = None,
                    frame_sizes: Optional[Sequence[tuple[int, int]]] = None) -> list[Detections]:
        """Like :meth:`detect` for several frame batches (of any sizes) at once.

        All frames of the call form one detection pass: R-Net and O-Net see the
        candidates of all batches together, and the host syncs three times per pass (it
        reads the number of candidates per frame after P-Net and after R-Net, and the
        number of faces per frame at the end), whatever the number of frames and boxes.
        With ``fallback_thresholds`` (the Medics' inference preset) the frames left
        without a face get a second pass, which adds at most three syncs, and only
        when some frame has no face.

        Args:
            videos: uint8 ``(N_i, H_i, W_i, 3)`` RGB frames, on any device.
            frame_indices: per video, host labels of its frames (lists, numpy arrays or
                CPU tensors; default ``0..N_i-1``), strictly increasing.
            frame_sizes: per video, the full-resolution ``(H, W)`` its frames were decoded
                at, when the frames given are already at detector scale, i.e.
                ``config.detector_size(H, W)`` (a decoder that resizes while converting
                produces them): the frames are used as they are, and boxes and landmarks
                are mapped to ``(H, W)`` pixels. Default: frames are full resolution.
        """
        videos = list(videos)
        frame_indices = list(frame_indices) if frame_indices is not None else [None] * len(videos)
        if len(frame_indices) != len(videos):
            raise ValueError(f"{len(frame_indices)} frame index lists for {len(videos)} frame batches")
        if frame_sizes is not None and len(frame_sizes) != len(videos):
            raise ValueError(f"{len(frame_sizes)} frame sizes for {len(videos)} frame batches")
        for v in videos:
            if v.dtype != torch.uint8 or v.dim() != 4 or v.shape[-1] != 3:
                raise ValueError(f"frames must be uint8 (N, H, W, 3), got {v.dtype} {tuple(v.shape)}")
        full_sizes = [(v.shape[1], v.shape[2]) for v in videos] if frame_sizes is None else \
            [(int(h), int(w)) for h, w in frame_sizes]
        if frame_sizes is not None:
            for v, (h, w) in zip(videos, full_sizes):
                expect = self.config.detector_size(h, w)
                if (v.shape[1], v.shape[2]) != expect:
                    raise ValueError(f"frames of a {h}x{w} video must be at detector size {expect[0]}x{expect[1]}, "
                                     f"got {v.shape[1]}x{v.shape[2]}")
        indices = [_frame_indices(fi, v.shape[0]) for fi, v in zip(frame_indices, videos)]

        self.host_reads = 0
        groups, rows = self._prepare(videos, full_sizes, resized=frame_sizes is not None)
        cfg = self.config
        faces = self._pass(groups, cfg.thresholds, cfg.max_faces)
        if cfg.fallback_thresholds is not None and faces is not None:
            faces = self._fallback(groups, faces)

        return [_detections(faces, row, idx, size, self.device) for row, idx, size in zip(rows, indices, full_sizes)]

    # ---- the pass ---------------------------------------------------------------------

    def _prepare(self, videos, full_sizes, resized: bool):
        """Frames on the device at detector scale, grouped by size; per video, its rows in the
        pass and the full-resolution pixels per detector pixel (x, y)."""
        by_size: dict[tuple, list[int]] = {}
        for i, (v, size) in enumerate(zip(videos, full_sizes)):
            if v.shape[0]:
                det = (v.shape[1], v.shape[2]) if resized else self.config.detector_size(*size)
                by_size.setdefault((size, det), []).append(i)
        groups, rows, start = [], [(0, 0, (1.0, 1.0))] * len(videos), 0
        for ((fh, fw), (h, w)), members in by_size.items():
            parts = []
            for i in members:
                v = videos[i]
                parts.append(v.to(self.device, non_blocking=True) if (v.shape[1], v.shape[2]) == (h, w)
                             else self._resize(v, h, w))
                rows[i] = (start, v.shape[0], (fw / w, fh / h))
                start += v.shape[0]
            images = parts[0] if len(parts) == 1 else torch.cat(parts)
            groups.append(_Group(images=images.contiguous(), start=rows[members[0]][0]))
        return groups, rows

    def _resize(self, frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """uint8 frames resized to ``h x w`` on the device (area averaging down, bilinear up,
        rounded, as ``F.interpolate`` does it), a chunk of frames at a time: no float copy
        of all full-resolution frames exists, only of about 64 MB of them at once, and none
        when the size divides by whole blocks (summed as integers, bit-identical)."""
        n, fh, fw, _ = frames.shape
        out = torch.empty((n, h, w, 3), dtype=torch.uint8, device=self.device)
        ky, kx = fh // h, fw // w
        blocks = fh == h * ky and fw == w * kx and kx <= 128  # e.g. 1080p to 0.5x or to a longer side of 480
        # about 64 MB of temporaries per chunk: a float copy of the frames, or the block sums'
        # int16 column sums (fewer, larger chunks: 5 launches a frame fewer on a GPU at 1080p)
        chunk = max(1, (64 << 20) // (fh * (fw // kx * 2 if blocks else fw * 4) * 3))
        mode = "area" if h <= fh and w <= fw else "bilinear"
        extra = {"align_corners": False} if mode == "bilinear" else {}
        for a in range(0, n, chunk):
            x = frames[a:a + chunk].to(self.device, non_blocking=True)
            if blocks:  # area averaging by whole blocks: integer sums of the uint8 pixels, the same values
                out[a:a + chunk] = _block_sums(x, ky, kx).to(torch.float32).div_(ky).div_(kx).round_()
                continue
            y = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(h, w), mode=mode, **extra)
            out[a:a + chunk] = y.round_().clamp_(0, 255).permute(0, 2, 3, 1)
        return out

    def _pass(self, groups: list[_Group], thresholds, max_faces) -> Optional[_Faces]:
        """The three stages over all frames of ``groups``; three host reads. None: no frames."""
        n = sum(g.n for g in groups)
        if n == 0:
            return None
        # Stage 1: P-Net, per group and chunk of frames, no sync.
        parts = [self._stage_pnet(g, thresholds[0]) for g in groups]
        width = max(b.shape[1] for b, _ in parts)
        boxes = torch.cat([F.pad(b, (0, 0, 0, width - b.shape[1])) for b, _ in parts])
        keep = torch.cat([F.pad(k, (0, width - k.shape[1])) for _, k in parts])
        counts = keep.sum(1)
        counts_host = self._read(counts)  # host sync 1
        if not counts_host.any():
            return _no_faces(n, self.device)
        (boxes,), valid = _compact([boxes], keep, counts, counts_host, self.device)

        # Stage 2: R-Net on the candidates of all frames, NMS per frame.
        (reg, prob), ok, flat = self._net_on_crops(self.rnet, groups, boxes, valid, counts_host, 24)
        prob, reg = _unflatten(prob, flat, valid.shape, -1.0), _unflatten(reg, flat, valid.shape, 0.0)
        valid = valid & ok & (prob > thresholds[1])
        boxes, reg, prob, valid = _sort_by_score(prob, valid, boxes, reg, prob, valid)
        keep = self._nms(boxes, valid, 0.7, "iou")
        boxes = _square(_regress(boxes, reg))
        counts = keep.sum(1)
        counts_host = self._read(counts)  # host sync 2
        if not counts_host.any():
            for g in groups:
                g.tables.clear()
            return _no_faces(n, self.device)
        (boxes,), valid = _compact([boxes], keep, counts, counts_host, self.device)

        # Stage 3: O-Net, landmarks, NMS by intersection over the smaller box, max_faces.
        (reg, points, prob), ok, flat = self._net_on_crops(self.onet, groups, boxes, valid, counts_host, 48)
        for g in groups:
            g.tables.clear()
        shape = valid.shape
        prob, reg, points = (_unflatten(prob, flat, shape, -1.0), _unflatten(reg, flat, shape, 0.0),
                             _unflatten(points, flat, shape, 0.0))
        valid = valid & ok & (prob > thresholds[2])
        w = (boxes[..., 2] - boxes[..., 0] + 1)[..., None]
        h = (boxes[..., 3] - boxes[..., 1] + 1)[..., None]
        lx = w * points[..., :5] + boxes[..., 0:1] - 1
        ly = h * points[..., 5:] + boxes[..., 1:2] - 1
        landmarks = torch.stack([lx, ly], dim=-1)
        boxes = _regress(boxes, reg)
        boxes, prob, landmarks, valid = _sort_by_score(prob, valid, boxes, prob, landmarks, valid)
        keep = self._nms(boxes, valid, 0.7, "min")
        if max_faces is not None:
            keep = keep & (keep.cumsum(1) <= max_faces)
        counts = keep.sum(1)
        counts_host = self._read(counts)  # host sync 3
        (boxes, prob, landmarks), valid = _compact([boxes, prob, landmarks], keep, counts, counts_host,
                                                   self.device, exact=True)
        zero = ~valid
        return _Faces(boxes.masked_fill(zero[..., None], 0), prob.masked_fill(zero, 0),
                      landmarks.masked_fill(zero[..., None, None], 0), counts, counts_host)

    def _fallback(self, groups: list[_Group], faces: _Faces) -> _Faces:
        """Detect again, with the fallback thresholds, on the frames left without a face."""
        cfg = self.config
        missing = faces.counts_host == 0
        if not missing.any():
            return faces
        sub, start = [], 0
        for g in groups:
            local = np.flatnonzero(missing[g.start:g.start + g.n])
            if local.size == 0:
                continue
            images = g.images if local.size == g.n else torch.stack([g.images[int(i)] for i in local])
            sub.append(_Group(images=images, start=start))
            start += local.size
        extra = self._pass(sub, cfg.fallback_thresholds, cfg.fallback_max_faces)
        # Merge on the device: row f of the result is the fallback's row rank(f) where f had no face.
        k = max(faces.boxes.shape[1], extra.boxes.shape[1])
        gone = faces.counts == 0
        rank = (gone.cumsum(0) - 1).clamp_(min=0)
        merged = []
        for a, b in ((faces.boxes, extra.boxes), (faces.scores, extra.scores), (faces.landmarks, extra.landmarks)):
            a, b = _pad_to(a, k), _pad_to(b, k)[rank]
            merged.append(torch.where(gone.view(-1, *([1] * (a.dim() - 1))), b, a))
        counts_host = faces.counts_host.copy()
        counts_host[missing] = extra.counts_host
        return _Faces(*merged, torch.where(gone, extra.counts[rank], faces.counts), counts_host)

    # ---- stages -------------------------------------------------------------------------

    def _stage_pnet(self, g: _Group, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net candidates of a group, chunk by chunk: squared boxes ``(n, W, 4)`` and which
        rows are candidates ``(n, W)``, by decreasing score per frame."""
        parts, start, batch = [], 0, self._frame_batch(g)
        while start < g.n:
            chunk = g.images[start:start + batch]
            try:
                boxes, keep = self._detect_batch(chunk, threshold)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch = max(1, batch // 2)
                log.warning("MTCNN: out of memory, retrying with %d frames per pass", batch)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            parts.append((boxes, keep))
            start += len(chunk)
        if len(parts) == 1:
            return parts[0]
        return torch.cat([b for b, _ in parts]), torch.cat([k for _, k in parts])

    def _detect_batch(self, images: torch.Tensor, threshold: float):
        """Stage 1 on a chunk of frames of one size (uint8 ``(n, h, w, 3)`` at detector scale).

        Every pyramid scale goes into one canvas (``pyramid.py``) and P-Net runs once on
        it; the candidates of all scales are then ranked, suppressed per scale and merged
        as ``(n, scales, k)`` tensors, so the kernels of this stage do not grow with the
        number of scales. Returns squared, regressed boxes ``(n, W, 4)`` and the
        candidates among them ``(n, W)``, by decreasing score (facenet-pytorch's order for
        ties). W depends only on the frame size, so chunks concatenate.
        """
        n, h, w, _ = images.shape
        layout = pyramid_layout(h, w, float(self.config.min_face_size), float(self.config.factor))
        if layout is None:
            empty = torch.zeros((n, 0), dtype=torch.bool, device=self.device)
            return torch.zeros((n, 0, 4), device=self.device), empty
        dev = self.device
        cells, live, spill, scale, cols = self._layout_tensors(layout)
        frames = images.permute(0, 3, 1, 2).float()  # channels-last in memory
        if not self.channels_last:
            frames = frames.contiguous()
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        canvas = torch.empty((n, 3, *layout.canvas), device=dev, memory_format=fmt).zero_()
        for (hs, ws), (y, x) in zip(layout.sizes, layout.offsets):
            canvas[:, :, y:y + hs, x:x + ws] = F.interpolate(frames, size=(hs, ws), mode="area")
        reg, prob = self._pnet(canvas.sub_(127.5).mul_(0.0078125), spill)
        s_count, width = cells.shape
        k = min(self.config.max_candidates, width)
        # Top k per frame and scale by score, ties by raster position (facenet-pytorch's
        # candidate order): one int64 key per cell, the score's bits above the reversed
        # position; padding entries get -1 and rank last.
        shift = max(1, (width - 1).bit_length())
        low = (1 << shift) - 1
        p = prob.reshape(n, -1).index_select(1, cells.view(-1)).view(n, s_count, width)
        key = (p.view(torch.int32).to(torch.int64) << shift) | (low - torch.arange(width, device=dev))
        top = key.masked_fill_(~live, -1).topk(k, dim=2).values  # (n, S, k)
        real = top >= 0
        pos = low - (top & low)
        score = (top >> shift).to(torch.int32).view(torch.float32)
        xy = torch.stack([pos % cols, pos // cols], dim=-1).to(torch.float32)  # (n, S, k, 2) column, row
        q1 = ((2 * xy + 1) / scale).floor()
        q2 = ((2 * xy + 12) / scale).floor()
        boxes = torch.cat([q1, q2], dim=-1).view(n, s_count * k, 4)
        at = cells.expand(n, s_count, width).gather(2, pos).view(n, 1, s_count * k)
        regs = reg.reshape(n, 4, -1).gather(2, at.expand(n, 4, s_count * k)).transpose(1, 2)
        passed = (real & (score >= threshold)).view(n * s_count, k)
        keep = self._nms(boxes.view(n * s_count, k, 4), passed, 0.5, "iou").view(n, s_count * k)  # per frame and scale
        scores = score.view(n, s_count * k)
        # Per frame across scales: kept candidates by score, ties by scale and rank in it.
        total = s_count * k
        width = min(total, self.config.max_candidates)
        shift = max(1, (total - 1).bit_length())
        key = (scores.view(torch.int32).to(torch.int64) << shift) | (
            (1 << shift) - 1 - torch.arange(total, device=dev))
        top, order = key.masked_fill_(~keep, -1).topk(width, dim=1)
        valid = top >= 0
        boxes = boxes.gather(1, order[..., None].expand(n, width, 4))
        regs = regs.gather(1, order[..., None].expand(n, width, 4))
        keep = self._nms(boxes, valid, 0.7, "iou")
        wh = (boxes[..., 2:] - boxes[..., :2]).repeat(1, 1, 2)
        return _square(boxes + regs * wh), keep

    def _layout_tensors(self, layout: PyramidLayout):
        """The layout's index tensors on the device: each scale's cells in the canvas output
        ``(S, W)``, which are cells ``(S, W)``, the pool's spill mask, the scales ``(S, 1, 1)``
        and each scale's output columns ``(S, 1)``. Kept per layout (a few MB), except
        under a fake-tensor mode, whose tensors must not outlive it."""
        tensors = self._layouts.get(layout)
        if tensors is None:
            index, live = layout.cells()
            spill = layout.spill()
            tensors = (to_device(index, self.device), to_device(live, self.device), to_device(spill, self.device),
                       to_device(np.array(layout.scales, dtype=np.float32).reshape(-1, 1, 1), self.device),
                       to_device(np.array([c for _, c in layout.cells_shape], dtype=np.int64).reshape(-1, 1), self.device))
            if detect_fake_mode() is None:
                self._layouts[layout] = tensors
        return tensors

    def _frame_batch(self, g: _Group, canvas: bool = True) -> int:
        """Frames per chunk for the frames of ``g`` (``MTCNNConfig.frame_batch``): of P-Net's
        canvases, or (``canvas=False``) of the summed-area tables the crops come from."""
        if self.config.frame_batch:
            return self.config.frame_batch
        if self.device.type == "cuda":
            return 256
        if not canvas:
            return max(1, 4_000_000 // (g.size[0] * g.size[1]))
        layout = pyramid_layout(*g.size, float(self.config.min_face_size), float(self.config.factor))
        area = layout.canvas[0] * layout.canvas[1] if layout is not None else g.size[0] * g.size[1]
        return max(1, 250_000 // area)

    def _pnet(self, x: torch.Tensor, spill: torch.Tensor):
        if not self.channels_last:
            x = x.contiguous()
        if self._pnet_dtype != torch.float32:
            reg, prob = self._pnet_run(x.to(self._pnet_dtype), spill)
            return reg.float(), prob.float()
        return self._pnet_run(x, spill)

    def _net_on_crops(self, net, groups: list[_Group], boxes: torch.Tensor, valid: torch.Tensor,
                      counts_host: np.ndarray, size: int):
        """``net`` on area-resized crops of every valid box, like facenet-pytorch's pad(),
        crop loop and ``fixed_batch_process``.

        Crops are made and consumed a piece at a time (a chunk of frames, at most
        ``net_batch`` crops, rows padded to a bucket on a GPU), so memory does not grow
        with the number of boxes. Returns the net's outputs for the valid boxes in
        frame-major order, which boxes are croppable ``(N, W)`` (facenet-pytorch drops
        empty crops), and the flat index ``(T,)`` of each output row in the ``(N, W)`` layout.
        """
        n, width = valid.shape
        total = int(counts_host.sum())
        dev = self.device
        frame_h = torch.cat([torch.full((g.n,), g.size[0], device=dev, dtype=torch.int64) for g in groups])
        frame_w = torch.cat([torch.full((g.n,), g.size[1], device=dev, dtype=torch.int64) for g in groups])
        t = boxes.trunc().to(torch.int64)
        fw, fh = frame_w[:, None], frame_h[:, None]
        x0 = t[..., 0].clamp(min=1) - 1
        y0 = t[..., 1].clamp(min=1) - 1
        x1 = torch.minimum(t[..., 2], fw)
        y1 = torch.minimum(t[..., 3], fh)
        ok = (x1 > x0) & (y1 > y0) & (x0 < fw) & (y0 < fh)
        flat = _compact_index(valid.reshape(1, -1), total)[0]  # (T,) frame-major
        frame = flat // width
        good = ok.reshape(-1)[flat]
        # Boxes that cannot be cropped get a 1-pixel crop (computed, then ignored).
        x0, x1 = (torch.where(good, c.reshape(-1)[flat], d) for c, d in ((x0, 0), (x1, 1)))
        y0, y1 = (torch.where(good, c.reshape(-1)[flat], d) for c, d in ((y0, 0), (y1, 1)))
        offsets = np.concatenate([[0], np.cumsum(counts_host)])
        outs = []
        cached = sum(t.numel() * 4 for g in groups for t in g.tables.values())
        for g in groups:
            step = self._frame_batch(g, canvas=False)
            for a in range(0, g.n, step):
                b = min(a + step, g.n)
                lo, hi = int(offsets[g.start + a]), int(offsets[g.start + b])
                if hi == lo:
                    continue
                table = g.tables.get(a)
                if table is None:
                    table = integral_image(g.images[a:b])
                    if cached + table.numel() * 4 <= TABLE_CACHE_BYTES:
                        g.tables[a] = table
                        cached += table.numel() * 4
                for i in range(lo, hi, self.net_batch):
                    sl = slice(i, min(i + self.net_batch, hi))
                    rows = sl.stop - sl.start
                    data = crop_resize_area_nhwc(table, frame[sl] - (g.start + a), y0[sl], y1[sl], x0[sl], x1[sl], size)
                    padded = _bucket(rows, dev)
                    if padded > rows:
                        data = F.pad(data, (0, 0, 0, 0, 0, 0, 0, padded - rows))
                    data = data.sub_(127.5).mul_(0.0078125).permute(0, 3, 1, 2)
                    out = net(data if self.channels_last else data.contiguous())
                    outs.append(tuple(o[:rows] for o in out))
        outs = tuple(torch.cat(o) if len(o) > 1 else o[0] for o in zip(*outs))
        return outs, ok, flat

    def _read(self, counts: torch.Tensor) -> np.ndarray:
        """The pass's allowed host sync: candidates (or faces) per frame, to size the next stage.

        It goes through :func:`dfdc_fast.runtime.fetch`, the one door of the GPU path's
        deliberate reads, so that a rehearsal on fake CUDA tensors (``bench.fake_cuda``)
        answers it from a CPU run of the same frames. Replaying these few reads, rather
        than running the segments between them as separate units, keeps the detector's
        code whole: the fake run takes every branch and chooses every padded width from
        the real counts, as a GPU run of those frames would.
        """
        self.host_reads += 1
        with _sync_allowed(counts.device):
            (host,) = fetch(counts)
        return host.astype(np.int64)


# ---- padded layout helpers ------------------------------------------------------------


def _bucket(n: int, device: torch.device) -> int:
    """Padded size for ``n`` rows: ``n`` on a CPU (no compute wasted); on a GPU the next
    quarter-octave step (8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...), so that shapes repeat
    from call to call (cuDNN plans, capturable graphs) and at most 25% is padding."""
    if device.type == "cpu" or n <= 8:
        return n if device.type == "cpu" else (0 if n == 0 else 8)
    step = 1 << max(0, (n - 1).bit_length() - 3)
    return -(-n // step) * step


def _compact_index(keep: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, width)`` column indices of each row's True entries, in order (padding: 0).

    A cumulative sum and a scatter with a fixed output size: no host sync.
    """
    n, k = keep.shape
    rank = keep.cumsum(1) - 1
    dest = torch.where(keep, rank, width)  # not kept: a spare column, dropped below
    src = torch.arange(k, device=keep.device).expand(n, k)
    out = torch.zeros((n, width + 1), dtype=torch.int64, device=keep.device)
    return out.scatter_(1, dest, src)[:, :width]


def _compact(tensors, keep: torch.Tensor, counts: torch.Tensor, counts_host: np.ndarray, device, exact=False):
    """Move each row's kept entries to its front, in order, and narrow to the padded width
    chosen from the host's counts; returns the gathered tensors and the validity mask."""
    k = int(counts_host.max())
    width = k if exact else _bucket(k, device)
    idx = _compact_index(keep, width)
    valid = torch.arange(width, device=keep.device)[None, :] < counts[:, None]
    out = []
    for t in tensors:
        tail = t.shape[2:]
        out.append(t.gather(1, idx.view(*idx.shape, *([1] * len(tail))).expand(*idx.shape, *tail)))
    return out, valid


def _unflatten(values: torch.Tensor, flat: torch.Tensor, shape, fill: float) -> torch.Tensor:
    """Rows of a flat net output back to the ``(N, W, ...)`` layout, ``fill`` elsewhere."""
    tail = values.shape[1:]
    out = torch.full((shape[0] * shape[1], *tail), fill, dtype=values.dtype, device=values.device)
    out.index_copy_(0, flat, values)
    return out.view(*shape, *tail)


def _sort_by_score(scores: torch.Tensor, valid: torch.Tensor, *tensors):
    """Each row's valid entries by decreasing score (stable: ties keep the previous order), first."""
    key = torch.where(valid, scores, torch.full_like(scores, -1.0))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    out = []
    for t in tensors:
        tail = t.shape[2:]
        out.append(t.gather(1, order.view(*order.shape, *([1] * len(tail))).expand(*order.shape, *tail)))
    return out


def _pad_to(t: torch.Tensor, k: int) -> torch.Tensor:
    if t.shape[1] == k:
        return t
    pad = [0, 0] * (t.dim() - 2) + [0, k - t.shape[1]]
    return F.pad(t, pad)


def _no_faces(n: int, device) -> _Faces:
    return _Faces(torch.zeros((n, 0, 4), device=device), torch.zeros((n, 0), device=device),
                  torch.zeros((n, 0, 5, 2), device=device), torch.zeros(n, dtype=torch.int64, device=device),
                  np.zeros(n, dtype=np.int64))


def _detections(faces: Optional[_Faces], row, indices, frame_size, device) -> Detections:
    """One video's rows of a pass, boxes and landmarks in pixels of its full-resolution frames."""
    (start, n, (sx, sy)), (indices, checked) = row, indices
    if faces is None or n == 0:
        return Detections(frame_indices=indices, boxes=torch.zeros((n, 0, 4), device=device),
                          scores=torch.zeros((n, 0), device=device), counts=torch.zeros(n, dtype=torch.int64, device=device),
                          frame_size=frame_size, landmarks=torch.zeros((n, 0, 5, 2), device=device),
                          check_indices=not checked)
    k = int(faces.counts_host[start:start + n].max())
    rows = slice(start, start + n)
    boxes = faces.boxes[rows, :k].clone()
    landmarks = faces.landmarks[rows, :k].clone()
    boxes[..., 0::2] *= sx
    boxes[..., 1::2] *= sy
    landmarks[..., 0] *= sx
    landmarks[..., 1] *= sy
    return Detections(frame_indices=indices, boxes=boxes, scores=faces.scores[rows, :k].contiguous(),
                      counts=faces.counts[rows], frame_size=frame_size, landmarks=landmarks, check_indices=not checked)


def _frame_indices(fi, n: int) -> tuple[torch.Tensor, bool]:
    """Frame labels as an int64 CPU tensor, and whether they were checked here (lists and
    arrays are, in numpy; a tensor is checked by ``Detections``, which reads it)."""
    if fi is None:
        return torch.arange(n), True
    if isinstance(fi, torch.Tensor):
        t = fi.to(torch.int64)
        t = t if t.device.type == "cpu" else t.cpu()
        if t.shape != (n,):
            raise ValueError(f"{t.numel()} frame indices for {n} frames")
        return t, False
    a = np.asarray(fi, dtype=np.int64).reshape(-1)
    if a.shape != (n,):
        raise ValueError(f"{a.size} frame indices for {n} frames")
    if n > 1 and not (a[1:] > a[:-1]).all():
        raise ValueError("frame_indices must be strictly increasing")
    return torch.from_numpy(a), True


def _block_sums(x: torch.Tensor, ky: int, kx: int) -> torch.Tensor:
    """int32 sums of the ``ky x kx`` blocks of uint8 ``(n, H, W, C)`` frames, by strided adds
    (columns in int16, up to 128 x 255, then rows in int32): no wide copy of the frames."""
    n, fh, fw, c = x.shape
    cols = x.view(n, fh, fw // kx, kx, c)
    s = cols[:, :, :, 0].to(torch.int16)
    for i in range(1, kx):
        s += cols[:, :, :, i]
    rows = s.view(n, fh // ky, ky, fw // kx, c)
    out = rows[:, :, 0].to(torch.int32)
    for i in range(1, ky):
        out += rows[:, :, i]
    return out


# ---- box arithmetic as facenet-pytorch does it ----------------------------------------


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Square around the centre with the longer side (facenet-pytorch's ``rerec``)."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    side = torch.maximum(w, h)
    x0 = boxes[..., 0] + w * 0.5 - side * 0.5
    y0 = boxes[..., 1] + h * 0.5 - side * 0.5
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=-1)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R-/O-Net offsets, in units of the +1 box size (facenet-pytorch's ``bbreg``)."""
    w = boxes[..., 2] - boxes[..., 0] + 1
    h = boxes[..., 3] - boxes[..., 1] + 1
    return boxes + reg * torch.stack([w, h, w, h], dim=-1)


# ---- native op or its fallback ----------------------------------------------------------


def _native_nms(device: torch.device):
    """``dfdc_fast.ops.nms_padded`` when the extension has kernels for ``device`` (or, under
    a fake-tensor mode, its fake kernel); otherwise the pure-torch reference, which syncs
    per set (with a warning saying how to build)."""
    from dfdc_fast.extension import _has_ops, cuda_version

    if _has_ops() and (device.type != "cuda" or cuda_version() >= 0 or detect_fake_mode() is not None):
        from dfdc_fast.ops import nms_padded

        return nms_padded
    log.warning("MTCNN: the native extension (with kernels for %s) is not built; using a slow pure-torch NMS "
                "that syncs per frame. Build it with `bash scripts/setup.sh`.", device.type)
    return nms_padded_reference


@contextlib.contextmanager
def _sync_allowed(device: torch.device):
    """Let one deliberate read through ``torch.cuda.set_sync_debug_mode`` (see ``bench.counting.no_syncs``)."""
    if device.type != "cuda" or torch.cuda.get_sync_debug_mode() == 0:
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


__all__ = ["MTCNN", "MTCNNConfig", "PRESETS", "PNET_DTYPES"]
