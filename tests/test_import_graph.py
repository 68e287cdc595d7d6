"""The package's import graph, drawn from the source: no cycles among the pass engine's modules.

Every import counts, wherever it is written: at the top, inside a function,
or under ``if TYPE_CHECKING:`` (an annotation-only import still couples the
modules for a reader). The test lists every cycle in the package and fails on
those that run through the pass engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import panelglm

ROOT = Path(panelglm.__file__).parent

# The pass engine: its interface and implementations, what they are built
# from, and the objective that holds one.
ENGINE_MODULES = {
    "_assemble",
    "_buffers",
    "_compiled",
    "_compiled_engine",
    "_engine",
    "_kernels",
    "_objective",
    "_plan",
    "_problem",
    "_reductions",
    "_pass_spec",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` (or the package holding it) refers to (None: none)."""
    full = name
    while full and full not in modules:
        full = full.rpartition(".")[0]
    return full if full in modules else None


def imports_in(source: str, package: str, modules) -> set[str]:
    """The package's modules that ``source`` (a module of ``package``) imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                prefix = ".".join(p for p in (base, node.module or "") if p)
            elif node.module and node.module.split(".")[0] == "panelglm":
                prefix = node.module.removeprefix("panelglm").lstrip(".")
            else:
                continue
            for alias in node.names:  # ``from . import x``: x may be a module
                sub = f"{prefix}.{alias.name}".strip(".")
                targets.append(sub if sub in modules else prefix)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "panelglm":
                    targets.append(alias.name.removeprefix("panelglm").lstrip("."))
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved:  # not the package's __init__ itself
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` (names relative to the package)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imports_in(path.read_text(), package, modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_kind_of_import_counts():
    modules = {"a": None, "b": None, "c": None, "d": None, "e": None, "sub": None, "sub.f": None}
    source = """
from typing import TYPE_CHECKING
import numpy as np
from . import a
from .b import thing
import panelglm.c
if TYPE_CHECKING:
    from .d import Kind
def late():
    from .e import other
from .sub import f
"""
    assert imports_in(source, "", modules) == {"a", "b", "c", "d", "e", "sub.f"}
    assert imports_in("from .. import a", "sub", modules) == {"a"}


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    # A top-level relative import, ``from . import x`` and a TYPE_CHECKING one.
    assert "_factored" in graph["_pass_spec"]
    assert "_compiled" in graph["_compiled_engine"]
    assert "_pass_spec" in graph["_compiled"]


def test_no_cycle_through_the_pass_engine():
    found = cycles(import_graph())
    report = "\n".join(" <-> ".join(c) for c in found) or "none"
    print(f"import cycles in the package:\n{report}")
    through_engine = [c for c in found if ENGINE_MODULES & set(c)]
    assert not through_engine, f"cycles through the pass engine: {through_engine}"


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
