"""The README runs as written.

Every ```bash and ```python block of README.md is executed, in order, in a scratch folder,
with the README's example paths pointed at the demo clips (``/data/dfdc``, ``clip.mp4``),
``cuda`` replaced by ``cpu``, and the sizes of training and inference cut down so the
whole README runs in a few minutes on a CPU (the changes are in ``adapt`` below). A block
whose first line starts with ``# not run by the tests:`` is skipped; it has to say why.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DEMO = os.path.join(ROOT, "dfdc_fast", "assets", "demo")
SKIP = "# not run by the tests:"
FENCE = re.compile(r"^```([a-z]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
PY = shlex.quote(sys.executable)

# what a test run adds to the README's commands so that they take seconds on a CPU
TRAIN_SMALL = " epochs=1 max_steps_per_epoch=1 batch_size=2 frames=8 input_size=32 workers=0 val_fraction=0 progress=false"
INFER_SMALL = " --frames 20 --workers 0 --no-progress"


def blocks(lang: str | None = None) -> list[tuple[str, int, str]]:
    text = open(README, encoding="utf-8").read()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if lang is None or m.group(1) == lang:
            out.append((m.group(1), line, m.group(2)))
    return out


def runnable(lang: str) -> list[tuple[int, str]]:
    return [(line, body) for _, line, body in blocks(lang) if not body.lstrip().startswith(SKIP)]


def adapt(text: str, ws: str) -> str:
    """The README's text with its example inputs pointed at the demo clips, on a CPU."""
    clip = os.path.join(DEMO, "ccfoszqabv.mp4")
    text = text.replace("bash scripts/setup.sh && ", "")  # CI ran it before pytest
    text = text.replace(".venv/bin/python", PY)
    text = re.sub(r"(?m)^python ", PY + " ", text)
    text = text.replace("/data/dfdc", DEMO).replace("/data/faces", os.path.join(ws, "faces"))
    text = text.replace("/data/test_videos", os.path.join(ws, "test_videos"))
    text = text.replace('"clip.mp4"', repr(clip)).replace("--device cuda", "--device cpu").replace('"cuda"', '"cpu"')
    lines = []
    for line in text.splitlines():
        if " -m pytest" in line:  # this test runs inside that command
            continue
        if " -m dfdc_fast.train -c " in line:
            line = line.split("#")[0].rstrip() + TRAIN_SMALL
        if " -m dfdc_fast.infer " in line:
            line = line.split("#")[0].rstrip() + INFER_SMALL
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_every_block_is_run_or_says_why():
    kinds = {lang for lang, _, _ in blocks()}
    assert kinds <= {"bash", "python", ""}, f"fences the README test does not know: {kinds}"
    skipped = [(line, body) for lang, line, body in blocks() if lang in ("bash", "python")
               and body.lstrip().startswith(SKIP)]
    for line, body in skipped:
        reason = body.lstrip().splitlines()[0][len(SKIP):].strip()
        assert len(reason) > 10, f"README line {line}: a skipped block must say why"
    code = [b for b in blocks() if b[0] in ("bash", "python")]
    assert 2 * len(skipped) < len(code), f"most of the README must run: {len(skipped)} of {len(code)} blocks skipped"
    quick = [body for _, _, body in blocks("bash") if "Quick start" in body or "scripts/setup.sh" in body][0]
    assert quick.count("bash scripts/setup.sh &&") == 2, "the Quick start is two commands"
    text = open(README, encoding="utf-8").read()
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert os.path.exists(os.path.join(ROOT, picture)), f"README shows {picture}, which is not committed"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("readme")
    videos = ws / "test_videos"
    videos.mkdir()
    for name in ("ccfoszqabv.mp4", "acqfdwsrhi.mp4"):
        shutil.copy(os.path.join(DEMO, name), videos / name)
    return str(ws)


def _env(ws: str) -> dict:
    return {**os.environ, "PYTHONPATH": ROOT, "DFDC_FAST_RESULTS": os.path.join(ws, "results"),
            "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}


@pytest.mark.slow
def test_the_readme_commands_run(workspace):
    ws = workspace
    for line, body in runnable("bash"):
        script = adapt(body, ws)
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ws, env=_env(ws), capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, f"README line {line}:\n{script}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    # what the commands promised is there
    assert os.path.exists(os.path.join(ws, "extract_out", "index.csv"))
    assert os.path.exists(os.path.join(ws, "faces", "index.csv"))
    rows = open(os.path.join(ws, "out", "submission.csv")).read().splitlines()
    assert rows[0] == "filename,label" and len(rows) == 3


@pytest.mark.slow
def test_the_readme_snippets_run(workspace):
    parts = []
    for line, body in runnable("python"):
        parts.append(f"# --- README line {line}\n{adapt(body, workspace)}")
    script = "\n".join(parts)
    r = subprocess.run([sys.executable, "-c", script], cwd=workspace, env=_env(workspace), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"{script}\n--- stderr\n{r.stderr[-4000:]}"
