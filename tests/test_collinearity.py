"""Collinearity: found before the solve, dropped (NaN) with a warning naming it, or rejected."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import engines, make_panel
from sklearn.linear_model import PoissonRegressor

from panelglm import PanelDesign, PanelLinearRegressor, PanelPoissonRegressor
from panelglm._ident.collinearity import independent_columns, null_space_basis
from panelglm.exceptions import CollinearityWarning

smf = pytest.importorskip("statsmodels.formula.api")


def firm_year(seed=0, n_firms=10, n_years=6):
    rng = np.random.default_rng(seed)
    df = pd.MultiIndex.from_product(
        [[f"f{i}" for i in range(n_firms)], range(2001, 2001 + n_years)], names=["firm", "year"]
    ).to_frame(index=False)
    size = rng.normal(size=n_firms)
    df["size"] = size[pd.factorize(df.firm)[0]]  # varies by firm only
    df["rate"] = rng.normal(size=len(df))
    df["y"] = rng.poisson(np.exp(0.3 + 0.4 * df["size"] + 0.3 * df["rate"])).astype(float)
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def by_name(est):
    return pd.Series(est.coef_, est.coef_names_)


def test_covariate_collinear_with_fixed_effect_is_dropped_and_named():
    df = firm_year()
    est = PanelPoissonRegressor(dims=["firm", "year"], fixed_effects=["firm"])
    with pytest.warns(CollinearityWarning, match=r"covariate coefficient\(s\) 'size' "):
        est.fit(df[["firm", "year", "size", "rate"]], df["y"])
    coef = by_name(est)
    assert np.isnan(coef["size"]) and est.collinear_names_ == ["size"]
    assert not np.isnan(coef.drop("size")).any()
    ref = smf.glm("y ~ rate + C(firm)", df, family=sm.families.Poisson()).fit(tol=1e-13)
    assert coef["rate"] == pytest.approx(ref.params["rate"], rel=1e-8)
    assert coef["firm[f3]"] == pytest.approx(ref.params["C(firm)[T.f3]"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(
        est.predict(df[["firm", "year", "size", "rate"]]), ref.fittedvalues, rtol=1e-8
    )
    # The Hessian has NaN for the dropped coefficient only; so do the standard errors,
    # which for the others equal those of the model without it.
    assert est._kept.sum() == len(est.coef_names_)  # all but size, plus the intercept
    assert np.isnan(np.diag(est._hessian)).sum() == 1
    bse = est.bse_.rename(lambda n: n.replace("firm[", "C(firm)[T."))
    assert np.isnan(bse["size"])
    np.testing.assert_allclose(bse.drop("size"), ref.bse[bse.drop("size").index], rtol=1e-6)


def test_robust_covariance_counts_only_estimated_coefficients():
    df = firm_year(seed=2)
    est = PanelPoissonRegressor(
        dims=["firm", "year"], fixed_effects=["firm"], cov_type="cluster", cluster="firm"
    )
    with pytest.warns(CollinearityWarning):
        est.fit(df[["firm", "year", "size", "rate"]], df["y"])
    ref = smf.glm("y ~ rate + C(firm)", df, family=sm.families.Poisson()).fit(
        tol=1e-13, cov_type="cluster", cov_kwds={"groups": pd.factorize(df.firm)[0]}
    )
    assert est.bse_["rate"] == pytest.approx(ref.bse["rate"], rel=1e-6)
    assert est.aic_ == pytest.approx(ref.aic, rel=1e-10)


def test_collinear_raise_names_the_covariate():
    df = firm_year()
    est = PanelPoissonRegressor(dims=["firm", "year"], fixed_effects=["firm"], collinear="raise")
    with pytest.raises(ValueError, match=r"'size'.*collinear='drop'"):
        est.fit(df[["firm", "year", "size", "rate"]], df["y"])


def test_later_of_two_collinear_covariates_is_dropped():
    df, dims, names, y = make_panel((6, 5, 4), seed=3)
    df = df.assign(combo=df["x_0"] - 2.0 * df["x_12"])  # in the span of two other blocks
    cols = [*names, "combo"]
    with pytest.warns(CollinearityWarning, match="'combo'"):
        est = PanelPoissonRegressor().fit(
            PanelDesign(dims=dims).fit_transform(df[[*dims, *cols]]), y
        )
    ref = sm.GLM(y, sm.add_constant(df[names].to_numpy()), family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    np.testing.assert_allclose(by_name(est)[names], ref.params[1:], rtol=1e-8)
    assert est.collinear_names_ == ["combo"]


@pytest.mark.parametrize(
    "cols, dropped",
    [(["x_0", "x_1", "u"], "u"), (["u", "x_0", "x_1"], "x_1"), (["x_1", "u", "x_0"], "x_0")],
)
def test_the_later_covariate_in_user_order_is_dropped(cols, dropped):
    """Whatever block each column sits in, the user's column order decides."""
    df, dims, _, y = make_panel((6, 5), seed=5)
    df = df.assign(u=df["x_0"] + 0.5 * df["x_1"])  # varies along both dims
    with pytest.warns(CollinearityWarning, match=f"'{dropped}'"):
        est = PanelPoissonRegressor().fit(
            PanelDesign(dims=dims).fit_transform(df[[*dims, *cols]]), y
        )
    assert est.collinear_names_ == [dropped]


def test_large_mean_column_does_not_blunt_later_checks():
    """Timestamps (R^2 on the intercept 1 - 1e-8) then a covariate with R^2 1 - 1e-7 on x.

    Both are identified (above the 1e-10 tolerance) and kept. Without centring, the
    timestamp's small pivot would raise the rounding floor of every later column
    above 1e-7 and the last covariate would be dropped.
    """
    rng = np.random.default_rng(3)
    t = 1.7e9 + rng.uniform(0, 7 * 86400, 400)
    x = rng.normal(size=400)
    z = x + 3e-4 * rng.normal(size=400)
    y = rng.poisson(np.exp(0.2 + 0.3 * x + 1e-6 * (t - 1.7e9))).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)
        est = PanelPoissonRegressor().fit(np.column_stack([x, t, z]), y)
    X = sm.add_constant(np.column_stack([x, t - 1.7e9, z]))
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-13)
    assert not np.isnan(est.coef_).any()
    assert est.coef_[1] == pytest.approx(ref.params[2], rel=1e-6)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)


def test_nested_fixed_effects_give_the_formula_fit():
    """FE on d0 and on (d0, d1) pairs: the d0 effects are redundant, the fit is the pairs'."""
    df, dims, _, y = make_panel((4, 3, 5), seed=6)
    df = df.assign(y=y)
    est = PanelPoissonRegressor(dims=dims, fixed_effects=["d0", ("d0", "d1")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)  # as fixest: no warning
        est.fit(df[[*dims, "x_2", "x_012"]], y)
    assert len(est.collinear_names_) == 3
    ref = smf.glm("y ~ x_2 + x_012 + C(d0):C(d1)", df, family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    # The earlier term keeps its columns; the pairs lose one per d0 level but the first.
    assert all(n.startswith("d0:d1[") for n in est.collinear_names_)
    np.testing.assert_allclose(
        by_name(est)[["x_2", "x_012"]], ref.params[["x_2", "x_012"]], rtol=1e-8
    )
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.SingularMatrixWarning")
def test_redundant_fixed_effects_of_disconnected_panel():
    """Two-way FE on an unbalanced panel in two disconnected blocks: one FE is redundant."""
    rng = np.random.default_rng(5)
    a = pd.MultiIndex.from_product([["a0", "a1", "a2"], ["p0", "p1", "p2"]])
    b = pd.MultiIndex.from_product([["b0", "b1"], ["p3", "p4"]])
    df = pd.DataFrame([*a, *b], columns=["cust", "prod"])
    df["x"] = rng.normal(size=len(df))
    df["y"] = rng.poisson(np.exp(0.5 + 0.3 * df["x"])).astype(float) + 1.0
    design = PanelDesign(dims=["cust", "prod"], fixed_effects=["cust", "prod"], balanced=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sparse grid
        data = design.fit_transform(df[["cust", "prod", "x"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)
        est = PanelPoissonRegressor().fit(data, df["y"])
    ref = smf.glm("y ~ x + C(cust) + C(prod)", df, family=sm.families.Poisson()).fit(tol=1e-13)
    # statsmodels' pinv solution reparametrizes the redundancy; the fit is the same.
    assert by_name(est)["x"] == pytest.approx(ref.params["x"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(est.predict(data), ref.fittedvalues, rtol=1e-8)
    # One level is redundant; 'prod' levels are never empty here (each has rows).
    assert len(est.collinear_names_) == 1 and est.collinear_names_[0].startswith("prod[")


@pytest.mark.filterwarnings("ignore:The information matrix is singular:RuntimeWarning")
def test_ridge_keeps_collinear_columns_as_sklearn_does():
    df, dims, names, y = make_panel((6, 5), seed=4)
    df = df.assign(twin=2.0 * df["x_0"])
    cols = [*names, "twin"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)
        est = PanelPoissonRegressor(alpha=0.1).fit(
            PanelDesign(dims=dims).fit_transform(df[[*dims, *cols]]), y
        )
    ref = PoissonRegressor(alpha=0.1, tol=1e-12, max_iter=1000, solver="newton-cholesky")
    ref.fit(df[cols].to_numpy(), y)
    np.testing.assert_allclose(by_name(est)[cols], ref.coef_, rtol=1e-7)


def test_nearly_collinear_tolerance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = X @ [1.0, -1.0] + rng.normal(size=300)
    near = X[:, 0] + 1e-7 * rng.normal(size=300)  # R^2 = 1 - 1e-14: collinear
    apart = X[:, 0] + 1e-3 * rng.normal(size=300)  # R^2 = 1 - 1e-6: kept
    with pytest.warns(CollinearityWarning, match="'x2'"):
        est = PanelLinearRegressor().fit(np.column_stack([X, near]), y)
    assert np.isnan(est.coef_[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollinearityWarning)
        est = PanelLinearRegressor().fit(np.column_stack([X, apart]), y)
    ref = sm.OLS(y, sm.add_constant(np.column_stack([X, apart]))).fit()
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-6)


@pytest.mark.parametrize("p", [6, 150])
def test_independent_columns_against_lstsq(p):
    """Kept columns are independent; each dropped one is spanned by the kept ones before it."""
    rng = np.random.default_rng(p)
    X = rng.normal(size=(400, p))
    deps = [(3, [0, 1]), (p - 1, [2]), (p // 2, [p // 2 - 1, 1])]
    for j, src in deps:
        X[:, j] = X[:, src] @ rng.normal(size=len(src))
    X[:, 4] = 0.0
    priority = rng.permutation(p)
    kept = independent_columns(X.T @ X, priority)
    assert np.linalg.matrix_rank(X[:, kept]) == kept.sum() == np.linalg.matrix_rank(X)
    rank = np.argsort(priority)
    for j in np.flatnonzero(~kept):
        before = kept & (rank < rank[j])
        resid = X[:, j] - X[:, before] @ np.linalg.lstsq(X[:, before], X[:, j], rcond=None)[0]
        assert np.linalg.norm(resid) <= 1e-8 * max(1.0, np.linalg.norm(X[:, j]))
    basis = null_space_basis(X.T @ X, priority)
    assert basis.shape[1] == p - kept.sum()
    np.testing.assert_allclose(X @ basis, 0.0, atol=1e-9)


@pytest.mark.parametrize("engine", engines("compiled", "numpy"))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("center", [False, True])
def test_chunked_gram_equals_the_plain_kernels(weighted, center, engine, monkeypatch):
    """The fused-kernel Gram matrix (perf) equals the plain factored one, centred or not.

    A cell-level column with a huge mean (a timestamp) is centred by a copy, a
    modest one in the Gram matrix; both must agree with centring every column.
    """
    import panelglm._ident.collinearity as coll
    from panelglm._engine.plan import make_plan
    from panelglm._model.blocks import DenseBlock
    from panelglm._model.factored import FactoredDesign
    from panelglm._model.terms import build_design, build_model_spec

    monkeypatch.setenv("PANELGLM_NUMPY_PASS", "1" if engine == "numpy" else "0")

    df, dims, names, _ = make_panel((6, 5, 4), seed=9)
    rng = np.random.default_rng(9)
    df["stamp"] = 1.7e9 + rng.uniform(0, 1e5, size=len(df))
    df["shifted"] = 3.0 + rng.normal(size=len(df))
    data = PanelDesign(dims=dims, fixed_effects=["d0"]).fit_transform(
        df[[*dims, *names, "stamp", "shifted"]]
    )
    design, _ = build_design(build_model_spec(data, True, set()), data)
    assert make_plan(design) is not None
    w = rng.uniform(0.5, 2.0, size=design.shape) if weighted else None
    assert coll._gram_engine(design, w).name == engine
    gram, diag = coll.weighted_gram(design, w, center)
    # The reference: the plain kernels on explicitly centred copies.
    w_full = np.ones(design.shape) if w is None else w
    means = design.gradient(w_full) / w_full.sum()
    blocks = [
        DenseBlock(b.axes, b.values - means[sl], b.names)
        if center and i > 0 and isinstance(b, DenseBlock)
        else b
        for i, (b, sl) in enumerate(zip(design.blocks, design.slices(), strict=True))
    ]
    ref = FactoredDesign(shape=design.shape, blocks=blocks).hessian(w_full)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    np.testing.assert_allclose(gram / scale, ref / scale, atol=1e-12)
    np.testing.assert_allclose(diag, np.diag(design.hessian(w_full)), rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_plain_gram_centres_like_the_dense_matrix(weighted):
    """No chunked plan (two-way fixed effects on a 2-D panel): cell-level columns are
    centred in the Gram matrix, a timestamp by a copy; against extended precision."""
    import panelglm._ident.collinearity as coll
    from panelglm._engine.plan import make_plan
    from panelglm._model.blocks import DenseBlock, IndicatorBlock
    from panelglm._model.factored import FactoredDesign

    rng = np.random.default_rng(0)
    shape = (30, 20)
    cell = np.stack([rng.normal(size=shape) + 3, 1.7e9 + rng.uniform(0, 100, size=shape)], -1)
    design = FactoredDesign(
        shape,
        [
            DenseBlock((), np.ones(1), ("1",)),
            DenseBlock((0, 1), cell, ("a", "ts")),
            DenseBlock((0,), rng.normal(size=(30, 2)) + 5, ("b0", "b1")),
            IndicatorBlock((0,), np.arange(30) - 1, tuple(f"f{i}" for i in range(29))),
            IndicatorBlock((1,), np.arange(20) - 1, tuple(f"g{i}" for i in range(19))),
        ],
    )
    assert make_plan(design) is None
    w = rng.uniform(0.5, 2, size=shape) if weighted else None
    gram, diag = coll.weighted_gram(design, w, True)
    X = design.to_dense()
    ww = np.ones(X.shape[0]) if w is None else w.ravel()
    Xc = X.astype(np.longdouble)
    Xc[:, 1:5] -= ((ww @ X) / ww.sum())[1:5].astype(np.longdouble)
    ref = (Xc.T @ (Xc * ww[:, None])).astype(float)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    np.testing.assert_allclose(gram / scale, ref / scale, atol=1e-12)
    np.testing.assert_allclose(diag, np.einsum("ij,ij,i->j", X, X, ww), rtol=1e-12)
