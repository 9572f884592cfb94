"""What every benchmark script's command line shares: device, subset, output folder."""
from __future__ import annotations

import argparse

import torch


def add_common_args(ap: argparse.ArgumentParser, implementations: list[str] | None = None) -> None:
    """``--device``, ``--out-dir`` and, given ``implementations``, ``--only`` (a subset of them)."""
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    if implementations is not None:
        ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(implementations)}")
    ap.add_argument("--out-dir", default=None, help="where the JSON goes (default: benchmarks/results)")


def clips_or_exit(ap: argparse.ArgumentParser, src: str, limit: int | None) -> list[str]:
    """``sample_clips(src, limit)``, or the parser's usage error when there are none."""
    from dfdc_fast.bench.inputs import sample_clips

    try:
        return sample_clips(src, limit)
    except ValueError as exc:
        ap.error(str(exc))


def prepare(args: argparse.Namespace) -> tuple[torch.device, set[str]]:
    """(device, chosen implementations) after the process-wide settings the jobs use:
    the huge-page host allocator, and cuDNN autotuning on a GPU."""
    from dfdc_fast.runtime import tune_host_allocator

    tune_host_allocator()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, {s for s in args.only.split(",") if s}


def read_frames_cv2(path: str, limit: int | None = None) -> tuple[list, float]:
    """RGB frames of a video the way the seed repos read them (cv2.VideoCapture, BGR->RGB),
    at most ``limit``; returns (frames, fps)."""
    import cv2

    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps
