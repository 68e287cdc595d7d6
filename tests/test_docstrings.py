"""Every public class and function documents itself with a runnable example.

The examples themselves run through pytest's ``--doctest-modules`` (see
``[tool.pytest.ini_options]`` in pyproject.toml); this module checks that
each public name has a numpydoc docstring whose Examples section holds at
least one doctest, and that the doctest collection really reaches them.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import panelglm


def public_modules():
    """``panelglm`` and its public submodules (names without a leading underscore)."""
    mods = [panelglm]
    for info in pkgutil.iter_modules(panelglm.__path__):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"panelglm.{info.name}"))
    return mods


def public_objects():
    out = []
    for mod in public_modules():
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                out.append(pytest.param(obj, id=f"{mod.__name__}.{name}"))
    return out


def section(doc: str, title: str) -> str | None:
    """The body of a numpydoc section (``title`` underlined with dashes), or None."""
    m = re.search(
        rf"^\s*{title}\n\s*-{{{len(title)}}}\n(.*?)(?=^\s*\w[\w ]*\n\s*-{{3,}}\n|\Z)",
        doc,
        flags=re.S | re.M,
    )
    return None if m is None else m.group(1)


def _has_parameters(cls: type) -> bool:
    try:
        return bool(inspect.signature(cls).parameters)
    except ValueError:  # classes derived from built-in exceptions have no signature
        return False


def test_public_names_found():
    names = {p.values[0].__name__ for p in public_objects()}
    assert {"PanelDesign", "PanelData", "PanelPoissonRegressor"} <= names


@pytest.mark.parametrize("obj", public_objects())
def test_has_numpydoc_with_examples(obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{obj.__name__} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), f"{obj.__name__}: summary line must end with a period"
    if inspect.isfunction(obj) or _has_parameters(obj):
        assert section(doc, "Parameters") is not None, f"{obj.__name__}: no Parameters section"
    examples = section(doc, "Examples")
    assert examples is not None, f"{obj.__name__}: no Examples section"
    assert ">>>" in examples, f"{obj.__name__}: Examples section has no doctest"


@pytest.mark.parametrize("obj", public_objects())
def test_examples_collected_as_doctests(obj):
    # What --doctest-modules sees: the example must be found where the object
    # is defined, not only on the re-exporting package.
    module = importlib.import_module(obj.__module__)
    tests = doctest.DocTestFinder().find(module)
    qualname = f"{module.__name__}.{obj.__qualname__}"
    found = [t for t in tests if t.name == qualname and t.examples]
    assert found, f"no doctest collected for {qualname}"


@pytest.mark.parametrize(
    "obj",
    [p.values[0] for p in public_objects() if inspect.isclass(p.values[0])],
    ids=lambda c: c.__name__,
)
def test_public_methods_documented(obj):
    # Methods panelglm defines itself, on the class or a base of its own
    # (inherited scikit-learn ones are documented there).
    own = {}
    for cls in reversed(obj.__mro__):
        if cls.__module__.startswith("panelglm"):
            own.update(vars(cls))
    for name, member in own.items():
        if name.startswith("_") or (not callable(member) and not isinstance(member, property)):
            continue
        target = member.fget if isinstance(member, property) else member
        target = getattr(target, "__func__", target)
        assert inspect.getdoc(target), f"{obj.__name__}.{name} has no docstring"
