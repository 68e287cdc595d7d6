"""Every example script runs top to bottom (at reduced size) and draws a figure.

The gallery (sphinx-gallery, see docs/conf.py) runs a script block by block,
split at its ``# %%`` lines: it shows the repr of a block's last expression,
and captures (then closes) the figures open at the end of each block. So a
figure must be finished within the block that creates it, and no block may
end in a stray expression such as ``ax.legend()``.
"""

from __future__ import annotations

import ast
import os
import re
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


def gallery_blocks(path: Path):
    """Run ``path`` as the gallery does; yield each block's number, last value and figures.

    The figures are closed when the caller asks for the next block, as the
    gallery's image scraper closes them.
    """
    import matplotlib.pyplot as plt

    source = path.read_text()
    namespace = {"__name__": "__main__", "__file__": str(path)}
    line = 0
    plt.close("all")
    for k, block in enumerate(re.split(r"^# %%.*$", source, flags=re.M)):
        # Padded with newlines so that a traceback names the script's own lines.
        tree = ast.parse("\n" * line + block, filename=str(path))
        line += block.count("\n")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expr = ast.Expression(tree.body.pop().value)
            exec(compile(tree, str(path), "exec"), namespace)
            last = eval(compile(expr, str(path), "eval"), namespace)
        else:
            exec(compile(tree, str(path), "exec"), namespace)
        yield k, last, [plt.figure(n) for n in plt.get_fignums()]
        plt.close("all")


def figure_problems(fig) -> list[str]:
    """What would look broken in the gallery: an empty axes, text outside the figure."""
    fig.canvas.draw()
    problems = [
        f"axes {i} ({ax.get_title()!r}) has nothing drawn in it"
        for i, ax in enumerate(fig.axes)
        if not ax.has_data()
    ]
    # Everything drawn (tick labels, axis labels, titles, legends), in inches.
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    page = fig.bbox_inches
    tol = 0.01
    if (
        drawn.x0 < page.x0 - tol
        or drawn.y0 < page.y0 - tol
        or drawn.x1 > page.x1 + tol
        or drawn.y1 > page.y1 + tol
    ):
        over = [round(float(v), 2) for v in drawn.extents]
        problems.append(f"text is cut off: drawn over {over} in, figure {list(page.extents)} in")
    return problems


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_blocks_render(path, monkeypatch):
    # A figure left open at the end of a block is what the gallery shows.
    matplotlib.use("Agg")
    monkeypatch.setenv("PANELGLM_EXAMPLE_SMALL", "1")
    monkeypatch.delenv("PANELGLM_SAVE_FIGURES", raising=False)
    problems, n_figures = [], 0
    for k, last, figures in gallery_blocks(path):
        if last is not None:
            problems.append(f"block {k} ends in an expression, shown as {last!r:.60}")
        for fig in figures:
            n_figures += 1
            problems += [f"block {k}, figure {fig.number}: {p}" for p in figure_problems(fig)]
    assert not problems, f"{path.name}: " + "; ".join(problems)
    assert n_figures, f"{path.name} shows no figure"
