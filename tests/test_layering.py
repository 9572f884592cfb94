"""The jobs (extract, train, infer) share stages but never import each other's internals."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "dfdc_fast")
JOBS = ("dfdc_fast.extract", "dfdc_fast.train", "dfdc_fast.infer")


def _job_of(module: str):
    return next((j for j in JOBS if module == j or module.startswith(j + ".")), None)


def _imports(path: str) -> set[str]:
    tree = ast.parse(open(path).read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules():
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


@pytest.mark.parametrize("module,path", sorted(_modules()))
def test_no_job_imports_another_job(module, path):
    mine = _job_of(module)
    for imported in _imports(path):
        other = _job_of(imported)
        if other is not None and other != mine:
            pytest.fail(f"{module} imports {imported}: jobs may only share neutral modules")
