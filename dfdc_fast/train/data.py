"""Training samples from an extraction output: the index, the hold-out split, and balancing.

Extraction writes ``index.csv`` with one row per face clip (and one per video without one).
Here those rows become :class:`Sample` records (a face clip MP4 or a 2D crop, its label,
its source video and the original it was faked from). The split keeps a fake and its
original on the same side, so the hold-out never sees a face it was trained on.
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

LABEL_VALUES = {"FAKE": 1, "REAL": 0}


@dataclass(frozen=True)
class Sample:
    """One training item: a face clip (3D) or one face crop image (2D)."""

    path: str          # absolute path of the MP4 clip or image
    label: int         # 1 = FAKE, 0 = REAL
    video: str         # source video name, e.g. "abc.mp4"
    part: str          # DFDC part ("dfdc_train_part_3"), "" outside DFDC
    group: str         # the REAL original's name: fakes and their original share it
    frames: int = 0    # frames in the clip (0 for images)
    keyint: int = 0    # the clip's maximum keyframe interval as extraction recorded it (0: unknown)
    fold: int = -1     # Selim's fold (crops.csv / pairs.csv), -1 when unknown
    frame: int = -1    # the video frame a crop shows (crops.csv)
    landmarks: tuple | None = None  # ten numbers: x, y of eyes, nose, mouth corners in crop pixels
    diff: str = ""     # SSIM difference mask of a fake's crop (absolute path), "" when none


@dataclass(frozen=True)
class PairSample:
    """One of NTechLab's aligned pairs: the same face window cut from a REAL video and a FAKE."""

    real: str          # absolute path of the REAL pair clip
    fake: str          # ... and of the FAKE one
    real_video: str
    fake_video: str
    part: str
    group: str
    fold: int = -1


def _part_number(part: str) -> int | None:
    """45 for "dfdc_train_part_45"; None for a folder without a trailing number."""
    match = re.search(r"(\d+)$", part or "")
    return int(match.group(1)) if match else None


def read_clip_index(root: str, kind: str = "3d") -> list[Sample]:
    """Samples of an extraction output folder (``index.csv`` beside ``clips/`` and ``crops/``).

    ``kind="3d"`` gives one sample per face clip; ``"2d"`` gives one per crop image, read
    from the per-video JSON files that the index points to. Rows without a label (videos
    outside a labelled dataset) and rows without output (no face, decode errors) are left out.
    """
    if kind not in ("3d", "2d"):
        raise ValueError(f"kind must be '3d' or '2d', got {kind!r}")
    index = os.path.join(root, "index.csv")
    if not os.path.exists(index):
        raise FileNotFoundError(f"{index} not found: run `python -m dfdc_fast.extract ... -o {root}` first")
    samples: list[Sample] = []
    seen_json: set[str] = set()
    with open(index, newline="") as f:
        for row in csv.DictReader(f):
            label = LABEL_VALUES.get((row.get("label") or "").upper())
            if label is None or row.get("status") != "ok":
                continue
            group = os.path.splitext(row.get("original") or row["video"])[0] if label else os.path.splitext(row["video"])[0]
            group = f"{row.get('part') or ''}/{group}"
            if kind == "3d":
                if row.get("clip"):
                    samples.append(Sample(os.path.join(root, row["clip"]), label, row["video"], row.get("part") or "",
                                          group, int(float(row.get("clip_frames") or 0)),
                                          int(float(row.get("keyint") or 0))))
                continue
            js = row.get("json")
            if not js or js in seen_json:
                continue
            seen_json.add(js)
            with open(os.path.join(root, js)) as jf:
                record = json.load(jf)
            for crop in record.get("crops", []):
                samples.append(Sample(os.path.join(root, crop["path"]), label, row["video"], row.get("part") or "", group))
    if not samples:
        raise ValueError(f"{index} lists no labelled {kind} samples (status ok with a REAL/FAKE label)")
    return samples


def read_crops_csv(root: str) -> list[Sample]:
    """Samples of ``crops.csv`` (``extract --recipe selim``): one per crop, with its fold,
    frame, landmarks and (for fakes) SSIM difference mask."""
    import csv as _csv

    path = os.path.join(root, "crops.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run `python -m dfdc_fast.extract ... --recipe selim -o {root}` first")
    samples = []
    with open(path, newline="") as f:
        for row in _csv.DictReader(f):
            label = LABEL_VALUES.get((row.get("label") or "").upper())
            if label is None:
                continue
            group = f"{row.get('part') or ''}/{os.path.splitext(row.get('original') or row['video'])[0] if label else os.path.splitext(row['video'])[0]}"
            landmarks = tuple(float(v) for v in row["landmarks"].split()) if row.get("landmarks") else None
            if landmarks is not None and len(landmarks) != 10:
                raise ValueError(f"{path}: a crop of {row['video']} has {len(landmarks)} landmark numbers, not 10")
            samples.append(Sample(os.path.join(root, row["path"]), label, row["video"], row.get("part") or "", group,
                                  fold=int(row["fold"]) if row.get("fold") not in (None, "") else -1,
                                  frame=int(row["frame"]), landmarks=landmarks,
                                  diff=os.path.join(root, row["diff"]) if row.get("diff") else ""))
    if not samples:
        raise ValueError(f"{path} lists no labelled crops")
    return samples


def read_pairs_csv(root: str) -> list[PairSample]:
    """Pairs of ``pairs.csv`` (``extract --recipe ntech``)."""
    import csv as _csv

    path = os.path.join(root, "pairs.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run `python -m dfdc_fast.extract ... --recipe ntech -o {root}` first")
    with open(path, newline="") as f:
        pairs = [PairSample(os.path.join(root, r["real_clip"]), os.path.join(root, r["fake_clip"]), r["real_video"],
                            r["fake_video"], r.get("part") or "",
                            f"{r.get('part') or ''}/{os.path.splitext(r['real_video'])[0]}",
                            int(r["fold"]) if r.get("fold") not in (None, "") else -1)
                 for r in _csv.DictReader(f)]
    if not pairs:
        raise ValueError(f"{path} lists no pairs (no FAKE video had a track aligned with its original's)")
    return pairs


def split_by_fold(samples: Sequence, fold: int) -> tuple[list, list]:
    """(train, val): the samples of ``fold`` are held out (Selim's fold 0 = DFDC parts 0-2).
    Folds keep a fake with its original (extraction checks it), so no face leaks."""
    return [s for s in samples if s.fold != fold], [s for s in samples if s.fold == fold]


def _readable(path: str) -> bool:
    """A fast header check: an MP4 with a video track, or a JPEG/PNG that starts as one."""
    try:
        if os.path.getsize(path) == 0:
            return False
        if path.lower().endswith((".mp4", ".mov", ".m4v")):
            from dfdc_fast.io.mp4 import display_rotation

            return display_rotation(path) is not None
        with open(path, "rb") as f:
            head = f.read(8)
        return head.startswith(b"\xff\xd8") or head.startswith(b"\x89PNG")
    except OSError:
        return False


def _sample_paths(s) -> tuple:
    """The files a sample reads: its clip or crop (and SSIM diff), or a pair's two clips."""
    if isinstance(s, PairSample):
        return s.real, s.fake
    return (s.path, s.diff) if s.diff else (s.path,)


def validate_samples(samples: Sequence, root: str) -> None:
    """Raise before training when clips or crops the index lists (index.csv, crops.csv or
    pairs.csv) are missing or unreadable (a fast header check of every file), naming them
    and how to redo them."""
    from concurrent.futures import ThreadPoolExecutor

    from dfdc_fast.errors import UserError

    paths = sorted({p for s in samples for p in _sample_paths(s)})
    with ThreadPoolExecutor(8) as pool:
        ok = list(pool.map(_readable, paths))
    bad = [p for p, good in zip(paths, ok) if not good]
    if bad:
        shown = ", ".join(os.path.relpath(p, root) for p in bad[:5])
        raise UserError(f"{len(bad)} of {len(paths)} files that the index in {root} lists are missing "
                        f"or unreadable (e.g. {shown}). Re-extract those videos: delete their videos/*.json in {root} "
                        "and rerun the extraction, which redoes exactly those")


def split_samples(samples: Sequence[Sample], *, val_parts: Iterable[int] = (), val_fraction: float = 0.0,
                  seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(train, val) samples. DFDC parts listed in ``val_parts`` (the Medics held out 45-49)
    go to validation; otherwise ``val_fraction`` of the original-video groups, chosen with
    ``seed``. Either way a fake and its original land on the same side."""
    val_parts = set(val_parts)
    if val_parts:
        val = [s for s in samples if _part_number(s.part) in val_parts]
        return [s for s in samples if _part_number(s.part) not in val_parts], val
    if not val_fraction:
        return list(samples), []
    groups = sorted({s.group for s in samples})
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction)) if len(groups) > 1 else 0
    held = set(groups[:n_val])
    return [s for s in samples if s.group not in held], [s for s in samples if s.group in held]


def balanced_epoch(samples: Sequence[Sample], epoch: int, *, seed: int = 0, mode: str = "balanced") -> list[int]:
    """Indices of one training epoch, shuffled with ``(seed, epoch)`` so a resumed run
    replays the same order.

    ``mode="balanced"``: every REAL sample once plus as many FAKE samples drawn without
    replacement (the Medics' and Selim's rule; DFDC has ~5 fakes per real). ``"all"``: every
    sample once.
    """
    rng = random.Random(seed * 100_003 + epoch)
    idx = list(range(len(samples)))
    if mode == "balanced":
        reals = [i for i in idx if samples[i].label == 0]
        fakes = [i for i in idx if samples[i].label == 1]
        if reals and fakes:
            idx = reals + rng.sample(fakes, min(len(fakes), len(reals)))
    elif mode != "all":
        raise ValueError(f"balance must be 'balanced' or 'all', got {mode!r}")
    rng.shuffle(idx)
    return idx


def clip_start(num_frames: int, length: int, rng: random.Random | None) -> int:
    """First frame of a ``length``-frame window: random in training (``rng``), 0 in validation."""
    if rng is None or num_frames <= length:
        return 0
    return rng.randrange(0, num_frames - length + 1)
