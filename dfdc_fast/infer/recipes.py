"""``infer --recipe selim|ntech``: the 1st and 3rd place inference pipelines on the engine.

* ``selim`` (Selim Seferbekov, ``kernel_utils.py``): 32 frames evenly spaced, MTCNN
  0.7/0.8/0.8 at the size rule of his README (2x under 300 px, 1x to 1000, 0.5x above,
  0.33x above 1900) on each of them, no tracking: every detected face is cut with a third of
  its box added on each side, resized isotropically to the model's side (area down,
  bicubic up, as his IsotropicResize) and zero-padded centred, and scored by every 2D
  member (at most 127 faces per video, in frame order). Per member his confident strategy,
  then the mean over members (aggregator ``selim``).
* ``ntech`` (NTechLab, ``predict.py``): frames decoded at ~15 fps, faces detected on every
  3rd of those (every 6th original frame) with the longer side at most 512, the IoU tracker
  (0.3 / 0.9 / 0.3) keeping tracks of at least 7 detections, boxes interpolated to every
  kept frame. Sequence (3D) members take 7-frame windows every 14 kept frames cut with the
  middle frame's box grown 1.5x, shorter side resized to 224 and centre-cropped to 224 x 192;
  frame (2D) members take every 2nd kept frame of each track, cut the same way. Every other
  sample is flipped. All probabilities of all tracks and members are pooled and sharpened
  (aggregator ``ntech``).

What differs from the seeds: NTechLab detected with DSFD, here our MTCNN stands in
(facenet-pytorch's thresholds, at their detector input size); their two frame models each
took half of the frames (2 to one, 2 to the other), here every frame member scores every
frame sample. Selim ran MTCNN at 0.5x in his repo code; the README's size rule is used.
"""
from __future__ import annotations

import numpy as np
import torch

from dfdc_fast.runtime import fetch

#: What each recipe sets, for the InferConfig fields a user leaves at their default.
RECIPE_DEFAULTS = {
    "medics": {},
    "selim": {"aggregator": "selim", "frames": 32, "detect_every": 1, "detector": "selim_inference",
              "max_faces": 127},
    "ntech": {"aggregator": "ntech", "detect_every": 3, "detector": "ntech_inference", "min_face_frames": 7,
              "frames": 0},
}
RECIPES = tuple(RECIPE_DEFAULTS)
SELIM_MARGIN = 1 / 3
NTECH_FPS = 15.0


def recipe_request(config, kinds: set):
    """The engine request of ``config.recipe`` ("selim" or "ntech") for members of ``kinds``."""
    from dfdc_fast.engine import CropSpec, FacesRequest
    from dfdc_fast.engine.request import WindowSpec
    from dfdc_fast.io.selectors import Evenly, First
    from dfdc_fast.track import TrackConfig

    if config.recipe == "selim":
        if kinds != {"2d"}:
            raise ValueError(f"recipe selim scores 2D face crops: its checkpoints must be 2D models, got {sorted(kinds)}")
        return FacesRequest(frames=Evenly(config.frames), every=config.detect_every, detector=config.detector,
                            track=None, crops=CropSpec(count=1, mode="detections", margin=SELIM_MARGIN, encode=None),
                            to_host=False)
    if config.recipe == "ntech":
        windows = []
        if "3d" in kinds:
            windows.append(WindowSpec(length=7, stride=14))
        if "2d" in kinds:
            windows.append(WindowSpec(length=1, stride=2))
        track = TrackConfig(method="iou", chunk_size=None, min_detections=config.min_face_frames, min_frames=1,
                            max_frames=10**9, min_clip_frames=1)
        return FacesRequest(frames=First(config.frames) if config.frames else None, sample_fps=NTECH_FPS,
                            every=config.detect_every, detector=config.detector, track=track, windows=windows,
                            to_host=False)
    raise ValueError(f"no recipe request for {config.recipe!r}")


class RecipeScorer:
    """Scores the engine's results of a recipe request with the ensemble's members; the
    interface of :class:`dfdc_fast.infer.pipeline.FaceScorer`."""

    def __init__(self, config, device: torch.device):
        from dfdc_fast.infer.ensemble import Ensemble
        from dfdc_fast.runtime import amp_dtype

        self.config, self.device = config, device
        self.ensemble = Ensemble(config.checkpoints, device, amp_dtype(config.amp, device), compile=config.compile)
        self.kinds = self.ensemble.kinds
        self.window_kinds = (["3d"] if "3d" in self.kinds else []) + (["2d"] if "2d" in self.kinds else [])

    def request(self):
        return recipe_request(self.config, self.kinds)

    @staticmethod
    def faces(res) -> int:
        """How many samples (face crops, windows) a result gives to each member."""
        if res.windows:
            return max(len(metas) for metas, _ in res.windows)
        return len(res.crops)

    def score(self, faces: list, level: int) -> list[dict]:
        from dfdc_fast.infer.budget import LEVELS

        n_models = LEVELS[level][3]
        members = self.ensemble.members if n_models is None else self.ensemble.members[:n_models]
        if self.config.recipe == "selim":
            return self._selim(faces, members)
        return self._ntech(faces, members)

    def _selim(self, faces: list, members: list) -> list[dict]:
        from dfdc_fast.infer.pipeline import _pad_cat

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
        canvas = _pad_cat(parts)
        sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        (table,) = fetch(torch.stack([self.ensemble.score_each_crop(m, canvas, sizes) for m in members]).float())
        owner = np.asarray(owner)
        for mi, m in enumerate(members):
            for vi in range(len(faces)):
                if (owner == vi).any():
                    per_video[vi][m.name] = table[mi, owner == vi].tolist()
        return per_video

    def _ntech(self, faces: list, members: list) -> list[dict]:
        per_video = [dict() for _ in faces]
        scored = []  # (member, owners, device scores): read back together, one transfer per group
        for m in members:
            k = self.window_kinds.index(m.spec.kind)
            samples, owner, flip = [], [], []
            for vi, res in enumerate(faces):
                if k >= len(res.windows):
                    continue
                metas, data = res.windows[k]
                if data is None:
                    continue
                for w in metas:
                    samples.append(data[w.offset:w.offset + len(w.frames)])
                    owner.append(vi)
                    flip.append(w.index % 2 == 1)  # every other sample of a track flipped
            if not samples:
                continue
            x = torch.stack(samples).to(self.device, non_blocking=True)  # (n, T, H, W, 3)
            scored.append((m, np.asarray(owner), self.ensemble.score_windows(m, x, np.asarray(flip)).float()))
        for (m, owner, _), p in zip(scored, fetch(*(s for _, _, s in scored))):
            for vi in range(len(faces)):
                if (owner == vi).any():
                    per_video[vi][m.name] = p[owner == vi].tolist()
        return per_video


__all__ = ["RECIPES", "RECIPE_DEFAULTS", "RecipeScorer", "recipe_request"]
