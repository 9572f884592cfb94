"""Trained checkpoints as one ensemble: each member scores the faces of many videos at once.

3D members take each face's clip (square 256 crop over the face's frames) in the model's
test transform (centre crop 224, or resize 128 + centre crop 112) and average the clip and
its horizontal flip (the Medics' TTA), both flips in one batch. 2D members take the first
``frames_2d`` crops of each face, letterboxed to the model's size in one ``crop_resize``
call for all faces, every other one flipped, and the median probability over frames (the
Medics' 2D rule), computed on padded per-face rows with no host sync.

Faces of a whole group of videos go through a member together. Clips of equal length share
a batch; with ``static_batch`` every forward pass has the same batch size (the last one is
padded), which is what ``torch.compile`` and CUDA graphs want. Scores stay on the device.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from dfdc_fast.crops.boxes import letterbox_placement
from dfdc_fast.ops import crop_resize, roi_rows
from dfdc_fast.runtime import to_device

log = logging.getLogger("dfdc_fast.infer")


@dataclass
class Member:
    """One checkpoint of the ensemble."""

    name: str
    path: str
    model: torch.nn.Module
    spec: object          # dfdc_fast.models.ModelSpec
    input_size: int
    config: dict = field(default_factory=dict)  # the checkpoint's config (a recipe's crop, role)


def letterbox_crops(canvas: torch.Tensor, sizes: np.ndarray, side: int) -> torch.Tensor:
    """uint8 ``(N, side, side, 3)``: crop ``i`` of ``canvas`` (its top-left ``sizes[i]`` =
    (height, width)) resized isotropically to ``side`` (area down, bicubic up) and
    zero-padded centred, all in one ``crop_resize`` call."""
    n = len(sizes)
    h, w = sizes[:, 0].astype(np.int64), sizes[:, 1].astype(np.int64)
    nw, nh, dx, dy = letterbox_placement(h, w, side)
    rois = roi_rows(n, frame=np.arange(n), window=(0, 0, w, h), out=(nw, nh), at=(dx, dy))
    return crop_resize(canvas.contiguous(), to_device(rois, canvas.device), (side, side), up_mode="bicubic")


def pad_cat(parts: list) -> torch.Tensor:
    """Concatenate (n_i, h_i, w_i, 3) canvases into one, padding to the largest h and w."""
    h = max(p.shape[1] for p in parts)
    w = max(p.shape[2] for p in parts)
    if all(p.shape[1:3] == (h, w) for p in parts):
        return torch.cat(parts)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, w - p.shape[2], 0, h - p.shape[1])) for p in parts])


def member_names(paths: list[str], model_names: list[str] | None = None) -> list[str]:
    """Short unique names: ``<architecture>/<run folder or file stem>``, numbered on clashes.

    Training writes ``runs/<name>/epoch_007.pth``: the run folder says which run, the
    architecture which model, so two runs' ``epoch_007`` stay apart and readable.
    """
    names, seen = [], defaultdict(int)
    for i, p in enumerate(paths):
        stem = os.path.splitext(os.path.basename(p))[0]
        run = os.path.basename(os.path.dirname(os.path.abspath(p)))
        label = f"{run}/{stem}" if re.fullmatch(r"(epoch_\d+|last|best)", stem) and run else stem
        arch = model_names[i] if model_names else None
        base = label if not arch or label.startswith(arch) else f"{arch}:{label}"
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


class Ensemble:
    """Load checkpoints onto ``device`` (strictly, eval mode, channels-last on a GPU).

    Args:
        compile: ``torch.compile`` each member (with ``static_batch``, one graph per clip
            length); measured at load as ``compile_s`` plus the first batch of each shape.
        static_batch: pad every forward pass to ``max_batch`` (default: on when compiling).
    """

    def __init__(self, checkpoints: list[str], device: torch.device, dtype: torch.dtype | None = None,
                 max_batch: int = 16, compile: bool = False, static_batch: bool | None = None):
        from dfdc_fast.models import load_model, model_spec, to_channels_last

        if not checkpoints:
            raise ValueError("inference needs at least one checkpoint (--checkpoints)")
        for p in checkpoints:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"checkpoint {p} not found")
        self.device, self.dtype, self.max_batch = device, dtype, max_batch
        self.static_batch = compile if static_batch is None else static_batch
        # channels-last suits cuDNN; on the CPU it made conv3d and batch norm ~2x slower here
        self.channels_last = device.type == "cuda"
        t0 = time.perf_counter()
        loaded = [load_model(p, device=device) for p in checkpoints]
        self.load_s = time.perf_counter() - t0
        names = member_names(checkpoints, [ck.model_name for _, ck in loaded])
        self.members: list[Member] = []
        for name, path, (model, ckpt) in zip(names, checkpoints, loaded):
            spec = model_spec(ckpt.model_name)
            size = int((ckpt.config or {}).get("input_size") or spec.input_size)
            if self.channels_last:
                model = to_channels_last(model)  # per tensor: the *_seq clip models hold 4-D weights
            model = model.eval()
            self.members.append(Member(name, path, model, spec, size, dict(ckpt.config or {})))
        self.compile_s = 0.0
        if compile:
            t0 = time.perf_counter()
            for m in self.members:
                m.model = torch.compile(m.model, dynamic=False)
            self.compile_s = time.perf_counter() - t0

    def __len__(self) -> int:
        return len(self.members)

    @property
    def kinds(self) -> set:
        return {m.spec.kind for m in self.members}

    def _forward(self, member: Member, x: torch.Tensor, per_frame: bool = False) -> torch.Tensor:
        """Probability of FAKE for a batch of model inputs in [0, 1], in chunks of ``max_batch``:
        ``(n,)``, or ``(n, T)`` with ``per_frame`` (a model with one logit per frame)."""
        from dfdc_fast.models import normalize

        out = []
        fmt = (torch.channels_last_3d if x.dim() == 5 else torch.channels_last) if self.channels_last else torch.contiguous_format
        for part in x.split(self.max_batch):
            n = part.shape[0]
            if self.static_batch and n < self.max_batch:  # one shape for every call
                part = torch.cat([part, part.new_zeros((self.max_batch - n, *part.shape[1:]))])
            part = normalize(part, member.spec).contiguous(memory_format=fmt)
            with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext():
                logits = member.model(part)
            logits = logits.float().reshape(part.shape[0], -1)[:n]
            out.append(torch.sigmoid(logits if per_frame else logits[:, 0]))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    @torch.no_grad()
    def score_clips(self, member: Member, clips: list[torch.Tensor], tta: bool = True) -> torch.Tensor:
        """(n,) probabilities for uint8 face clips ``(T_i, S, S, 3)`` (lengths may differ)."""
        from dfdc_fast.augment import medics_clip_eval

        scores = torch.zeros(len(clips), device=self.device)
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(clips):
            by_length[c.shape[0]].append(i)
        transform = medics_clip_eval(member.input_size).to(self.device)
        for _, idx in sorted(by_length.items()):
            x = torch.stack([clips[i] for i in idx]).permute(0, 4, 1, 2, 3).float().div_(255)
            x = transform(x)
            if tta:
                p = self._forward(member, torch.cat([x, x.flip(-1)])).view(2, len(idx)).mean(0)
            else:
                p = self._forward(member, x)
            scores[to_device(np.asarray(idx, dtype=np.int64), self.device)] = p
        return scores

    @torch.no_grad()
    def score_each_crop(self, member: Member, canvas: torch.Tensor, sizes: np.ndarray) -> torch.Tensor:
        """(n,) probabilities, one per crop (Selim's inference): each crop of ``canvas``
        (uint8 ``(N, H, W, 3)``, crop ``i`` in its top-left ``sizes[i]``) resized
        isotropically to the member's side (area down, bicubic up) and zero-padded centred,
        all in one ``crop_resize`` call; no flip."""
        s = member.input_size
        n = len(sizes)
        if n == 0:
            return torch.zeros(0, device=self.device)
        images = letterbox_crops(canvas, sizes, s)
        return self._forward(member, images.permute(0, 3, 1, 2).float().div_(255))

    @torch.no_grad()
    def score_windows(self, member: Member, windows: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
        """(n,) probabilities of uint8 windows ``(n, T, H, W, 3)`` already cut to the model's
        input (NTechLab's 224 x 192): a 3D member takes each window as a clip (``(n, T)``
        per-frame probabilities from a model with per-frame logits), a 2D member its frames
        (T = 1, or the mean over T); ``flip[i]`` flips window ``i``."""
        n, t = windows.shape[:2]
        if n == 0:
            return torch.zeros(0, device=self.device)
        x = windows.permute(0, 4, 1, 2, 3).float().div_(255)  # (n, 3, T, H, W)
        flips = to_device(np.asarray(flip, dtype=bool), self.device)
        x = torch.where(flips[:, None, None, None, None], x.flip(-1), x)
        if member.spec.kind == "3d":
            per_frame = getattr(member.model, "output", "clip") == "frames"  # NTechLab's sequence model
            return self._forward(member, x, per_frame=per_frame)
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, *x.shape[1:2], *x.shape[3:])
        return self._forward(member, frames).view(n, t).mean(1)

    @torch.no_grad()
    def score_crops(self, member: Member, canvas: torch.Tensor, sizes: np.ndarray, face: np.ndarray,
                    rank: np.ndarray, n_faces: int) -> torch.Tensor:
        """(n_faces,) probabilities from 2D crops: per face the median over its crops.

        ``canvas`` is uint8 ``(N, H, W, 3)`` with crop ``i`` in its top-left ``sizes[i]``
        (height, width); ``face[i]`` and ``rank[i]`` say whose crop it is and its place in
        that face's sequence (odd ranks are flipped, as the Medics did).
        """
        s = member.input_size
        n = len(sizes)
        if n == 0:
            return torch.full((n_faces,), 0.5, device=self.device)
        images = letterbox_crops(canvas, sizes, s)
        flip = to_device((rank % 2 == 1), self.device)
        images = torch.where(flip[:, None, None, None], images.flip(2), images)
        p = self._forward(member, images.permute(0, 3, 1, 2).float().div_(255))
        k = int(rank.max()) + 1
        table = torch.full((n_faces, k), float("nan"), device=self.device)
        table[to_device(face.astype(np.int64), self.device), to_device(rank.astype(np.int64), self.device)] = p
        median = table.nanmedian(dim=1).values
        return torch.where(median.isnan(), torch.full_like(median, 0.5), median)
