"""The one prepared GPU-session script, rehearsed on the CPU so that a lent GPU's 15 minutes
are not lost to the script itself: the wheel check on synthetic wheels, and the whole script
with DRY_RUN=1 (every phase, every benchmark's own command line at its smallest sizes)."""
import glob
import json
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import check_wheels  # noqa: E402  (scripts/ is not a package)

STAGES = ("track", "detect", "decode", "extract", "infer", "train", "recipes")


def _wheel(folder, name: str, version: str, requires=(), metadata: bool = True) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        if metadata:
            lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
            lines += [f"Requires-Dist: {r}" for r in requires]
            z.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n\nA description.\n")
    return path


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.txt"
    path.write_text("# the image\nnumpy==2.1.0\ntorch  # version unknown\nPillow==11.0.0\n")
    return str(path)


def test_requirements_met_by_the_image_or_another_carried_wheel(tmp_path, image):
    root = tmp_path / "repo"
    _wheel(root / ".whl_a", "facenet_pytorch", "2.6.0", ["numpy>=1.24", "torch>=2.0", "pillow>=10", "requests"])
    _wheel(root / ".whl_b", "requests", "2.32.0", ["urllib3<3; python_version < '3.8'",  # another Python: skipped
                                                 "PySocks!=1.5.7; extra == 'socks'"])   # an extra: skipped
    assert check_wheels.check(str(root), image) == []
    assert check_wheels.main(["--root", str(root), "--packages", image]) == 0


def test_every_unmet_requirement_is_one_line(tmp_path, image):
    root = tmp_path / "repo"
    _wheel(root / ".whl", "kornia", "0.9.0", ["kornia_rs>=0.1.9", "numpy>=2.2", "torch>=2.0",
                                             "typing_extensions; python_version >= '3.12'"])
    _wheel(root / ".whl", "av", "18.1.0")
    _wheel(root / ".whl_2", "av", "17.0.0")
    _wheel(root / ".whl_2", "broken", "1.0", metadata=False)
    problems = check_wheels.check(str(root), image)
    text = "\n".join(problems)
    assert "kornia_rs>=0.1.9: neither carried nor in the GPU image" in text
    assert "numpy>=2.2: the image's is 2.1.0" in text
    assert "typing_extensions" in text  # its marker holds on the image's Python 3.12
    assert "av: carried twice" in text and "broken-1.0-py3-none-any.whl: not a readable wheel" in text
    assert len(problems) == 5, problems
    assert "torch" not in text  # the image has it; any version will do


def test_a_carry_folder_over_the_limit_is_named(tmp_path, image):
    root = tmp_path / "repo"
    _wheel(root / ".whl_dali_1", "small", "1.0")
    big = root / ".whl_dali_1" / "part-aa"
    with open(big, "wb") as f:  # sparse: the size counts, not the blocks
        f.truncate(check_wheels.CARRY_LIMIT)
    problems = check_wheels.check(str(root), image)
    assert len(problems) == 1 and problems[0].startswith(".whl_dali_1: 64.0 MiB of wheels"), problems


def test_the_shipped_image_list_reads(tmp_path):
    packages = check_wheels.image_packages(os.path.join(ROOT, "scripts", "gpu_image_packages.txt"))
    assert {"torch", "numpy", "timm", "pytest", "pytest-timeout"} <= set(packages)
    assert "av" not in packages and "kornia" not in packages  # what the session carries


def _available(node) -> list[bool]:
    """Every ``available`` flag of a benchmark's results, however deep."""
    if isinstance(node, dict):
        own = [node["available"]] if isinstance(node.get("available"), bool) else []
        return own + [a for v in node.values() for a in _available(v)]
    if isinstance(node, list):
        return [a for v in node for a in _available(v)]
    return []


@pytest.mark.slow
def test_the_dry_run_runs_every_phase_and_benchmark(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "PY": sys.executable, "DRY_LIMIT": "240"}
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_session.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1500)
    log = (out / "session.log").read_text() if (out / "session.log").exists() else ""
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n{log}"
    assert "0 problems" in log
    collected = (out / "tests_cuda.log").read_text()
    assert "collected" in collected or "tests collected" in collected, collected[-2000:]
    for stage in STAGES:
        files = glob.glob(str(out / f"{stage}-*.json"))
        assert len(files) == 1, (stage, os.listdir(out), (out / f"bench_{stage}.log").read_text()[-2000:])
        result = json.load(open(files[0]))
        assert result["complete"] is True and result["stage"] == stage
        flags = _available(result["results"])  # benchmarks with implementations flag each one's
        assert result["results"] and (not flags or any(flags)), (stage, result["results"])
