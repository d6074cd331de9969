"""The rooms hold (ARCHITECTURE.md): the import contract in pyproject.toml, no circle between modules (function-level
imports count), and no private name used across a package."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contract_holds():
    r = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout[-3000:] + r.stderr[-1000:]


def test_no_module_takes_part_in_an_import_circle():
    import grimp

    graph = grimp.build_graph("edgekit", include_external_packages=False)  # every import statement, lazy ones too
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not circles, circles


def _package(module: str) -> str:
    """The package a module belongs to: edgekit.bench.run → edgekit.bench; edgekit.data → edgekit."""
    return module.rpartition(".")[0]


def test_no_private_name_crosses_a_package():
    crossings = []
    for path in sorted((ROOT / "edgekit").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = module if rel.name == "__init__" else _package(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = here.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            owner = (
                target if ROOT.joinpath(*target.split(".")).is_dir() else _package(target)
            )  # the package it lives in
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and owner != here:
                    crossings.append(f"{rel}: from {'.' * node.level}{node.module or ''} import {alias.name}")
    assert not crossings, crossings
