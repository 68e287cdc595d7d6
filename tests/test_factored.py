"""The factored kernels against the dense matrix and against finite differences."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

import panelglm._model.factored as factored
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.blocks import DenseBlock, IndicatorBlock
from panelglm._model.factored import FactoredDesign
from panelglm._model.families import BINOMIAL, GAUSSIAN, POISSON


def random_design(shape, rng, with_indicators=True):
    """Blocks at every subset of axes (two columns each), plus indicator blocks."""
    D = len(shape)
    blocks = [DenseBlock((), np.ones(1), ("Intercept",))]
    for r in range(1, D + 1):
        for axes in combinations(range(D), r):
            sub = tuple(shape[a] for a in axes)
            names = tuple(f"x{axes}_{k}" for k in range(2))
            blocks.append(DenseBlock(axes, rng.normal(size=(*sub, 2)), names))
    if with_indicators:
        for axes in [(0,), (D - 1,)] + ([(0, 1)] if D > 1 else []):
            sub = tuple(shape[a] for a in axes)
            codes = np.arange(int(np.prod(sub))).reshape(sub) - 1  # first level: reference
            names = tuple(f"fe{axes}_{k}" for k in range(codes.size - 1))
            blocks.append(IndicatorBlock(axes, codes, names))
    return FactoredDesign(shape=shape, blocks=blocks)


@pytest.mark.parametrize("by_column", [False, True])
@pytest.mark.parametrize("shape", [(7,), (4, 3), (4, 3, 2), (3, 2, 2, 3)])
def test_kernels_equal_dense(shape, by_column, monkeypatch):
    if by_column:  # the column-at-a-time Hessian blocks of large grids, on a small one
        monkeypatch.setattr(factored, "COLUMN_CELLS", 0)
    rng = np.random.default_rng(len(shape))
    design = random_design(shape, rng)
    X = design.to_dense()
    assert X.shape == (np.prod(shape), design.n_coef)
    beta = rng.normal(size=design.n_coef)
    off = rng.normal(size=shape[-1:])
    eta = design.linear_predictor(beta, (off, (len(shape) - 1,)))
    expected = X @ beta + np.broadcast_to(off, shape).ravel()
    np.testing.assert_allclose(eta.ravel(), expected, rtol=1e-12)

    g = rng.normal(size=shape)
    np.testing.assert_allclose(design.gradient(g), X.T @ g.ravel(), rtol=1e-11, atol=1e-12)
    h = rng.uniform(0.1, 1.0, size=shape)
    np.testing.assert_allclose(
        design.hessian(h), X.T @ (h.ravel()[:, None] * X), rtol=1e-11, atol=1e-12
    )


@pytest.mark.parametrize("keep", [(0,), (1,), (0, 2), (1, 2)])
def test_cluster_scores_equal_dense_groupby(keep):
    shape = (4, 3, 2)
    rng = np.random.default_rng(3)
    design = random_design(shape, rng)
    X = design.to_dense()
    g = rng.normal(size=shape)
    scores = design.scores(g, keep)
    cells = np.stack(np.unravel_index(np.arange(g.size), shape), -1)
    cluster = np.ravel_multi_index(tuple(cells[:, a] for a in keep), tuple(shape[a] for a in keep))
    expected = np.zeros((cluster.max() + 1, X.shape[1]))
    np.add.at(expected, cluster, g.ravel()[:, None] * X)
    np.testing.assert_allclose(scores, expected, rtol=1e-11, atol=1e-12)


def test_paths_are_planned_once_per_design():
    rng = np.random.default_rng(0)
    design = random_design((3, 3, 2), rng)
    design.hessian(np.ones((3, 3, 2)))
    n_paths = len(design._plans)
    assert n_paths > 0
    design.hessian(rng.uniform(size=(3, 3, 2)))
    design.gradient(rng.uniform(size=(3, 3, 2)))
    design.gradient(rng.uniform(size=(3, 3, 2)))
    assert len(design._plans) == n_paths + sum(isinstance(b, DenseBlock) for b in design.blocks)


@pytest.mark.parametrize("family", [GAUSSIAN, POISSON, BINOMIAL], ids=lambda f: f.name)
def test_objective_gradient_and_hessian_match_finite_differences(family):
    shape = (4, 3, 2)
    rng = np.random.default_rng(7)
    design = random_design(shape, rng, with_indicators=True)
    m = rng.integers(1, 4, size=shape).astype(float)
    y = rng.poisson(1.0, size=shape).astype(float)
    if family is BINOMIAL:
        y = np.minimum(y, m)
    problem = PanelProblem(
        shape=shape,
        y=y,
        m=m if family is BINOMIAL else 1.0,
        w=rng.uniform(0.5, 2, size=shape),
        offset=(rng.normal(size=shape[:1]) * 0.1, (0,)),
    )
    pen = np.ones(design.n_coef)
    pen[0] = 0
    obj = PenalizedObjective(design, family, problem, alpha=0.1, penalized=pen)
    beta = rng.normal(size=design.n_coef) * 0.1
    loss, grad, hess = obj.loss_grad_hess(beta)
    assert loss == pytest.approx(obj.loss(beta), rel=1e-14)
    np.testing.assert_allclose(grad, approx_fprime(beta, obj.loss, 1e-7), rtol=1e-4, atol=1e-6)
    # Central differences of the analytic gradient, one coefficient at a time.
    eps = 1e-6
    num_hess = np.column_stack(
        [
            (obj.loss_grad_hess(beta + eps * e)[1] - obj.loss_grad_hess(beta - eps * e)[1])
            / (2 * eps)
            for e in np.eye(design.n_coef)
        ]
    )
    np.testing.assert_allclose(hess, num_hess, rtol=1e-6, atol=1e-8)


def test_plain_hessian_memory_does_not_grow_with_block_columns():
    """A cell-level indicator (a categorical varying by cell) or a cell-level dense
    block paired with a 12-column block: a few grid-sized arrays, not 12 of them."""
    import tracemalloc

    rng = np.random.default_rng(0)
    shape = (64, 32, 64)
    n = int(np.prod(shape))
    blocks = [
        DenseBlock((0,), rng.normal(size=(shape[0], 12)), tuple(f"a{q}" for q in range(12))),
        DenseBlock((0, 1, 2), rng.normal(size=(*shape, 3)), ("c0", "c1", "c2")),
        IndicatorBlock(
            (0, 1, 2), rng.integers(-1, 20, size=shape), tuple(f"g{q}" for q in range(20))
        ),
    ]
    design = FactoredDesign(shape=shape, blocks=blocks)
    h = rng.uniform(0.5, 1.5, size=shape)
    tracemalloc.start()
    hess = design.hessian(h)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * n * 8, peak / (n * 8)
    # The numbers are those of the dense matrix (a few columns of it at a time).
    X = design.to_dense()
    np.testing.assert_allclose(hess, X.T @ (h.ravel()[:, None] * X), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("shape", [(9, 4, 5), (7, 3), (13,)])
def test_slabs_along_the_first_axis_give_the_dense_numbers(shape, monkeypatch):
    """Scores (by any clusters) and the Hessian taken slab by slab equal the
    dense matrix's: slabs of the first axis own their clusters' rows or add
    into every row."""
    monkeypatch.setattr(factored, "SLAB_CELLS", 2 * int(np.prod(shape[1:])))
    rng = np.random.default_rng(3)
    design = FactoredDesign(shape=shape, blocks=random_design(shape, rng).blocks)
    assert len(design._slabs()) > 1
    X = design.to_dense()
    h = rng.uniform(0.5, 1.5, size=shape)
    np.testing.assert_allclose(
        design.hessian(h), X.T @ (h.ravel()[:, None] * X), rtol=1e-10, atol=1e-10
    )
    grid_idx = np.indices(shape).reshape(len(shape), -1)
    last = len(shape) - 1
    for keep in sorted({(), (0,), (last,), tuple(sorted({0, last})), tuple(range(len(shape)))}):
        flat = (
            np.ravel_multi_index(tuple(grid_idx[list(keep)]), [shape[a] for a in keep])
            if keep
            else np.zeros(X.shape[0], dtype=int)
        )
        n_k = int(np.prod([shape[a] for a in keep]))
        expected = np.zeros((n_k, X.shape[1]))
        np.add.at(expected, flat, h.ravel()[:, None] * X)
        np.testing.assert_allclose(design.scores(h, keep), expected, rtol=1e-10, atol=1e-10)


def test_large_relaid_blocks_are_not_kept_between_hessians(monkeypatch):
    """A cell-level block paired with a block over other axes is laid out in a
    new order; above KEEP_LAYOUT values that copy is made per call, not kept
    (it is as large as the grid), with the same numbers."""
    import panelglm._model.contract as contract

    rng = np.random.default_rng(5)
    shape = (6, 5, 4)
    blocks = [
        DenseBlock((0, 1, 2), rng.normal(size=(*shape, 1)), ("cell",)),
        DenseBlock((0, 2), rng.normal(size=(6, 4, 2)), ("cw0", "cw1")),
    ]
    h = rng.uniform(0.5, 1.5, size=shape)
    expected = FactoredDesign(shape=shape, blocks=blocks).hessian(h)
    monkeypatch.setattr(contract, "KEEP_LAYOUT", 0)
    design = FactoredDesign(shape=shape, blocks=blocks)
    np.testing.assert_allclose(design.hessian(h), expected, rtol=1e-12)
    pairs = [v for v in design._plans.values() if isinstance(v, contract.DensePair)]
    assert any(p.a3 is None or p.b3 is None for p in pairs)
    for p in pairs:
        for kept in (p.a3, p.b3):
            assert kept is None or np.shares_memory(kept, blocks[0].values) or kept.size < 120
