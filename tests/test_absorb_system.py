"""The absorbed effects' curvature block: products and solves against the dense F' diag(t) F."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import panelglm._absorb.effects as absorb_module
from panelglm import PanelPoissonRegressor
from panelglm._absorb.effects import AbsorbedEffects, EffectSystem
from panelglm.exceptions import SeparationWarning

SHAPE = (7, 5, 4)
CONFIGS = {
    "one": ((0,),),
    "two": ((0,), (1,)),
    "three": ((0,), (1,), (2,)),
    "tuple": ((0, 1), (2,)),
    "two-tuples": ((0, 1), (1, 2)),
    "three-tuples": ((0, 1), (0, 2), (1, 2)),
}


def indicators(effects):
    """The dense cells x levels indicator matrix F, the effects' columns stacked."""
    cells = np.indices(effects.shape).reshape(len(effects.shape), -1)
    blocks = []
    for r, axes in enumerate(effects.axes):
        level = np.ravel_multi_index(tuple(cells[a] for a in axes), effects.sub_shape(r))
        block = np.zeros((cells.shape[1], effects.n_levels[r]))
        block[np.arange(cells.shape[1]), level] = 1.0
        blocks.append(block)
    return np.hstack(blocks)


def weights(zero_levels, seed=0):
    """Curvature weights on the grid, some zero (a cell; with zero_levels, whole levels)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.1, 3.0, size=SHAPE)
    t[rng.uniform(size=SHAPE) < 0.15] = 0.0
    if zero_levels:
        t[2] = 0.0  # level 2 of axis 0: every effect on axis 0 has levels of no weight
        t[:, 3, 1] = 0.0
    return t


def stacked(effects, flat, k):
    return [p.reshape((*effects.sub_shape(r), k)) for r, p in enumerate(effects.split(flat))]


def flat(effects, parts, k):
    return np.concatenate([p.reshape(-1, k) for p in parts])


@pytest.mark.parametrize("zero_levels", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matvec_is_the_dense_product(config, zero_levels):
    effects = AbsorbedEffects(SHAPE, CONFIGS[config], tuple(map(str, CONFIGS[config])))
    t = weights(zero_levels)
    F = indicators(effects)
    D = F.T @ (t.ravel()[:, None] * F)
    z = np.random.default_rng(1).normal(size=(effects.total, 3))
    out = EffectSystem(effects, t).matvec(stacked(effects, z, 3))
    np.testing.assert_allclose(flat(effects, out, 3), D @ z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("branch", ["dense", "cg"])
@pytest.mark.parametrize("zero_levels", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_solve_satisfies_the_system(config, zero_levels, branch, monkeypatch):
    if branch == "cg":
        monkeypatch.setattr(absorb_module, "DENSE_LEVELS", 0)
    effects = AbsorbedEffects(SHAPE, CONFIGS[config], tuple(map(str, CONFIGS[config])))
    t = weights(zero_levels, seed=2)
    F = indicators(effects)
    D = F.T @ (t.ravel()[:, None] * F)
    # Right-hand sides in D's range, as the Newton systems' are (F' diag(t) x).
    rhs = F.T @ (t.ravel()[:, None] * np.random.default_rng(3).normal(size=(F.shape[0], 4)))
    system = EffectSystem(effects, t)
    z, n_iter = system.solve(stacked(effects, rhs, 4))
    assert (n_iter > 0) == (branch == "cg" and len(CONFIGS[config]) > 1)
    z = flat(effects, z, 4)
    np.testing.assert_allclose(D @ z, rhs, rtol=0, atol=1e-10 * np.abs(rhs).max())
    # Levels of no weight get nothing.
    idle = np.diag(D) == 0
    assert idle.any() or not zero_levels
    np.testing.assert_allclose(z[idle], 0.0, atol=1e-12 * np.abs(z).max())
    # A warm start at the solution is kept.
    if branch == "cg":
        again, _ = system.solve(stacked(effects, rhs, 4), x0=stacked(effects, z, 4))
        np.testing.assert_allclose(
            D @ flat(effects, again, 4), rhs, atol=1e-10 * np.abs(rhs).max()
        )


def test_large_two_way_panel_fits_without_a_levels_squared_matrix():
    """20,000 firms x 5 years: a dense effects' Hessian alone would be 3.2 GB."""
    n_firms, n_years = 20_000, 5
    rng = np.random.default_rng(4)
    firm = np.repeat(np.arange(n_firms), n_years)
    year = np.tile(np.arange(n_years), n_firms)
    x1 = rng.normal(size=firm.size)
    x2 = rng.normal(size=firm.size)
    a = rng.normal(scale=0.5, size=n_firms)
    eta = 1.0 + 0.3 * x1 - 0.2 * x2 + a[firm] + 0.1 * year
    y = rng.poisson(np.exp(eta)).astype(float)
    df = pd.DataFrame({"firm": firm, "year": year, "x1": x1, "x2": x2})
    est = PanelPoissonRegressor(dims=["firm", "year"], absorb=["firm", "year"])
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            # A firm whose five counts are all zero is separated (and kept at -inf).
            warnings.simplefilter("ignore", SeparationWarning)
            est.fit(df, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6
    assert est.converged_
    np.testing.assert_allclose(est.coef_, [0.3, -0.2], atol=0.02)
    assert len(est.fixef_["firm"]) == n_firms
    assert est.fixef_["year"].iloc[0] == 0.0
    np.testing.assert_allclose(np.diff(est.fixef_["year"]), 0.1, atol=0.02)


def test_effects_spanning_the_grid_keep_one_curvature_at_a_time(monkeypatch):
    """Customer and product-week effects: their cross block is the grid-sized
    curvature itself. A Newton iterate's is dropped once the next point is
    evaluated (and remade if asked for), and the Hessian's temporaries are a
    slab's: the fit's peak stays under four grid-sized arrays (4.3 before)."""
    import panelglm._model.factored as factored
    from panelglm import PanelDesign

    monkeypatch.setattr(factored, "SLAB_CELLS", 1 << 14)
    rng = np.random.default_rng(0)
    shape = (400, 20, 30)
    n = int(np.prod(shape))
    idx = np.indices(shape).reshape(3, -1)
    df = pd.DataFrame({"c": idx[0], "p": idx[1], "w": idx[2], "x": rng.normal(size=n)})
    df["xcp"] = rng.normal(size=shape[:2])[idx[0], idx[1]]
    a = rng.normal(scale=0.3, size=shape[0])
    y = rng.poisson(np.exp(0.2 * df["x"] + 0.3 * df["xcp"] + a[idx[0]])).astype(float)
    data = PanelDesign(
        dims=["c", "p", "w"], absorb=["c", ("p", "w")], covariates=["x", "xcp"]
    ).fit_transform(df)
    tracemalloc.start()
    try:
        est = PanelPoissonRegressor(tol=1e-10).fit(data, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3.9 * 8 * n, peak / (8 * n)
    dense = PanelPoissonRegressor(tol=1e-10).fit(
        PanelDesign(
            dims=["c", "p", "w"], fixed_effects=["c", ("p", "w")], covariates=["x", "xcp"]
        ).fit_transform(df.iloc[: 20 * 20 * 30]),
        y[: 20 * 20 * 30],
    )
    small = PanelPoissonRegressor(tol=1e-10).fit(
        PanelDesign(
            dims=["c", "p", "w"], absorb=["c", ("p", "w")], covariates=["x", "xcp"]
        ).fit_transform(df.iloc[: 20 * 20 * 30]),
        y[: 20 * 20 * 30],
    )
    np.testing.assert_allclose(small.coef_, dense.coef_[:2], rtol=1e-8)
    np.testing.assert_allclose(est.coef_, [0.2, 0.3], atol=0.02)


def test_a_spilled_effect_system_is_rebuilt_with_the_same_solution():
    """The objective drops the last point's effect system when it evaluates a
    new point; asking the old Hessian for a Newton step rebuilds it exactly."""
    from panelglm._absorb.objective import AbsorbedObjective
    from panelglm._engine.objective import PanelProblem
    from panelglm._model.blocks import DenseBlock
    from panelglm._model.factored import FactoredDesign
    from panelglm._model.families import BINOMIAL, POISSON

    rng = np.random.default_rng(2)
    shape = (30, 6, 5)
    x = rng.normal(size=shape)
    design = FactoredDesign(shape, [DenseBlock((0, 1, 2), x[..., None], ("x",))])
    effects = AbsorbedEffects(shape, ((0,), (1, 2)), ("c", "p:w"))
    for family, y in [
        (POISSON, rng.poisson(np.exp(0.2 * x)).astype(float)),
        (BINOMIAL, rng.binomial(1, 0.4, size=shape).astype(float)),
    ]:
        problem = PanelProblem(shape, y, w=rng.uniform(0.5, 2.0, size=shape))
        obj = AbsorbedObjective(design, effects, family, problem, 0.0, np.ones(1), 1e-10)
        start = rng.normal(scale=0.1, size=1 + effects.total)
        _, grad, hess = obj.loss_grad_hess(start)
        expected = hess.newton_step(grad)[0]
        obj.loss_grad_hess(start + 0.01)
        assert hess._system is None
        hess._z, hess.warm[0] = None, None
        np.testing.assert_allclose(hess.newton_step(grad)[0], expected, rtol=1e-8, atol=1e-12)
        assert hess._system is not None
