"""``Detections``: the faces found on the sampled frames of one video.

Padded tensors rather than a list per frame, so detector, tracker and cropper can work
on all frames at once on the device: row ``f`` holds ``counts[f]`` faces, the rest of
the row is zero padding.
"""
from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import Optional, Sequence

import numpy as np
import torch


@dataclass
class Detections:
    """Faces on ``F`` sampled frames, at most ``K`` per frame.

    Attributes:
        frame_indices: int64 ``(F,)`` on CPU: absolute, strictly increasing indices of
            the sampled frames in the video.
        boxes: float32 ``(F, K, 4)`` as ``(x0, y0, x1, y1)`` in pixels of the
            full-resolution frame, whatever scale the detector ran at.
        scores: float32 ``(F, K)``, face probabilities.
        counts: int64 ``(F,)``, valid faces per frame; rows ``k >= counts[f]`` are padding.
        frame_size: ``(height, width)`` of the full-resolution frame.
        landmarks: float32 ``(F, K, 5, 2)`` (eyes, nose, mouth corners as x, y) or None.
        check_indices: check that ``frame_indices`` increase (reads them on the host);
            the detector passes False for indices it has already checked in numpy.

    ``boxes``, ``scores``, ``counts`` and ``landmarks`` share one device.
    """

    frame_indices: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    counts: torch.Tensor
    frame_size: tuple[int, int]
    landmarks: Optional[torch.Tensor] = None
    check_indices: InitVar[bool] = True

    def __post_init__(self, check_indices: bool = True):
        fi, b, s, c = self.frame_indices, self.boxes, self.scores, self.counts
        if fi.dim() != 1 or fi.dtype != torch.int64 or fi.device.type != "cpu":
            raise ValueError(f"frame_indices must be int64 (F,) on CPU, got {fi.dtype} {tuple(fi.shape)} on {fi.device}")
        F = fi.shape[0]
        if check_indices and F > 1 and not (np.diff(fi.numpy()) > 0).all():  # host data: numpy, no device sync
            raise ValueError("frame_indices must be strictly increasing")
        if b.dim() != 3 or b.shape[0] != F or b.shape[2] != 4:
            raise ValueError(f"boxes must be (F={F}, K, 4), got {tuple(b.shape)}")
        K = b.shape[1]
        if s.shape != (F, K):
            raise ValueError(f"scores must be (F, K) = {(F, K)}, got {tuple(s.shape)}")
        if c.shape != (F,) or c.dtype != torch.int64:
            raise ValueError(f"counts must be int64 (F,) = ({F},), got {c.dtype} {tuple(c.shape)}")
        if self.landmarks is not None and self.landmarks.shape != (F, K, 5, 2):
            raise ValueError(f"landmarks must be (F, K, 5, 2), got {tuple(self.landmarks.shape)}")
        devices = {t.device for t in (b, s, c) + ((self.landmarks,) if self.landmarks is not None else ())}
        if len(devices) != 1:
            raise ValueError(f"boxes, scores, counts and landmarks must share a device, got {devices}")
        h, w = self.frame_size
        self.frame_size = (int(h), int(w))

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def __len__(self) -> int:
        return self.frame_indices.shape[0]

    @property
    def valid(self) -> torch.Tensor:
        """bool ``(F, K)``: which rows are faces rather than padding."""
        k = torch.arange(self.boxes.shape[1], device=self.device)
        return k[None, :] < self.counts[:, None]

    def __repr__(self) -> str:
        F, K = self.boxes.shape[:2]
        lm = "" if self.landmarks is None else ", landmarks"
        return (
            f"Detections(frames={F}, max_faces={K}, frame_size={self.frame_size}, "
            f"device={self.device}{lm})"
        )

    @classmethod
    def from_lists(
        cls,
        frame_indices: Sequence[int] | torch.Tensor,
        boxes: Sequence,
        scores: Optional[Sequence] = None,
        *,
        frame_size: tuple[int, int],
        landmarks: Optional[Sequence] = None,
        device: torch.device | str | None = None,
    ) -> "Detections":
        """Build from one ``(n_f, 4)`` array per frame (None or empty for no face).

        ``scores`` defaults to 1 for every face. This is the bridge from per-frame
        detector outputs (facenet-pytorch's ``detect`` returns such lists).
        """
        fi = torch.as_tensor(frame_indices, dtype=torch.int64).cpu().reshape(-1)
        if len(boxes) != fi.shape[0]:
            raise ValueError(f"{len(boxes)} box arrays for {fi.shape[0]} frames")

        def rows(x, shape_tail):
            if x is None:
                return torch.zeros((0, *shape_tail), dtype=torch.float32)
            if getattr(x, "dtype", None) == object:  # numpy object arrays (facenet-pytorch's batches)
                x = x.astype("float32")
            return torch.as_tensor(x, dtype=torch.float32).reshape(-1, *shape_tail).cpu()

        bl = [rows(b, (4,)) for b in boxes]
        if scores is None:
            sl = [torch.ones(len(b)) for b in bl]
        else:  # a frame without boxes may carry a placeholder score (facenet-pytorch: [None])
            sl = [rows(s, ()) if len(b) else torch.zeros(0) for s, b in zip(scores, bl)]
        ll = [rows(x, (5, 2)) if len(b) else torch.zeros(0, 5, 2) for x, b in zip(landmarks, bl)] if landmarks is not None else None
        F, K = fi.shape[0], max([len(b) for b in bl], default=0)
        out_b = torch.zeros((F, K, 4))
        out_s = torch.zeros((F, K))
        out_l = torch.zeros((F, K, 5, 2)) if ll is not None else None
        for f, (b, s) in enumerate(zip(bl, sl)):
            if len(s) != len(b):
                raise ValueError(f"frame {f}: {len(b)} boxes but {len(s)} scores")
            out_b[f, : len(b)] = b
            out_s[f, : len(b)] = s
            if out_l is not None:
                out_l[f, : len(b)] = ll[f]
        counts = torch.tensor([len(b) for b in bl], dtype=torch.int64)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return cls(
            frame_indices=fi,
            boxes=out_b.to(dev),
            scores=out_s.to(dev),
            counts=counts.to(dev),
            frame_size=frame_size,
            landmarks=out_l.to(dev) if out_l is not None else None,
        )
