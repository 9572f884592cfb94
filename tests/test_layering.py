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


def _all_imports(path: str, modules: set) -> set[str]:
    """Every dfdc_fast module ``path`` imports, at the top or inside functions; ``from pkg
    import mod`` counts as importing ``pkg.mod``."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out & modules


def test_no_two_modules_import_each_other():
    """Import circles between modules (not packages) hide an owner in the wrong place
    (infer/pipeline <-> infer/recipes, io/base <-> io/header were two)."""
    paths = dict(_modules())
    packages = {m for m, p in paths.items() if p.endswith("__init__.py")}
    graph = {m: _all_imports(p, set(paths)) - packages for m, p in paths.items() if m not in packages}
    circles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph.get(b, ()))
    assert not circles, circles


def test_jobs_ask_the_recipe_object_not_its_name():
    """Recipe behaviour lives in dfdc_fast/recipes/; the jobs never compare recipe names."""
    import re

    found = []
    for job in ("extract", "infer", "train"):
        for folder, _, files in os.walk(os.path.join(PKG, job)):
            for f in files:
                if f.endswith(".py"):
                    text = open(os.path.join(folder, f)).read()
                    found += [f"{job}/{f}: {m.group(0)}" for m in re.finditer(r"recipe\s*(==|!=)\s*\S+", text)]
    assert not found, found


def test_recipes_sit_below_the_jobs():
    for module, path in _modules():
        if module.startswith("dfdc_fast.recipes"):
            bad = [i for i in _imports(path) if _job_of(i)]
            assert not bad, f"{module} imports the jobs {bad}"
