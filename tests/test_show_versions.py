"""show_versions reports the versions and whether the compiled sweep is in use, and why not."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

import panelglm
from panelglm._engine import compiled as _compiled


def shown(capsys) -> str:
    panelglm.show_versions()
    return capsys.readouterr().out


def line(out: str, key: str) -> str:
    (found,) = [s.strip() for s in out.splitlines() if s.strip().startswith(f"{key}:")]
    return found


def test_versions_and_threads(capsys):
    out = shown(capsys)
    assert line(out, "panelglm") == f"panelglm: {panelglm.__version__}"
    assert line(out, "numpy") == f"numpy: {np.__version__}"
    assert line(out, "python").startswith(f"python: {sys.version.split()[0]}")
    assert "threadpoolctl info:" in out
    assert line(out, "compiled sweep").startswith("compiled sweep: ")
    assert line(out, "numpy passes").startswith("numpy passes: 1 thread")


def test_sweep_in_use_when_built(capsys, monkeypatch):
    if _compiled._sweep is None:
        pytest.skip("the compiled sweep is not built here")
    monkeypatch.delenv("PANELGLM_NUMPY_PASS", raising=False)
    out = shown(capsys)
    assert line(out, "built") == f"built: yes ({_compiled._sweep.__file__})"
    assert line(out, "in use").startswith("in use: yes")


@pytest.mark.parametrize("setting", ["1", "yes"])
def test_switched_off_by_environment(capsys, monkeypatch, setting):
    monkeypatch.setattr(_compiled, "_sweep", _compiled._sweep or object())
    monkeypatch.setenv("PANELGLM_NUMPY_PASS", setting)
    out = shown(capsys)
    assert line(out, "built").startswith("built: yes")
    assert line(out, "in use") == (
        f"in use: no (PANELGLM_NUMPY_PASS={setting} is set: every pass runs with numpy)"
    )


def test_not_built(capsys, monkeypatch):
    # As after an install without a C compiler: the import in _compiled failed.
    monkeypatch.setattr(_compiled, "_sweep", None)
    monkeypatch.setitem(sys.modules, "panelglm._engine._sweep", None)  # makes the import fail
    monkeypatch.delenv("PANELGLM_NUMPY_PASS", raising=False)
    out = shown(capsys)
    built = line(out, "built")
    assert re.match(r"built: no \((ModuleNotFound|Import)Error: ", built), built
    assert "panelglm._engine._sweep" in built
    assert line(out, "in use") == "in use: no (not built: every pass runs with numpy)"


def test_to_a_file(capsys):
    buf = io.StringIO()
    panelglm.show_versions(file=buf)
    assert capsys.readouterr().out == ""
    assert buf.getvalue() == shown(capsys)
