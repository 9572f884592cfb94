"""Scorers for what a recipe's request cuts, other than the Medics' tracks (pipeline's
:class:`~dfdc_fast.infer.pipeline.FaceScorer`):

* :class:`CropScorer` -- one crop per detected face and no tracks (Selim's inference): every
  member scores every crop, letterboxed to its side (at most ``max_faces`` per video).
* :class:`WindowScorer` -- windows of tracks (NTechLab's): a sequence member scores each
  clip window, one probability per frame when it gives per-frame logits (theirs did); a
  frame member scores the frame windows of its crop (their model A and B take alternate
  pairs); every other window is flipped (the first one included, as their ``i % 2 == 0``).

Both take a loaded :class:`~dfdc_fast.infer.ensemble.Ensemble` and give, per engine result,
member name -> probabilities (host floats), one transfer per member and group.
"""
from __future__ import annotations

import numpy as np
import torch

from dfdc_fast.infer.budget import LEVELS
from dfdc_fast.infer.ensemble import pad_cat
from dfdc_fast.runtime import fetch


def _members(ensemble, level: int) -> list:
    n_models = LEVELS[level][3]
    return ensemble.members if n_models is None else ensemble.members[:n_models]


class CropScorer:
    """Every detected face's crop through every 2D member."""

    def __init__(self, config, ensemble, device: torch.device):
        self.config, self.ensemble, self.device = config, ensemble, device

    @staticmethod
    def faces(res) -> int:
        """How many crops a result gives to each member."""
        return len(res.crops)

    def score(self, faces: list, level: int) -> list[dict]:
        cap = self.config.max_faces
        parts, sizes, owner = [], [], []
        for vi, res in enumerate(faces):
            if res.crop_data is None or not res.crops:
                continue
            keep = min(len(res.crops), cap)
            parts.append(res.crop_data[:keep].to(self.device, non_blocking=True))
            sizes += [c.size for c in res.crops[:keep]]
            owner += [vi] * keep
        per_video = [dict() for _ in faces]
        if not owner:
            return per_video
        members = _members(self.ensemble, level)
        canvas = pad_cat(parts)
        sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        (table,) = fetch(torch.stack([self.ensemble.score_each_crop(m, canvas, sizes) for m in members]).float())  # one transfer
        owner = np.asarray(owner)
        for mi, m in enumerate(members):
            for vi in range(len(faces)):
                if (owner == vi).any():
                    per_video[vi][m.name] = table[mi, owner == vi].tolist()
        return per_video


#: NTechLab's two frame models share every 2nd frame of a track: samples 0, 1 go to model A
#: ("large_crop"), 2, 3 to model B ("re"), and so on (their ``i % 4 < 2``).
ALTERNATING_ROLES = {"large_crop": (0, 1), "re": (2, 3)}


class WindowScorer:
    """Track windows through the members of their kind (3D: clip windows, 2D: frames).

    Each member takes the windows cut for it: a 3D member the clip windows, a 2D member the
    frame windows of its checkpoint's crop (``ntech_crop`` ``resize_pad``: NTechLab's model A,
    reflect-padded; otherwise shorter side and centre crop). When both of NTechLab's frame
    models are members, they take alternate pairs of samples (:data:`ALTERNATING_ROLES`), as
    their ``predict.py`` did; any other member takes every sample.
    """

    def __init__(self, config, ensemble, device: torch.device, windows: list):
        self.config, self.ensemble, self.device = config, ensemble, device
        self.window_of = {m.name: self._window_for(m, windows) for m in ensemble.members}
        roles = {m.config.get("ntech_role") for m in ensemble.members if m.spec.kind == "2d"}
        alternate = set(ALTERNATING_ROLES) <= roles
        self.phases = {m.name: ALTERNATING_ROLES.get(m.config.get("ntech_role")) if alternate else None
                       for m in ensemble.members}

    @staticmethod
    def _window_for(member, windows: list) -> int:
        if member.spec.kind == "3d":
            wanted = lambda w: w.length > 1  # noqa: E731
        else:
            pad = "reflect" if member.config.get("ntech_crop") == "resize_pad" else "zero"
            wanted = lambda w: w.length == 1 and w.pad == pad  # noqa: E731
        for i, w in enumerate(windows):
            if wanted(w):
                return i
        raise ValueError(f"{member.name}: the recipe's request cuts no windows for this {member.spec.kind} member")

    @staticmethod
    def faces(res) -> int:
        """How many samples (windows) a result gives to each member."""
        return max((len(metas) for metas, _ in res.windows), default=0)

    def score(self, faces: list, level: int) -> list[dict]:
        per_video = [dict() for _ in faces]
        scored = []  # (member, owners, device scores): read back together, one transfer per group
        for m in _members(self.ensemble, level):
            k, phases = self.window_of[m.name], self.phases[m.name]
            samples, owner, flip = [], [], []
            for vi, res in enumerate(faces):
                if k >= len(res.windows):
                    continue
                metas, data = res.windows[k]
                if data is None:
                    continue
                for w in metas:
                    if phases is not None and w.index % 4 not in phases:
                        continue
                    samples.append(data[w.offset:w.offset + len(w.frames)])
                    owner.append(vi)
                    flip.append(w.index % 2 == 0)  # every other sample of a track, from the first
            if not samples:
                continue
            x = torch.stack(samples).to(self.device, non_blocking=True)  # (n, T, H, W, 3)
            scored.append((m, np.asarray(owner), self.ensemble.score_windows(m, x, np.asarray(flip)).float()))
        for (m, owner, _), p in zip(scored, fetch(*(s for _, _, s in scored))):  # p: (n,) or (n, T)
            for vi in range(len(faces)):
                if (owner == vi).any():
                    per_video[vi][m.name] = p[owner == vi].reshape(-1).tolist()
        return per_video


__all__ = ["CropScorer", "WindowScorer"]
