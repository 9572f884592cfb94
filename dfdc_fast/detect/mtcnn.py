"""Batched MTCNN: facenet-pytorch's detector, rewritten so that a batch of frames is a few
large device kernels per stage instead of loops over images and boxes.

The arithmetic of every stage follows facenet-pytorch 2.x (pyramid, box regression,
squaring, clamping, +1 pixel conventions, the three NMS passes), so the boxes, scores and
landmarks match it (see tests/test_detect.py for the tolerances). What changes is how:

* P-Net runs once per pyramid scale on all frames; candidates of all scales and frames are
  selected with fixed-size top-k (bounded memory) and one boolean gather.
* Candidates are cropped and resized for R-Net and O-Net all at once from summed-area
  tables (``resample.py``), exact area averaging with no per-box loop.
* NMS is ``torchvision.ops.batched_nms`` per frame, and a vectorised "intersection over
  minimum" NMS for the last stage (``nms.py``).
* Frames of several sizes (several videos) go through one call: P-Net per size, R-Net and
  O-Net over the candidates of all of them together.

Host syncs happen only where a tensor's size depends on data (after candidate
selection and each NMS), a handful per batch, never per frame or per box.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from dfdc_fast.detect.nets import load_nets
from dfdc_fast.detect.nms import nms_min
from dfdc_fast.detect.resample import crop_resize_area, summed_area_table
from dfdc_fast.detect.types import Detections

log = logging.getLogger(__name__)

SIZE_RULES = ("selim", "ntech_area")


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
    #: P-Net candidates kept per frame and pyramid scale, the most probable first. Bounds
    #: memory on busy frames; facenet-pytorch has no cap (a cap that binds changes results).
    max_candidates: int = 5000
    #: Frames per pass; halved and retried when the GPU runs out of memory.
    frame_batch: int = 256
    #: Crops per R-Net / O-Net forward.
    net_batch: int = 8192

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
        for name in ("max_candidates", "frame_batch", "net_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

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
class _Faces:
    """Faces found in a batch: flat tensors, ``image`` indexing the batch's frames."""

    boxes: torch.Tensor  # (M, 4)
    scores: torch.Tensor  # (M,)
    landmarks: torch.Tensor  # (M, 5, 2)
    image: torch.Tensor  # (M,) int64


@dataclass
class _Group:
    """Frames of one size, as the nets see them."""

    images: torch.Tensor  # float32 (n, 3, h, w), values 0..255
    index: torch.Tensor  # int64 (n,) on the device: the frames' positions in the batch
    table: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[2], self.images.shape[3]


class MTCNN:
    """Batched MTCNN face detector on ``device``.

    Args:
        device: where the nets run and results live ("cpu", "cuda", "cuda:1", ...).
        config: an :class:`MTCNNConfig` or the name of a preset in ``PRESETS``.
        weights_dir: folder with ``pnet.pt``, ``rnet.pt``, ``onet.pt``; default: the
            installed facenet-pytorch package's.
        **overrides: fields of the config to replace.
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

    def __repr__(self) -> str:
        return f"MTCNN(device={self.device}, config={self.config})"

    @torch.inference_mode()
    def detect(self, frames: torch.Tensor, frame_indices: Optional[Sequence[int] | torch.Tensor] = None) -> Detections:
        """Faces on each frame of a uint8 ``(N, H, W, 3)`` RGB batch (any device).

        Returns a :class:`Detections` on this detector's device, boxes and landmarks in
        pixels of the given frames, faces of each frame by decreasing score.
        ``frame_indices`` labels the frames (default ``0..N-1``).
        """
        return self.detect_many([frames], [frame_indices])[0]

    @torch.inference_mode()
    def detect_many(self, videos: Sequence[torch.Tensor],
                    frame_indices: Optional[Sequence[Optional[Sequence[int] | torch.Tensor]]] = None) -> list[Detections]:
        """Like :meth:`detect` for several frame batches (of any sizes) at once.

        R-Net and O-Net see the candidates of all batches together, so detecting the
        sampled frames of many videos in one call is faster than one call per video.
        """
        frame_indices = list(frame_indices) if frame_indices is not None else [None] * len(videos)
        if len(frame_indices) != len(videos):
            raise ValueError(f"{len(frame_indices)} frame index lists for {len(videos)} frame batches")
        for v in videos:
            if v.dtype != torch.uint8 or v.dim() != 4 or v.shape[-1] != 3:
                raise ValueError(f"frames must be uint8 (N, H, W, 3), got {v.dtype} {tuple(v.shape)}")
        sizes = [v.shape[0] for v in videos]
        frames = [f for v in videos for f in v]  # views, no copies
        faces = self._detect_frames(frames, self.config.thresholds, self.config.max_faces)
        if self.config.fallback_thresholds is not None:
            faces = self._fallback(frames, faces)
        out, start = [], 0
        for v, n, fi in zip(videos, sizes, frame_indices):
            sel = (faces.image >= start) & (faces.image < start + n)
            part = _Faces(faces.boxes[sel], faces.scores[sel], faces.landmarks[sel], faces.image[sel] - start)
            idx = torch.arange(n) if fi is None else torch.as_tensor(fi, dtype=torch.int64).cpu()
            out.append(_pad(part, n, idx, (v.shape[1], v.shape[2])))
            start += n
        return out

    # ---- the passes ----------------------------------------------------------------

    def _fallback(self, frames, faces: _Faces) -> _Faces:
        cfg = self.config
        found = torch.zeros(len(frames), dtype=torch.bool, device=self.device)
        found[faces.image] = True
        missing = (~found).nonzero().flatten().tolist()
        if not missing:
            return faces
        extra = self._detect_frames([frames[i] for i in missing], cfg.fallback_thresholds, cfg.fallback_max_faces)
        extra.image = torch.as_tensor(missing, device=self.device, dtype=torch.int64)[extra.image]
        return _Faces(*(torch.cat([a, b]) for a, b in zip(
            (faces.boxes, faces.scores, faces.landmarks, faces.image),
            (extra.boxes, extra.scores, extra.landmarks, extra.image))))

    def _detect_frames(self, frames: list[torch.Tensor], thresholds, max_faces) -> _Faces:
        """All frames, in passes of at most ``frame_batch``, shrinking on out-of-memory."""
        parts, start, batch = [], 0, self.config.frame_batch
        while start < len(frames):
            chunk = frames[start:start + batch]
            try:
                faces = self._detect_batch(chunk, thresholds, max_faces)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch = max(1, batch // 2)
                log.warning("MTCNN: out of memory, retrying with %d frames per pass", batch)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            faces.image += start
            parts.append(faces)
            start += len(chunk)
        if not parts:
            return _empty_faces(self.device)
        return _Faces(*(torch.cat(t) for t in zip(*((p.boxes, p.scores, p.landmarks, p.image) for p in parts))))

    def _detect_batch(self, frames: list[torch.Tensor], thresholds, max_faces) -> _Faces:
        groups = self._prepare(frames)
        boxes, scores, image = [], [], []
        for g in groups:
            b, s, i = self._stage_pnet(g, thresholds[0])
            boxes.append(b), scores.append(s), image.append(g.index[i])
        boxes, scores, image = torch.cat(boxes), torch.cat(scores), torch.cat(image)
        if boxes.shape[0]:
            boxes, scores, image = self._stage_rnet(groups, boxes, image, thresholds[1])
        faces = self._stage_onet(groups, boxes, image, thresholds[2])
        return _select(_to_frame_pixels(faces, groups, frames), max_faces, len(frames))

    def _prepare(self, frames: list[torch.Tensor]) -> list[_Group]:
        """Group frames by size, move them to the device, resize them as configured."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault((f.shape[0], f.shape[1]), []).append(i)
        groups = []
        for (h, w), idx in by_size.items():
            x = torch.stack([frames[i] for i in idx]).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float()
            factor = self.config.resize_factor(h, w)
            if factor != 1.0:
                size = (max(1, round(h * factor)), max(1, round(w * factor)))
                mode = "area" if factor < 1 else "bilinear"
                x = F.interpolate(x, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
                x = x.round_().clamp_(0, 255)
            groups.append(_Group(images=x, index=torch.tensor(idx, device=self.device)))
        return groups

    def _stage_pnet(self, g: _Group, threshold: float):
        """P-Net over the image pyramid of a group; returns squared candidate boxes."""
        imgs = g.images
        n, h, w = imgs.shape[0], imgs.shape[2], imgs.shape[3]
        scales = _pyramid(h, w, self.config.min_face_size, self.config.factor)
        if not scales:
            return _empty_candidates(self.device)
        cand_boxes, cand_scores, cand_regs, cand_valid, cand_key = [], [], [], [], []
        for si, s in enumerate(scales):
            data = F.interpolate(imgs, size=(int(h * s + 1), int(w * s + 1)), mode="area")
            reg, prob = self.pnet((data - 127.5) * 0.0078125)
            hs, ws = prob.shape[1], prob.shape[2]
            k = min(self.config.max_candidates, hs * ws)
            top, pos = prob.reshape(n, -1).topk(k, dim=1)
            xy = torch.stack([pos % ws, pos // ws], dim=-1).to(imgs.dtype)  # (n, k, 2) cell column, row
            q1 = ((2 * xy + 1) / s).floor()
            q2 = ((2 * xy + 12) / s).floor()
            cand_boxes.append(torch.cat([q1, q2], dim=-1))
            cand_scores.append(top)
            cand_regs.append(reg.reshape(n, 4, -1).gather(2, pos[:, None, :].expand(n, 4, k)).transpose(1, 2))
            cand_valid.append(top >= threshold)
            # facenet-pytorch's order of candidates: scale, then frame, then raster position
            frame = torch.arange(n, device=self.device)[:, None]
            cand_key.append((si * n + frame) * (hs * ws) + pos)
        valid = torch.cat(cand_valid, 1)
        image, j = valid.nonzero(as_tuple=True)  # the stage's one size sync
        key = torch.cat(cand_key, 1)[image, j]
        order = torch.argsort(key, stable=True)
        image, j = image[order], j[order]
        boxes = torch.cat(cand_boxes, 1)[image, j]
        scores = torch.cat(cand_scores, 1)[image, j]
        regs = torch.cat(cand_regs, 1)[image, j]
        scale_id = torch.cat([torch.full((n, b.shape[1]), si, device=self.device)
                              for si, b in enumerate(cand_boxes)], 1)[image, j]

        keep = batched_nms(boxes, scores, image * len(scales) + scale_id, 0.5)  # per frame and scale
        keep = keep[torch.argsort(scale_id[keep], stable=True)]  # scale by scale, as facenet-pytorch
        boxes, scores, regs, image = boxes[keep], scores[keep], regs[keep], image[keep]
        keep = batched_nms(boxes, scores, image, 0.7)  # per frame, across scales
        boxes, scores, regs, image = boxes[keep], scores[keep], regs[keep], image[keep]
        wh = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).repeat(1, 2)
        return _square(boxes + regs * wh), scores, image

    def _crops(self, groups: list[_Group], boxes: torch.Tensor, image: torch.Tensor, size: int):
        """Area-resized crops of every box, like facenet-pytorch's pad() + loop; drops empty ones."""
        n_frames = int(sum(g.index.numel() for g in groups))
        group_of = torch.empty(n_frames, dtype=torch.int64, device=self.device)
        local_of = torch.empty(n_frames, dtype=torch.int64, device=self.device)
        frame_size = torch.empty((n_frames, 2), dtype=torch.int64, device=self.device)
        for gi, g in enumerate(groups):
            group_of[g.index] = gi
            local_of[g.index] = torch.arange(g.index.numel(), device=self.device)
            frame_size[g.index] = torch.tensor(g.size, device=self.device)
        sizes = frame_size[image]
        t = boxes.trunc().to(torch.int64)
        x0 = t[:, 0].clamp(min=1) - 1
        y0 = t[:, 1].clamp(min=1) - 1
        x1 = torch.minimum(t[:, 2], sizes[:, 1])
        y1 = torch.minimum(t[:, 3], sizes[:, 0])
        ok = (x1 > x0) & (y1 > y0) & (x0 < sizes[:, 1]) & (y0 < sizes[:, 0])
        out = torch.empty((image.shape[0], 3, size, size), device=self.device)
        for gi, g in enumerate(groups):
            idx = (ok & (group_of[image] == gi)).nonzero().flatten()
            if idx.numel() == 0:
                continue
            if g.table is None:
                g.table = summed_area_table(g.images)
            out[idx] = crop_resize_area(g.table, local_of[image[idx]], y0[idx], y1[idx], x0[idx], x1[idx], size)
        return (out - 127.5) * 0.0078125, ok

    def _run_net(self, net, data: torch.Tensor):
        step = self.config.net_batch
        outs = [net(data[i:i + step]) for i in range(0, data.shape[0], step)]
        return tuple(torch.cat(o) for o in zip(*outs))

    def _stage_rnet(self, groups, boxes, image, threshold):
        data, ok = self._crops(groups, boxes, image, 24)
        boxes, data, image = boxes[ok], data[ok], image[ok]
        reg, prob = self._run_net(self.rnet, data)
        passed = prob > threshold
        boxes, scores, reg, image = boxes[passed], prob[passed], reg[passed], image[passed]
        keep = batched_nms(boxes, scores, image, 0.7)
        boxes, scores, reg, image = boxes[keep], scores[keep], reg[keep], image[keep]
        return _square(_regress(boxes, reg)), scores, image

    def _stage_onet(self, groups, boxes, image, threshold) -> _Faces:
        if boxes.shape[0] == 0:
            return _empty_faces(self.device)
        data, ok = self._crops(groups, boxes, image, 48)
        boxes, data, image = boxes[ok], data[ok], image[ok]
        reg, points, prob = self._run_net(self.onet, data)
        passed = prob > threshold
        boxes, scores, reg, points, image = boxes[passed], prob[passed], reg[passed], points[passed], image[passed]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = w * points[:, :5] + boxes[:, 0:1] - 1
        ly = h * points[:, 5:] + boxes[:, 1:2] - 1
        landmarks = torch.stack([lx, ly], dim=-1)
        boxes = _regress(boxes, reg)
        keep = nms_min(boxes, scores, image, 0.7)
        return _Faces(boxes[keep], scores[keep], landmarks[keep], image[keep])


# ---- box arithmetic as facenet-pytorch does it ----------------------------------------


def _pyramid(h: int, w: int, min_face_size: float, factor: float) -> list[float]:
    m = 12.0 / min_face_size
    side = min(h, w) * m
    scales, s = [], m
    while side >= 12:
        scales.append(s)
        s *= factor
        side *= factor
    return scales


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Square around the centre with the longer side (facenet-pytorch's ``rerec``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x0 = boxes[:, 0] + w * 0.5 - side * 0.5
    y0 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R-/O-Net offsets, in units of the +1 box size (facenet-pytorch's ``bbreg``)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * torch.stack([w, h, w, h], dim=1)


def _to_frame_pixels(faces: _Faces, groups: list[_Group], frames: list[torch.Tensor]) -> _Faces:
    """Undo the pre-detection resize: coordinates in pixels of the frames given."""
    if faces.image.numel() == 0:
        return faces
    sx = torch.ones(len(frames), device=faces.boxes.device)
    sy = torch.ones(len(frames), device=faces.boxes.device)
    for g in groups:
        fh, fw = frames[int(g.index[0])].shape[:2]
        sy[g.index] = fh / g.images.shape[2]
        sx[g.index] = fw / g.images.shape[3]
    kx, ky = sx[faces.image], sy[faces.image]
    boxes = faces.boxes * torch.stack([kx, ky, kx, ky], 1)
    landmarks = faces.landmarks * torch.stack([kx, ky], 1)[:, None, :]
    return _Faces(boxes, faces.scores, landmarks, faces.image)


def _select(faces: _Faces, max_faces: Optional[int], n_frames: int) -> _Faces:
    """Order each frame's faces by decreasing score and keep the first ``max_faces``."""
    order = torch.argsort(faces.scores, descending=True, stable=True)
    order = order[torch.argsort(faces.image[order], stable=True)]
    faces = _Faces(faces.boxes[order], faces.scores[order], faces.landmarks[order], faces.image[order])
    if max_faces is None or faces.image.numel() == 0:
        return faces
    keep = _rank_in_frame(faces.image, n_frames) < max_faces
    return _Faces(faces.boxes[keep], faces.scores[keep], faces.landmarks[keep], faces.image[keep])


def _rank_in_frame(image: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Position of each face within its frame, for ``image`` sorted ascending."""
    idx = torch.arange(image.numel(), device=image.device)
    first = torch.zeros(n_frames, dtype=idx.dtype, device=idx.device)
    first = first.scatter_reduce(0, image, idx, reduce="amin", include_self=False)
    return idx - first[image]


def _pad(faces: _Faces, n: int, frame_indices: torch.Tensor, frame_size: tuple[int, int]) -> Detections:
    dev = faces.boxes.device
    counts = torch.bincount(faces.image, minlength=n) if faces.image.numel() else torch.zeros(n, dtype=torch.int64, device=dev)
    k = int(counts.max()) if n else 0  # the result's one size sync
    boxes = torch.zeros((n, k, 4), device=dev)
    scores = torch.zeros((n, k), device=dev)
    landmarks = torch.zeros((n, k, 5, 2), device=dev)
    if faces.image.numel():
        rank = _rank_in_frame(faces.image, n)
        boxes[faces.image, rank] = faces.boxes
        scores[faces.image, rank] = faces.scores
        landmarks[faces.image, rank] = faces.landmarks
    if frame_indices.shape != (n,):
        raise ValueError(f"{frame_indices.numel()} frame indices for {n} frames")
    return Detections(frame_indices=frame_indices, boxes=boxes, scores=scores, counts=counts,
                      frame_size=frame_size, landmarks=landmarks)


def _empty_faces(device) -> _Faces:
    return _Faces(torch.zeros((0, 4), device=device), torch.zeros(0, device=device),
                  torch.zeros((0, 5, 2), device=device), torch.zeros(0, dtype=torch.int64, device=device))


def _empty_candidates(device):
    return torch.zeros((0, 4), device=device), torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device)


__all__ = ["MTCNN", "MTCNNConfig", "PRESETS"]
