"""The Kaggle path for real: scripts/kaggle_wheels.sh builds the wheel folder, which installs
with ``pip --no-index`` (no network) into a clean virtual environment that has only what a
Kaggle image brings (torch, torchvision, numpy, ...), and ``python -m dfdc_fast.infer``
then scores sample clips from there, outside this checkout.

Slow (it compiles the extension into a wheel): ``pytest -m slow tests/test_kaggle.py``.
"""
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: What a Kaggle GPU image already has (and dfdc_fast's wheels folder therefore omits),
#: with everything these need, taken from this environment.
KAGGLE_IMAGE = ["torch", "torchvision", "numpy", "pillow", "pyyaml", "packaging", "huggingface_hub",
                "safetensors", "requests", "scikit-image"]


def _closure(names):
    """The installed distributions ``names`` need, extras included, as pip would resolve them."""
    from packaging.requirements import Requirement

    seen, todo = {}, [(n, frozenset()) for n in names]
    while todo:
        name, extras = todo.pop()
        key = (name.lower().replace("_", "-"), extras)
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))
            if wanted:
                todo.append((req.name, frozenset(req.extras)))
    return {k[0]: d for k, d in seen.items()}


def _image_site(folder):
    """A folder of links to the distributions of a Kaggle-like image (code + metadata)."""
    os.makedirs(folder)
    for dist in _closure(KAGGLE_IMAGE).values():
        for f in dist.files or []:
            top = f.parts[0]
            src = os.path.join(str(dist.locate_file("")), top)
            dst = os.path.join(folder, top)
            if top.endswith(".pth") or top == ".." or not os.path.exists(src) or os.path.lexists(dst):
                continue
            os.symlink(src, dst)
    return folder


@pytest.mark.slow
def test_wheels_install_offline_and_infer_outside_the_checkout(tmp_path, samples_dir):
    wheels = tmp_path / "wheels"
    env = {**os.environ, "MAX_JOBS": "2", "FORCE_CUDA": "0"}
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "kaggle_wheels.sh"), str(wheels), "--python",
                        f"{sys.version_info.major}.{sys.version_info.minor}"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=1500)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    readme = (wheels / "README.txt").read_text()
    assert "pip install --no-index" in readme

    venv = tmp_path / "kaggle"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the venv's own old setuptools would hide the image's (torch needs setuptools>=77)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--isolated", "uninstall", "-y", "-q", "setuptools"],
                   check=True, capture_output=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "kaggle_image.pth"), "w") as f:
        f.write(_image_site(str(tmp_path / "image")) + "\n")
    # --isolated: none of this machine's pip configuration (its local package mirrors)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--isolated", "install", "--no-index", "--disable-pip-version-check"]
    facenet = next(wheels.glob("facenet_pytorch-*.whl"))
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    for cmd in (pip + ["--no-deps", str(facenet)], pip + ["--find-links", str(wheels), "dfdc_fast", "av", "kornia", "timm"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=offline, cwd=str(tmp_path), timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    # a checkpoint to score with, written by the checkout's dfdc_fast
    import torch

    from dfdc_fast.models import create_model, save_checkpoint

    ckpt = tmp_path / "mc3_18.pth"
    torch.manual_seed(0)
    save_checkpoint(ckpt, create_model("mc3_18", num_classes=1), model_name="mc3_18", model_kwargs={"num_classes": 1},
                    config={"input_size": 32})
    videos = tmp_path / "test_videos"
    videos.mkdir()
    for name in ("ccfoszqabv.mp4", "acqfdwsrhi.mp4"):
        shutil.copy(os.path.join(samples_dir, name), videos / name)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-c", "import dfdc_fast, dfdc_fast.extension as e; print(dfdc_fast.__file__, e._has_ops())"],
                       capture_output=True, text=True, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""})
    location, has_ops = r.stdout.split()
    assert location.startswith(str(venv)) and has_ops == "True", r.stdout + r.stderr
    r = subprocess.run([py, "-m", "dfdc_fast.infer", str(videos), str(ckpt), "-o", str(tmp_path / "out"),
                        "--frames", "40", "--device", "cpu", "--no-progress"], capture_output=True, text=True,
                       cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["statuses"] == {"ok": 2}
    rows = (tmp_path / "out" / "submission.csv").read_text().splitlines()
    assert rows[0] == "filename,label" and len(rows) == 3
