"""Inference, elastic net and fit statistics on the fused, chunked kernels.

The estimators fit on a chunked pass engine (:mod:`panelglm._engine.engines`, when the design
has a plan) and may work in float32; inference then takes the information
from the solver or one more fused pass, and the score factors slice by slice
(:class:`~panelglm._inference.covariance.ScoreFactors`). These tests check that every
route gives the numbers of the plain kernels and of the dense matrix, and that
none of them makes an array over all the cells.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel

import panelglm._engine.kernels as kernels
import panelglm._inference.covariance as inference
import panelglm._inference.summary as summary
import panelglm._model.statistics as statistics
from panelglm import PanelDesign, PanelLogitRegressor, PanelPoissonRegressor
from panelglm._engine.plan import make_plan
from panelglm._model.terms import build_design

COVS = [
    {"cov_type": "nonrobust"},
    {"cov_type": "robust"},
    {"cov_type": "cluster", "cluster": "d0"},
    {"cov_type": "cluster", "cluster": "d2"},
    {"cov_type": "cluster", "cluster": ["d1", ("d0", "d2")]},
]


def fit(family, df, dims, names, y, **params):
    if family == "poisson":
        est, aux = PanelPoissonRegressor(offset="off", **params), "off"
    else:
        est, aux = PanelLogitRegressor(trials="m", **params), "m"
    data = PanelDesign(dims=dims).fit_transform(df[[*dims, *names, aux]])
    return est.fit(data, y, sample_weight=df["w"].to_numpy()), data


def _without_outer(*args, outer=None, **kwargs):
    """Score factors that take the meat over all axes from slices too."""
    return inference.ScoreFactors(*args, **kwargs)


def as_frame(est):
    return est.cov_params_.to_numpy()


@pytest.mark.parametrize("family", ["poisson", "binomial"])
@pytest.mark.parametrize("params", COVS)
def test_covariance_from_slices_equals_the_dense_sandwich(family, params, monkeypatch):
    """Fused pass, or score factors in slices of one level along any axis: the dense sandwich."""
    df, dims, names, y = make_panel((7, 5, 4), seed=41, family=family)
    whole, data = fit(family, df, dims, names, y, **params)
    assert whole.converged_
    design, _ = build_design(whole._spec, data)
    assert make_plan(design) is not None  # the fit ran on the fused kernels
    # One level per slice, and the robust meat from the slices too (not from
    # the fused pass), as when the design has no plan.
    monkeypatch.setattr(inference, "SLICE_CELLS", 1)
    monkeypatch.setattr(summary, "ScoreFactors", _without_outer)
    sliced, _ = fit(family, df, dims, names, y, **params)
    np.testing.assert_allclose(as_frame(sliced), as_frame(whole), rtol=1e-10, atol=1e-14)

    # The dense reference: bread from X' diag(-w h) X, meat from the scores.
    X = design.to_dense()
    problem = whole._problem(data, y, df["w"].to_numpy())
    eta = X @ whole._beta + np.broadcast_to(problem.offset_grid(), data.shape).ravel()
    g, h = whole.family.grad_hess(
        problem.y.ravel(), eta, np.broadcast_to(problem.m, data.shape).ravel()
    )
    w = problem.w.ravel()
    bread = np.linalg.inv(X.T @ (X * (-w * h)[:, None]))
    if params["cov_type"] == "nonrobust":
        ref = bread
    else:
        u = (w * g)[:, None] * X
        n, k = X.shape
        if params["cov_type"] == "robust":
            meat = n / (n - k) * u.T @ u
        else:
            meat = np.zeros((k, k))
            clusters = params["cluster"]
            clusters = clusters if isinstance(clusters, list) else [clusters]
            axes = [
                tuple(sorted(dims.index(d) for d in ((c,) if isinstance(c, str) else c)))
                for c in clusters
            ]
            for keep, sign in inference.inclusion_exclusion(tuple(axes)).items():
                idx = np.indices(data.shape)[list(keep)].reshape(len(keep), -1)
                codes = np.ravel_multi_index(idx, [data.shape[a] for a in keep])
                S = np.zeros((codes.max() + 1, k))
                np.add.at(S, codes, u)
                G = S.shape[0]
                meat += sign * G / (G - 1) * (n - 1) / (n - k) * S.T @ S
        ref = bread @ meat @ bread
    order = whole._order
    np.testing.assert_allclose(as_frame(whole), ref[np.ix_(order, order)], rtol=1e-7, atol=1e-14)


@pytest.mark.parametrize("l1_ratio", [0.0, 1.0])
def test_penalized_information_is_the_unpenalized_hessian(l1_ratio):
    """With alpha > 0 the bread is the unpenalized information at the estimate."""
    df, dims, names, y = make_panel((6, 5, 4), seed=42)
    with pytest.warns(UserWarning, match="penalized"):
        pen = as_frame(fit("poisson", df, dims, names, y, alpha=0.05, l1_ratio=l1_ratio)[0])
    est, data = fit("poisson", df, dims, names, y, alpha=0.05, l1_ratio=l1_ratio)
    design, _ = build_design(est._spec, data)
    X = design.to_dense()
    problem = est._problem(data, y, df["w"].to_numpy())
    eta = X @ est._beta + problem.offset_grid().ravel()
    h = est.family.grad_hess(problem.y.ravel(), eta, 1.0)[1]
    info = X.T @ (X * (-problem.w.ravel() * h)[:, None])
    ref = np.linalg.inv(info)[np.ix_(est._order, est._order)]
    np.testing.assert_allclose(pen, ref, rtol=1e-8)


@pytest.mark.parametrize("params", COVS)
def test_float32_inference_close_to_float64(params):
    df, dims, names, y = make_panel((8, 6, 5), seed=43)
    e64, _ = fit("poisson", df, dims, names, y, **params)
    e32, _ = fit("poisson", df, dims, names, y, dtype=np.float32, **params)
    assert e32.converged_
    np.testing.assert_allclose(e32.bse_, e64.bse_, rtol=1e-4)
    for attr in ("deviance_", "null_deviance_", "aic_", "pseudo_r2_"):
        assert getattr(e32, attr) == pytest.approx(getattr(e64, attr), rel=1e-6)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_float32_elastic_net_close_to_float64(family):
    df, dims, names, y = make_panel((8, 6, 5), seed=44, family=family, scale=0.6)
    params = {"alpha": 0.1 if family == "poisson" else 0.2, "l1_ratio": 0.7}
    e64, _ = fit(family, df, dims, names, y, **params)
    e32, _ = fit(family, df, dims, names, y, dtype="float32", **params)
    assert e32.converged_ and 0 < np.sum(e64.coef_ == 0) < len(e64.coef_)
    np.testing.assert_allclose(e32.coef_, e64.coef_, atol=1e-6)
    # Coefficients the lasso removes: the same, up to ones at the edge of zero.
    differ = (e32.coef_ == 0) != (e64.coef_ == 0)
    assert np.all(np.abs(e64.coef_[differ]) < 1e-5)


@pytest.mark.parametrize(
    "params",
    [
        {"cov_type": "nonrobust"},
        {"cov_type": "nonrobust", "alpha": 0.1},
        {"cov_type": "robust"},
        {"cov_type": "cluster", "cluster": ["d0", "d1"]},
        {"cov_type": "nonrobust", "alpha": 0.01, "l1_ratio": 0.5},
    ],
)
def test_fit_with_inference_makes_no_array_of_all_cells(params, monkeypatch):
    """Fit, statistics and covariance allocate a fraction of one float64 array of N.

    Chunks and slices are made small so that the fixed buffers stay far below
    N cells; the rows are in the grid's order, so the data are used in place.
    """
    sizes = (200, 25, 20)  # 100,000 cells: 0.8 MB per float64 array of N
    for module in (kernels, statistics):
        monkeypatch.setattr(module, "CHUNK_CELLS", 2000)
    monkeypatch.setattr(inference, "SLICE_CELLS", 2000)
    rng = np.random.default_rng(45)
    idx = np.indices(sizes).reshape(3, -1)
    df = pd.DataFrame({"d0": idx[0], "d1": idx[1], "d2": idx[2]})
    df["x01"] = rng.normal(size=sizes[:2])[idx[0], idx[1]]
    df["x1"] = rng.normal(size=sizes[1])[idx[1]]
    df["x012"] = rng.normal(size=len(df))
    y = rng.poisson(np.exp(0.3 * df["x01"] - 0.2 * df["x012"]).to_numpy()).astype(float)
    data = PanelDesign(dims=["d0", "d1", "d2"], fixed_effects=["d2"]).fit_transform(df)
    est = PanelPoissonRegressor(**params)
    est.fit(data, y)  # lays out (and caches) the columns; checks the plan below
    assert make_plan(build_design(est._spec, data)[0]) is not None
    tracemalloc.start()
    try:
        est.fit(data, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n_bytes = 8 * len(df)
    # Validation makes boolean temporaries (N bytes) and the accumulators are
    # of the size of the d0 x d1 margin; one float64 array of N would exceed this.
    msg = f"peak {peak / 1e3:.0f} kB; one array of N: {n_bytes / 1e3:.0f} kB"
    assert peak < 0.75 * n_bytes, msg
