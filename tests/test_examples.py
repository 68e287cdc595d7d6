"""Every example script runs top to bottom (at reduced size) and draws a figure."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import matplotlib
import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("PANELGLM_EXAMPLE_SMALL", "1")
    monkeypatch.setenv("PANELGLM_SAVE_FIGURES", str(tmp_path))
    plt.close("all")
    runpy.run_path(str(path), run_name="__main__")
    assert plt.get_fignums(), f"{path.name} drew no figure"
    assert list(tmp_path.glob("*.png")), f"{path.name} saved no figure"
    plt.close("all")
    assert os.environ["PANELGLM_EXAMPLE_SMALL"] == "1"
