"""Check the wheels a GPU session carries, before the session spends device time on them.

Two things lose a GPU session to the install step rather than to a bug: a carried wheel
that needs a package the GPU image lacks (pip runs with ``--no-deps --no-index`` there, so
the import fails minutes later), and a carry folder that does not fit the 64 MiB one call
may carry with the working tree. This checks both, on any machine:

* every ``Requires-Dist`` of every carried wheel (markers evaluated for the image's Python
  3.12 on Linux x86-64, extras left out) is met by another carried wheel or by the image's
  package list, ``scripts/gpu_image_packages.txt`` (name, or ``name==version`` where the
  version is known; a known version must satisfy the requirement's specifier);
* each carry folder (``.whl*/``, one per call) plus the tracked working tree fits 64 MiB.

    python scripts/check_wheels.py                 # the repository's .whl*/ folders
    python scripts/check_wheels.py --root DIR      # another checkout (the tests use this)

Exit 0 when all is met (also when nothing is carried), 1 with one line per problem.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import zipfile

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

CARRY_LIMIT = 64 * 2**20
IMAGE = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
         "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
         "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix",
         "extra": ""}


def image_packages(path: str) -> dict[str, str | None]:
    """{canonical name: version or None} from the image's list (``#`` starts a comment)."""
    out: dict[str, str | None] = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip() or None
    return out


def wheel_metadata(path: str) -> tuple[str, str, list[str]]:
    """(canonical name, version, Requires-Dist lines) of a wheel file."""
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        text = z.read(meta).decode("utf-8", "replace")
    headers = text.split("\n\n", 1)[0].splitlines()
    value = lambda key: next(h.split(":", 1)[1].strip() for h in headers if h.startswith(key + ":"))  # noqa: E731
    requires = [h.split(":", 1)[1].strip() for h in headers if h.startswith("Requires-Dist:")]
    return canonicalize_name(value("Name")), value("Version"), requires


def _met(req: Requirement, version: str | None) -> bool:
    if version is None or not req.specifier:
        return True  # the image has it; its version is not recorded, or any version will do
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def check(root: str, packages: str) -> list[str]:
    """Every problem found, one line each (empty: all met)."""
    problems: list[str] = []
    image = image_packages(packages)
    wheels = sorted(glob.glob(os.path.join(root, ".whl*", "*.whl")))
    carried: dict[str, str] = {}
    metas = []
    for w in wheels:
        try:
            name, version, requires = wheel_metadata(w)
        except (zipfile.BadZipFile, StopIteration, KeyError) as exc:
            problems.append(f"{os.path.relpath(w, root)}: not a readable wheel ({type(exc).__name__})")
            continue
        if name in carried:
            problems.append(f"{name}: carried twice ({carried[name]} and {version}); pip would stop the whole install")
        carried[name] = version
        metas.append((w, requires))
    for w, requires in metas:
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                problems.append(f"{os.path.basename(w)}: unreadable requirement {line!r}")
                continue
            if req.marker is not None and not req.marker.evaluate(IMAGE):
                continue  # another Python, platform, or an extra
            name = canonicalize_name(req.name)
            if name not in carried and name not in image:
                problems.append(f"{os.path.basename(w)} needs {req}: neither carried nor in the GPU image")
                continue
            have = carried[name] if name in carried else image[name]
            if not _met(req, have):
                problems.append(f"{os.path.basename(w)} needs {req}: the {'carried' if name in carried else 'image'}'s "
                                f"is {have}")
    tree = _tree_bytes(root)
    for folder in sorted({os.path.dirname(w) for w in wheels}):
        size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(folder, "*")) if os.path.isfile(f))
        if size + tree > CARRY_LIMIT:
            problems.append(f"{os.path.relpath(folder, root)}: {size / 2**20:.1f} MiB of wheels + {tree / 2**20:.1f} MiB "
                            f"of working tree exceed the {CARRY_LIMIT // 2**20} MiB one call carries")
    return problems


def _tree_bytes(root: str) -> int:
    """Bytes of the files git tracks (what travels with every call besides the carry)."""
    try:
        names = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    paths = (os.path.join(root, n) for n in names.decode().split("\0") if n)
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def main(argv=None) -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=here, help="the checkout whose .whl*/ folders are checked (default: this one)")
    ap.add_argument("--packages", default=os.path.join(here, "scripts", "gpu_image_packages.txt"),
                    help="the GPU image's package list (default: %(default)s)")
    args = ap.parse_args(argv)
    problems = check(args.root, args.packages)
    for p in problems:
        print(f"check_wheels: {p}", file=sys.stderr)
    n = len(glob.glob(os.path.join(args.root, ".whl*", "*.whl")))
    print(f"check_wheels: {n} carried wheels, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
