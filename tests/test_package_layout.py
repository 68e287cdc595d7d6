"""The package's layout: subpackages by responsibility, imports that only point down.

Read from the source (every ``import``, including those inside functions and
under ``TYPE_CHECKING``), so a cycle or an upward import fails here rather
than in a reader's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import panelglm

ROOT = Path(panelglm.__file__).parent
# The subpackages from the bottom up: each may import those before it only.
LAYERS = (
    "_util",
    "_data",
    "_model",
    "_solve",
    "_engine",
    "_ident",
    "_inference",
    "_absorb",
    "_estimators",
)
# Modules at the package root that any layer may import (they import nothing of it).
BASE = {"exceptions", "_version"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("panelglm", *parts))


def _imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, as dotted names."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("panelglm"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if sub in MODULES else mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("panelglm"))
    return {m for m in out if m in MODULES and m != _module(path)}


FILES = sorted(ROOT.rglob("*.py"))
MODULES = {_module(p) for p in FILES}
GRAPH = {_module(p): _imports(p) for p in FILES}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer_or_at_the_root():
    flat = {m.split(".")[1] for m in MODULES if m.count(".") == 1}
    assert flat - set(LAYERS) <= BASE | {"model_selection", "_show_versions"}


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n) :], n] if n in path else [m, n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_point_down(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    up = [
        (m, n)
        for m, deps in GRAPH.items()
        if _layer(m) == layer
        for n in deps
        if not (_layer(n) in allowed or n.split(".")[1] in BASE or n == "panelglm")
    ]
    assert not up, up


def test_each_subpackage_says_what_it_owns_and_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text()))
        assert doc and "may import" in doc
        below = LAYERS[: LAYERS.index(layer)]
        for other in LAYERS:
            if other in doc.split("may import", 1)[1]:
                assert other in below, (layer, other)
