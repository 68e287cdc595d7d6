"""The fused, chunked kernels against the dense matrix, chunk by chunk and on threads."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from conftest import engines, make_panel
from test_estimators import SIZES, sm_fit

import panelglm._engine.compiled_engine as compiled_engine
import panelglm._engine.kernels as kernels
from panelglm import PanelDesign, PanelLogitRegressor, PanelPoissonRegressor
from panelglm._engine.engines import PassEngine, make_engine
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._engine.plan import make_plan
from panelglm._model.blocks import DenseBlock, IndicatorBlock
from panelglm._model.factored import FactoredDesign
from panelglm._model.families import BINOMIAL, GAUSSIAN, POISSON

FAMILIES = {"poisson": POISSON, "binomial": BINOMIAL, "gaussian": GAUSSIAN}


def random_design(shape, rng, indicators=True):
    """Dense blocks at every axis subset (every block layout the kernels must handle)."""
    D = len(shape)
    blocks = [DenseBlock((), np.ones(1), ("1",))]
    for r in range(1, D + 1):
        for axes in combinations(range(D), r):
            k = int(rng.integers(1, 3))
            vals = rng.uniform(-1, 1, size=(*[shape[a] for a in axes], k))
            blocks.append(DenseBlock(axes, vals, tuple(f"x{axes}{c}" for c in range(k))))
    if indicators and D >= 2:
        # A fixed effect on the last axis (first level the reference) and one on
        # the last two axes, as PanelDesign would code them.
        n = shape[-1]
        blocks.append(
            IndicatorBlock((D - 1,), np.arange(n) - 1, tuple(f"fe{c}" for c in range(1, n)))
        )
    if indicators and D >= 3:
        m = shape[1] * shape[2]
        codes = (np.arange(m) - 1).reshape(shape[1], shape[2])
        blocks.append(IndicatorBlock((1, 2), codes, tuple(f"fe2_{c}" for c in range(1, m))))
    return FactoredDesign(tuple(shape), blocks)


def reference(design, family, y, m, w, off, beta):
    X = design.to_dense()
    eta = X @ beta + off.ravel()
    f = family.loglik(y.ravel(), eta, m.ravel())
    g, h = family.grad_hess(y.ravel(), eta, m.ravel())
    ww = w.ravel()
    return float(np.sum(ww * f)), X.T @ (ww * g), X.T @ (X * (ww * h)[:, None])


def random_response(family, rng, eta, m):
    """A response of ``family`` on the grid of ``m`` for the linear predictor ``eta`` (flat)."""
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "binomial":
        y = rng.binomial(m.astype(int).ravel(), 1 / (1 + np.exp(-eta)))
    else:
        y = rng.normal(size=m.size)
    return y.astype(float).reshape(m.shape)


def _engine(engine, design, family, problem):
    """The engine named ``engine``; the numpy one in chunks of one slab, on two threads."""
    if engine != "numpy":
        return make_engine(design, family, problem, kind=engine)
    eng = make_engine(design, family, problem, kind="numpy", chunk_cells=1, n_threads=2)
    # Many chunks of the first axis, on two threads: every accumulation path runs.
    assert len(eng.chunks) == problem.shape[0] and eng.n_threads == 2
    return eng


def _random_problem(shape, family, seed, indicators):
    rng = np.random.default_rng(seed)
    design = random_design(shape, rng, indicators=indicators)
    beta = rng.normal(scale=0.2, size=design.n_coef)
    m = rng.integers(1, 4, size=shape).astype(float)
    w = rng.uniform(0.5, 2.0, size=shape)
    off = rng.normal(scale=0.1, size=shape)
    eta = design.to_dense() @ beta + off.ravel()
    y = random_response(family, rng, eta, m)
    problem = PanelProblem(shape, y=y, m=m, w=w, offset=(off, tuple(range(len(shape)))))
    return design, problem, beta


@pytest.mark.parametrize("engine", engines())
@pytest.mark.parametrize("shape", [(23,), (5, 4), (4, 3, 5), (3, 4, 2, 3)])
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
def test_fused_pass_matches_dense(shape, family, engine):
    fam = FAMILIES[family]
    design, problem, beta = _random_problem(shape, family, len(shape), family != "gaussian")
    y, m, w, (off, _) = problem.y, problem.m, problem.w, problem.offset
    eng = _engine(engine, design, fam, problem)
    obj = PenalizedObjective(design, fam, problem, 0.0, np.ones(design.n_coef), engine=eng)
    assert obj.engine.name == engine
    lsum, grad, hess = reference(design, fam, y, m, w, off, beta)
    loss, g_obj, h_obj = obj.loss_grad_hess(beta)
    scale = 1.0 / w.sum()
    np.testing.assert_allclose(loss, -scale * lsum, rtol=1e-12)
    np.testing.assert_allclose(obj.loss(beta), -scale * lsum, rtol=1e-12)
    np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine", engines())
@pytest.mark.parametrize("shape", [(23,), (4, 3, 5)])
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
def test_statistics_at_the_solution_match_dense(shape, family, engine):
    """Information, robust meat and chunked sums of every engine: the dense matrix's."""
    fam = FAMILIES[family]
    design, problem, beta = _random_problem(shape, family, 7 + len(shape), family != "gaussian")
    y, m, w, (off, _) = problem.y, problem.m, problem.w, problem.offset
    eng = _engine(engine, design, fam, problem)
    assert isinstance(eng, PassEngine) and eng.name == engine
    X = design.to_dense()
    eta = X @ beta + off.ravel()
    g, h = fam.grad_hess(y.ravel(), eta, m.ravel())
    u = w.ravel() * g
    info = X.T @ (X * (-w.ravel() * h)[:, None])
    meat = X.T @ (X * (u * u)[:, None])
    np.testing.assert_allclose(eng.information(beta), info, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(eng.score_outer(beta), meat, rtol=1e-9, atol=1e-12)
    sums = eng.chunk_sums(beta, lambda sub, e: (float(np.sum(e)), float(e.size)))
    np.testing.assert_allclose(sums, [eta.sum(), eta.size], rtol=1e-12)
    eng.release()  # and the engine still works after
    np.testing.assert_allclose(eng.information(beta), info, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine", engines())
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
def test_fit_statistics_agree_across_engines(family, engine):
    """Deviance and log-likelihood of the fit and the null model: the plain engine's."""
    fam = FAMILIES[family]
    design, problem, beta = _random_problem((4, 3, 5), family, 3, family != "gaussian")
    ones = np.ones(design.n_coef)
    got = PenalizedObjective(design, fam, problem, 0.0, ones, engine=engine)
    want = PenalizedObjective(design, fam, problem, 0.0, ones, engine="plain")
    a, b = got.fit_statistics(beta, 0.1), want.fit_statistics(beta, 0.1)
    np.testing.assert_allclose(
        [a.deviance, a.loglik, a.null_deviance, a.null_loglik],
        [b.deviance, b.loglik, b.null_deviance, b.null_loglik],
        rtol=1e-10,
    )
    X = design.to_dense()
    mu = fam.mean(X @ beta + problem.offset[0].ravel(), problem.m.ravel())
    dev = np.vdot(problem.w.ravel(), fam.unit_deviance(problem.y.ravel(), mu, problem.m.ravel()))
    assert a.deviance == pytest.approx(dev, rel=1e-10)


def test_plan_covers_every_pair_once():
    """Pairs whose axes cover the grid: each served by a BLAS group or a spread block."""
    rng = np.random.default_rng(0)
    design = random_design((4, 3, 5), rng)
    plan = make_plan(design)
    ax = [b.axes for b in design.blocks]
    for a, b in combinations(plan.rest, 2):
        if set(ax[a]) | set(ax[b]) == {0, 1, 2}:
            assert a in plan.spread or b in plan.spread or plan.group_of(a, b) is not None
    # Two fixed effects covering every axis have a Hessian block as large as the
    # panel: no plan, the plain kernels take over.
    fe = [
        IndicatorBlock((0, 1), np.zeros((2, 3), int), ("a",)),
        IndicatorBlock((2,), np.zeros(4, int), ("b",)),
    ]
    assert make_plan(FactoredDesign((2, 3, 4), fe)) is None


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_chunked_threaded_fit_matches_statsmodels(family, engine, monkeypatch):
    monkeypatch.setattr(kernels, "CHUNK_CELLS", 13)  # 3 x 6 x 5 cells: one slab per chunk
    monkeypatch.setenv("PANELGLM_NUMPY_PASS", "1" if engine == "numpy" else "0")
    df, dims, names, y = make_panel((6, 5, 4), seed=21, family=family)
    est = (
        PanelPoissonRegressor(offset="off")
        if family == "poisson"
        else PanelLogitRegressor(trials="m")
    )
    cols = [*dims, *names, "off" if family == "poisson" else "m"]
    est.fit(PanelDesign(dims=dims).fit_transform(df[cols]), y, sample_weight=df["w"].to_numpy())
    ref = sm_fit(
        family, df, names, y, offset=family == "poisson", trials=family == "binomial", weights=True
    )
    ours = pd.Series(np.r_[est.intercept_, est.coef_], index=["const", *est.coef_names_])
    np.testing.assert_allclose(ours[["const", *names]], ref.params, rtol=1e-8, atol=1e-10)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    assert est.deviance_ == pytest.approx(ref.deviance, rel=1e-9)


@pytest.mark.parametrize("D", [1, 3])
def test_float32_close_to_float64(D):
    df, dims, names, y = make_panel(SIZES[D], seed=30 + D)
    data = PanelDesign(dims=dims).fit_transform(df[[*dims, *names]])
    e64 = PanelPoissonRegressor().fit(data, y)
    e32 = PanelPoissonRegressor(dtype=np.float32).fit(data, y)
    assert e32.converged_
    np.testing.assert_allclose(e32.coef_, e64.coef_, rtol=1e-4, atol=1e-5)
    assert e32.loglik_ == pytest.approx(e64.loglik_, rel=1e-7)


def test_float32_columns_are_used_without_copies():
    df, dims, names, y = make_panel((6, 5, 4), seed=3, shuffle=False)
    df = df[[*dims, *names]].astype({n: np.float32 for n in names})
    data = PanelDesign(dims=dims).fit_transform(df)
    cell = data.numeric("x_012")[0]
    assert cell.dtype == np.float32
    assert np.shares_memory(cell, df["x_012"].to_numpy())
    est = PanelPoissonRegressor(dtype=np.float32).fit(data, y)
    ref = PanelPoissonRegressor().fit(data, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-4, atol=1e-5)


def test_bad_dtype():
    # The parameter constraints answer (InvalidParameterError is a ValueError).
    with pytest.raises(ValueError, match="'dtype' parameter of PanelPoissonRegressor must be"):
        PanelPoissonRegressor(dtype=np.int32).fit(np.ones((5, 1)), np.ones(5))
    for ok in (np.float32, np.dtype("float32"), "float32", "float64"):
        X = np.arange(5.0).reshape(-1, 1)
        assert PanelPoissonRegressor(dtype=ok).fit(X, np.arange(5.0)).converged_


def test_blocks_with_several_columns_keep_their_names():
    """Several numeric columns per level share a block; each keeps its own name."""
    df, dims, names, y = make_panel((5, 4, 3), seed=9, scale=0.2)
    twins = [n + "b" for n in names]
    for name, twin in zip(names, twins, strict=True):
        # A nonlinear function of the column: same level, not collinear.
        df[twin] = np.tanh(df[name]) + 0.3 * df[name] ** 2
    covs = [*names, *twins]
    est = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df[[*dims, *covs]]), y)
    ref = sm_fit("poisson", df, covs, y)
    ours = pd.Series(np.r_[est.intercept_, est.coef_], index=["const", *est.coef_names_])
    np.testing.assert_allclose(ours[["const", *covs]], ref.params, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
def test_targets_hold_only_the_rows_they_receive(engine):
    """A spread block's rows go to its partners' targets only; a target (here one
    spanning two large axes) does not carry them, and the results stay exact."""
    from panelglm._engine.reductions import Accumulators

    rng = np.random.default_rng(5)
    shape = (3, 40, 50)
    design = random_design(shape, rng, indicators=False)
    y = rng.poisson(1.0, size=shape).astype(float)
    problem = PanelProblem(shape, y=y, m=1.0, w=None, offset=None)
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef), engine=engine)
    assert obj.engine.name == engine
    spec = obj.engine.spec
    assert spec.plan.spread
    acc = Accumulators(spec)
    held = {m: acc.red[m].shape[0] for m in spec.plan.targets}
    assert any(n < spec.n_rows for n in held.values())
    for m, n in held.items():
        spread = sum(r1 - r0 for r0, r1, needed in spec.spread_rows.values() if m in needed)
        assert n == spec.n_all_rows + spread
    beta = rng.normal(scale=0.1, size=design.n_coef)
    _, grad, hess = reference(
        design, POISSON, y, np.ones(shape), np.ones(shape), np.zeros(shape), beta
    )
    _, g_obj, h_obj = obj.loss_grad_hess(beta)
    scale = 1.0 / np.prod(shape)
    np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
def test_loss_pass_and_full_pass_give_the_same_bits(family, engine):
    """The line search compares a loss-only pass with a full pass's loss: on either engine."""
    fam = FAMILIES[family]
    for shape in [(2, 8, 3), (9, 4), (5, 7, 40)]:
        design, problem, beta = _random_problem(shape, family, 5, family != "gaussian")
        eng = make_engine(design, fam, problem, kind=engine, **_chunked(engine))
        assert eng.name == engine
        assert eng.loss(beta) == eng.full_pass(beta).lsum


def _chunked(engine):
    return {"chunk_cells": 50} if engine == "numpy" else {}


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
def test_response_pass_on_the_engines_threads_matches_dense(engine, monkeypatch):
    """``X' (w y)`` and each chunk's response, when the pass runs on two threads."""
    shape = (6, 4, 5)
    design, problem, _ = _random_problem(shape, "poisson", 7, True)
    eng = make_engine(design, POISSON, problem, kind=engine, chunk_cells=20, n_threads=2)
    if engine == "numpy":
        eng.n_threads = 2  # its full passes' count, which the response pass follows
    else:
        assert eng.response_threads == 1  # chunks too small to gain from threads
        monkeypatch.setattr(compiled_engine, "RESPONSE_THREAD_CELLS", 20)
    assert eng.response_threads == 2 and len(eng.chunks) == shape[0]
    pools, seen = [], {}
    real_pool = kernels.ThreadPoolExecutor
    monkeypatch.setattr(kernels, "ThreadPoolExecutor", lambda n: pools.append(n) or real_pool(n))
    score = eng.response_score(lambda y, w, s: seen.__setitem__(s, (y.copy(), w.copy())))
    assert pools == [2]
    y, w = problem.y, problem.w
    np.testing.assert_allclose(score, design.to_dense().T @ (w * y).ravel(), rtol=1e-12)
    assert sorted(seen) == list(range(shape[0]))
    for s, (ys, ws) in seen.items():
        np.testing.assert_array_equal(ys, y[s : s + 1])
        np.testing.assert_array_equal(ws, w[s : s + 1])


def test_dense_parts_off_the_first_axis_are_shared_through_the_cache():
    """Slabs of one grid share the products of the blocks off the first axis."""
    design, problem, beta = _random_problem((4, 3, 5), "poisson", 3, False)
    eng = make_engine(design, POISSON, problem, kind="numpy")
    want = eng.eta_parts(beta)
    eng.part_cache = {}
    got = eng.eta_parts(beta)
    for a, b in zip([*want[0], *want[1]], [*got[0], *got[1]], strict=True):
        np.testing.assert_array_equal(a, b)
    shared = [k for k in eng.part_cache if k != "beta"]
    blocks = eng.spec.design.blocks
    assert shared and all(0 not in blocks[i].axes for i in shared)
    for i in shared:  # the next slab's pass at this beta reads them, not the blocks
        eng.part_cache[i] = eng.part_cache[i] + 1.0
    changed = eng.eta_parts(beta)
    assert not all(np.array_equal(a, b) for a, b in zip(changed[0], want[0], strict=True))
    again = eng.eta_parts(beta * 0.5)  # another beta: computed afresh
    fresh = make_engine(design, POISSON, problem, kind="numpy").eta_parts(beta * 0.5)
    for a, b in zip(again[0], fresh[0], strict=True):
        np.testing.assert_array_equal(a, b)
