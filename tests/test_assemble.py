"""The Hessian assembly's paths on a design like the benchmark's, against the dense matrix.

Blocks over every axis pair and every single axis, many columns each (the
many-column diagonal products), groups whose results are stored with their
columns before the last axis, and a spread column.
"""

from __future__ import annotations

from itertools import combinations, pairwise

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


@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
@pytest.mark.parametrize(
    ("shape", "cuts"),
    # The second: a pair over the first two axes is formed one way on a slab of
    # 3 x 256 cells and another on the whole grid (its size against COLUMN_CELLS).
    [((6, 4, 5), (0, 2, 3, 6)), ((260, 256, 1), (0, 3, 100, 260))],
)
def test_accumulators_split_in_two_add_up_to_the_whole(family, shape, cuts):
    """The assembly is linear and skips absent accumulators: the arrays over the
    first axis contracted slab by slab (each with its slabs' design), the others
    once, give the whole grid's gradient rows and Hessian (as a Dask pass does)."""
    from test_kernels import FAMILIES, random_design

    from panelglm._engine.assemble import Assembler
    from panelglm._engine.kernels import NumpyEngine
    from panelglm._engine.pass_spec import PassSpec
    from panelglm._engine.plan import make_plan
    from panelglm._engine.reductions import Accumulators
    from panelglm._model.blocks import _slab_of

    rng = np.random.default_rng(11)
    # Every axis subset, and fixed effects where the last axis has levels to drop.
    design = random_design(shape, rng, indicators=shape[-1] > 1)
    fam, plan = FAMILIES[family], make_plan(design)
    y = rng.poisson(1.0, size=shape).astype(float)
    problem = PanelProblem(shape, y=y, w=rng.uniform(0.5, 2.0, size=shape))
    beta = rng.normal(scale=0.1, size=design.n_coef)

    def spec_of(d, p):
        return PassSpec.build(d, plan, fam, p.y, p.w, p.m, None)

    whole_spec = spec_of(design, problem)
    whole = Assembler(whole_spec)
    ref = NumpyEngine(whole_spec, problem, n_threads=1).full_pass(beta)
    first = [0 in m for m in plan.targets] + [0 in g for g in whole_spec.group_out]

    def split(acc, keep_first):
        out = object.__new__(Accumulators)
        arrays = [*acc.red.values(), *acc.grp]
        kept = [a if f == keep_first else None for a, f in zip(arrays, first, strict=True)]
        out.red = dict(zip(plan.targets, kept[: len(plan.targets)], strict=True))
        out.grp = kept[len(plan.targets) :]
        out.cell = [None if keep_first else c for c in acc.cell]
        return out

    def results(asm, acc):
        return asm.hessian(acc), asm.row_gradient(acc, 1), asm.row_gradient(acc, 0, h_row=True)

    total = [np.array(r) for r in results(whole, split(ref, False))]
    for lo, hi in pairwise(cuts):
        sl = slice(lo, hi)
        part = FactoredDesign((hi - lo, *shape[1:]), [_slab_of(b, sl) for b in design.blocks])
        sub = problem.rows(lo, hi)
        spec = spec_of(part, sub)
        acc = NumpyEngine(spec, sub, n_threads=1).full_pass(beta)
        for t, r in zip(total, results(Assembler(spec), split(acc, True)), strict=True):
            t += r
    for got, want in zip(total, results(whole, ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
