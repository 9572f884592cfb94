"""What a benchmark ran on: device, driver, library versions, commit, command."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shlex
import subprocess
import sys

import torch

_PACKAGES = ("torch", "torchvision", "numpy", "av", "opencv-python-headless", "kornia", "timm",
             "nvidia-dali-cuda130", "pynvvideocodec", "facenet-pytorch", "scikit-image", "scipy", "numba",
             "cupy", "cupy-cuda13x", "cupy-cuda12x", "dfdc_fast")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def environment(device: torch.device | str = "cpu") -> dict:
    """Machine facts for the result JSON; ``device`` is the one the stage ran on."""
    device = torch.device(device)
    gpu = device.type == "cuda" and torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(device) if gpu else _cpu_model(),
        "device_type": device.type,
        "driver": _nvidia_driver() if gpu else None,
        "cuda": torch.version.cuda,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "git_commit": _git_commit(),
        "env": {k: os.environ[k] for k in ("THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
                if k in os.environ},
        "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv),
    }
