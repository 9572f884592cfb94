"""Trained checkpoints as one ensemble: each member scores the faces of many videos at once.

3D members take each face's clip (square 256 crop over the face's frames) in the model's
test transform (centre crop 224, or resize 128 + centre crop 112) and average the clip and
its horizontal flip (the Medics' TTA). 2D members take the first ``frames_2d`` per-frame
crops of each face, flip every other one, and take the median probability over frames (the
Medics' 2D rule). Faces of all videos in a group go through a member together, clips of
equal length in one batch.
"""
from __future__ import annotations

import os
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Member:
    """One checkpoint of the ensemble."""

    name: str
    path: str
    model: torch.nn.Module
    spec: object          # dfdc_fast.models.ModelSpec
    input_size: int


def member_names(paths: list[str]) -> list[str]:
    """Unique short names for checkpoint files (file stem, numbered on clashes)."""
    names, seen = [], defaultdict(int)
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        seen[stem] += 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


class Ensemble:
    """Load checkpoints onto ``device`` (strictly, eval mode, channels-last on a GPU)."""

    def __init__(self, checkpoints: list[str], device: torch.device, dtype: torch.dtype | None = None,
                 max_batch: int = 16):
        from dfdc_fast.models import load_model, model_spec

        if not checkpoints:
            raise ValueError("inference needs at least one checkpoint (--checkpoints)")
        self.device, self.dtype, self.max_batch = device, dtype, max_batch
        # channels-last suits cuDNN; on the CPU it made conv3d and batch norm ~2x slower here
        self.channels_last = device.type == "cuda"
        self.members: list[Member] = []
        for name, path in zip(member_names(checkpoints), checkpoints):
            model, ckpt = load_model(path, device=device)
            spec = model_spec(ckpt.model_name)
            size = int((ckpt.config or {}).get("input_size") or spec.input_size)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last_3d if spec.kind == "3d" else torch.channels_last)
            self.members.append(Member(name, path, model.eval(), spec, size))

    def __len__(self) -> int:
        return len(self.members)

    def _forward(self, member: Member, x: torch.Tensor) -> torch.Tensor:
        """Probability of FAKE for a batch of model inputs, in chunks of ``max_batch``."""
        from dfdc_fast.models import normalize

        out = []
        fmt = (torch.channels_last_3d if x.dim() == 5 else torch.channels_last) if self.channels_last else torch.contiguous_format
        for part in x.split(self.max_batch):
            part = normalize(part, member.spec).contiguous(memory_format=fmt)
            with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext():
                logits = member.model(part)
            out.append(torch.sigmoid(logits.float().reshape(len(part), -1)[:, 0]))
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
        for _, idx in by_length.items():
            x = torch.stack([clips[i] for i in idx]).permute(0, 4, 1, 2, 3).float().div_(255)
            x = transform(x)
            if tta:
                p = self._forward(member, torch.cat([x, x.flip(-1)])).view(2, len(idx)).mean(0)
            else:
                p = self._forward(member, x)
            scores[torch.tensor(idx, device=self.device)] = p
        return scores

    @torch.no_grad()
    def score_crops(self, member: Member, crops_per_face: list[list[torch.Tensor]]) -> torch.Tensor:
        """(n,) probabilities: per face, the median over its frame crops (every other flipped)."""
        from dfdc_fast.crops import letterbox

        images, owner = [], []
        for face, crops in enumerate(crops_per_face):
            for k, crop in enumerate(crops):
                img = letterbox(crop, member.input_size)
                images.append(img.flip(1) if k % 2 else img)
                owner.append(face)
        if not images:
            return torch.zeros(len(crops_per_face), device=self.device)
        x = torch.stack(images).permute(0, 3, 1, 2).float().div_(255)
        p = self._forward(member, x)
        owner_t = torch.tensor(owner, device=self.device)
        return torch.stack([p[owner_t == f].median() if (owner_t == f).any() else torch.tensor(0.5, device=self.device)
                            for f in range(len(crops_per_face))])
