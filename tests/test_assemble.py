"""The Hessian assembly's paths on a design like the benchmark's, against the dense matrix.

Blocks over every axis pair and every single axis, many columns each (the
many-column diagonal products), groups whose results are stored with their
columns before the last axis, and a spread column.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from conftest import engines
from test_kernels import reference

from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.blocks import DenseBlock
from panelglm._model.factored import FactoredDesign
from panelglm._model.families import POISSON


def benchmark_like(shape, n_single, rng):
    blocks = [DenseBlock((), np.ones(1), ("1",))]
    D = len(shape)
    for r, k in ((D, 2), (2, 3), (1, n_single)):
        for axes in combinations(range(D), r):
            vals = rng.uniform(-1, 1, size=(*[shape[a] for a in axes], k))
            # Stored column by column, as a PanelDesign lays out its tables.
            vals = np.asfortranarray(vals)
            blocks.append(DenseBlock(axes, vals, tuple(f"x{axes}{c}" for c in range(k))))
    return FactoredDesign(tuple(shape), blocks)


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
def test_benchmark_like_design_matches_dense(engine):
    rng = np.random.default_rng(3)
    shape = (7, 6, 5)
    design = benchmark_like(shape, 20, rng)
    y = rng.poisson(1.0, size=shape).astype(float)
    problem = PanelProblem(shape, y=y, m=1.0, w=None, offset=None)
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef), engine=engine)
    assert obj.engine.name == engine
    kinds = {entry[0] for entry in obj.engine.assembler._pair_schedule()}
    assert {"top", "group", "pair"} <= kinds and obj.engine.spec.spread_rows
    beta = rng.normal(scale=0.1, size=design.n_coef)
    _, grad, hess = reference(
        design, POISSON, y, np.ones(shape), np.ones(shape), np.zeros(shape), beta
    )
    for _ in range(2):  # the plans worked out on the first call, used on the second
        _, g_obj, h_obj = obj.loss_grad_hess(beta)
        scale = 1.0 / np.prod(shape)
        np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-10, atol=1e-13)
