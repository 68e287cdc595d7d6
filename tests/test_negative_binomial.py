"""The negative binomial model (NB2, log link) against statsmodels.

With ``theta`` given: statsmodels' ``GLM(family=NegativeBinomial(alpha=1 /
theta))`` on the dense matrix (scale one; model-based covariance from the
expected information, sandwiches with the observed Hessian as bread). With
``theta=None``: statsmodels' discrete ``NegativeBinomial(loglike_method="nb2")``,
whose maximum likelihood estimates of the coefficients and of ``alpha`` must
agree to 1e-6.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from scipy.optimize import minimize_scalar
from sklearn.pipeline import make_pipeline
from statsmodels.discrete.discrete_model import NegativeBinomial
from statsmodels.tools.sm_exceptions import SpecificationWarning

import panelglm._estimators.theta as theta_mod
from panelglm import PanelDesign, PanelNegativeBinomialRegressor, PanelPoissonRegressor
from panelglm._model.families_gamma_nb import negative_binomial
from panelglm.exceptions import SeparationWarning

SIZES = {1: (80,), 2: (10, 8), 3: (6, 5, 4)}
RTOL = 1e-8


def nb_panel(sizes, seed, theta=1.5):
    df, dims, names, _ = make_panel(sizes, seed=seed, shuffle=False)
    rng = np.random.default_rng(seed + 3)
    eta = 0.8 + df[names].to_numpy() @ rng.uniform(-0.4, 0.4, size=len(names))
    mu = np.exp(eta + df["off"].to_numpy())
    y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    return df, dims, names, y


def dense(df, names):
    return sm.add_constant(df[names].to_numpy(), has_constant="add")


def groups(df, cluster):
    cols = [cluster] if isinstance(cluster, str) else list(cluster)
    return df.groupby(cols, sort=True).ngroup().to_numpy()


def coef_in(est, names):
    return pd.Series(np.r_[est.intercept_, est.coef_], ["Intercept", *est.coef_names_])[
        ["Intercept", *names]
    ].to_numpy()


def cov_in(est, names):
    labels = ["Intercept", *names]
    return est.cov_params_.loc[labels, labels].to_numpy()


def assert_cov_close(ours, ref, rtol=RTOL):
    np.testing.assert_allclose(np.diag(ours), np.diag(ref), rtol=rtol)
    size = np.sqrt(np.abs(np.outer(np.diag(ref), np.diag(ref))))
    np.testing.assert_array_less(np.abs(ours - ref), rtol * size + 1e-300)


def fit_ours(df, dims, y, *, offset, weighted, **params):
    est = PanelNegativeBinomialRegressor(offset="off" if offset else None, **params)
    drop = ["m", "w", *([] if offset else ["off"])]
    data = PanelDesign(dims=dims).fit_transform(df.drop(columns=drop))
    return est.fit(data, y, sample_weight=df["w"].to_numpy() if weighted else None)


CASES = [
    (1, "nonrobust", None, False, False),
    (2, "nonrobust", None, True, True),
    (3, "nonrobust", None, True, False),
    (2, "robust", None, True, True),
    (3, "robust", None, False, False),
    (2, "cluster", "d0", True, True),
    (3, "cluster", ["d0", "d2"], True, False),
]


@pytest.mark.parametrize("D, cov_type, cluster, offset, weighted", CASES)
def test_fixed_theta_matches_statsmodels_glm(D, cov_type, cluster, offset, weighted):
    theta = 2.5
    df, dims, names, y = nb_panel(SIZES[D], seed=D)
    est = fit_ours(
        df,
        dims,
        y,
        offset=offset,
        weighted=weighted,
        theta=theta,
        cov_type=cov_type,
        cluster=cluster,
        small_sample=cov_type != "robust",
    )
    assert est.theta_ == theta
    kw = {"offset": df["off"].to_numpy()} if offset else {}
    if weighted:
        kind = "var_weights" if cov_type == "robust" else "freq_weights"
        kw[kind] = df["w"].to_numpy()
    model = sm.GLM(y, dense(df, names), family=sm.families.NegativeBinomial(alpha=1 / theta), **kw)
    fit = {"tol": 1e-13, "maxiter": 300, "tol_criterion": "params"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecificationWarning)
        if cov_type == "nonrobust":
            ref = model.fit(**fit)
            ref_cov = ref.cov_params()
        elif cov_type == "robust":
            ref = model.fit(cov_type="HC0", **fit)
            ref_cov = ref.cov_params()
        else:
            clusters = cluster if isinstance(cluster, list) else [cluster]
            ref_cov = 0
            # Two-way: inclusion-exclusion of statsmodels' one-way covariances
            # over d0, d2 and their intersection.
            parts = (
                [(clusters[0], 1), (clusters[1], 1), (tuple(clusters), -1)]
                if len(clusters) == 2
                else [(clusters[0], 1)]
            )
            for c, sign in parts:
                ref = model.fit(cov_type="cluster", cov_kwds={"groups": groups(df, c)}, **fit)
                ref_cov = ref_cov + sign * ref.cov_params()
    np.testing.assert_allclose(coef_in(est, names), ref.params, rtol=RTOL, atol=1e-12)
    assert_cov_close(cov_in(est, names), np.asarray(ref_cov), rtol=1e-7)
    assert est.deviance_ == pytest.approx(ref.deviance, rel=1e-9)
    if cov_type != "robust":
        assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    assert est.scale_ == 1.0


def discrete_nb(df, names, y, offset=None):
    model = NegativeBinomial(y, dense(df, names), loglike_method="nb2", offset=offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = model.fit(method="bfgs", maxiter=2000, disp=0).params
        ref = model.fit(start_params=start, method="newton", maxiter=200, tol=1e-14, disp=0)
    return ref


@pytest.mark.parametrize("D, offset", [(1, False), (2, True), (3, True)])
def test_estimated_theta_matches_discrete_negative_binomial(D, offset):
    df, dims, names, y = nb_panel(SIZES[D], seed=10 + D, theta=1.3)
    est = fit_ours(df, dims, y, offset=offset, weighted=False)
    ref = discrete_nb(df, names, y, offset=df["off"].to_numpy() if offset else None)
    alpha = ref.params[-1]
    np.testing.assert_allclose(coef_in(est, names), ref.params[:-1], rtol=1e-6, atol=1e-8)
    assert 1.0 / est.theta_ == pytest.approx(alpha, rel=1e-6)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-9)


def test_estimated_theta_with_integer_weights_equals_repeated_rows():
    df, dims, names, y = nb_panel((9, 6), seed=21, theta=0.8)
    reps = np.random.default_rng(0).integers(1, 4, size=len(df))
    design = PanelDesign(dims=dims, covariates=names)
    est = PanelNegativeBinomialRegressor(offset="off").fit(
        design.fit_transform(df), y, sample_weight=reps.astype(float)
    )
    rep_df = df.loc[df.index.repeat(reps)]
    ref = discrete_nb(rep_df, names, np.repeat(y, reps), offset=rep_df["off"].to_numpy())
    np.testing.assert_allclose(coef_in(est, names), ref.params[:-1], rtol=1e-6, atol=1e-8)
    assert 1.0 / est.theta_ == pytest.approx(ref.params[-1], rel=1e-6)


def test_estimated_theta_then_fixed_is_the_same_fit_and_glm_standard_errors():
    df, dims, _names, y = nb_panel((10, 8), seed=4)
    est = fit_ours(df, dims, y, offset=True, weighted=False)
    fixed = fit_ours(df, dims, y, offset=True, weighted=False, theta=est.theta_)
    np.testing.assert_allclose(est.coef_, fixed.coef_, rtol=1e-8)
    np.testing.assert_allclose(est.bse_, fixed.bse_, rtol=1e-7)
    assert fixed.theta_ == est.theta_


def test_large_theta_approaches_poisson():
    df, dims, _names, y = make_panel((10, 8), seed=2)
    nb = fit_ours(df, dims, y, offset=True, weighted=False, theta=1e9)
    data = PanelDesign(dims=dims).fit_transform(df.drop(columns=["m", "w"]))
    poisson = PanelPoissonRegressor(offset="off").fit(data, y)
    np.testing.assert_allclose(nb.coef_, poisson.coef_, rtol=1e-6)


def test_separated_level_dropped_like_poisson():
    df, dims, _names, y = nb_panel((8, 6), seed=3)
    y = y.copy()
    y[(df["d0"] == df["d0"].iloc[0]).to_numpy()] = 0.0
    X = df[[*dims, "x_1", "off"]]
    with pytest.warns(SeparationWarning):
        est = PanelNegativeBinomialRegressor(
            dims=dims, fixed_effects=["d0"], offset="off", theta=2.0
        ).fit(X, y)
    assert est.separated_rows_.sum() == 6
    keep = ~est.separated_rows_
    sub = df[keep]
    Xd = pd.get_dummies(sub["d0"], drop_first=True, dtype=float)
    Xd.insert(0, "x_1", sub["x_1"].to_numpy())
    ref = sm.GLM(
        y[keep],
        sm.add_constant(Xd.to_numpy(), has_constant="add"),
        family=sm.families.NegativeBinomial(alpha=0.5),
        offset=sub["off"].to_numpy(),
    ).fit(tol=1e-13, tol_criterion="params")
    x1 = pd.Series(est.coef_, est.coef_names_)["x_1"]
    assert x1 == pytest.approx(ref.params[1], rel=1e-8)
    assert est.predict(X)[~keep].max() == 0.0


def test_absorbed_effects_give_the_dense_fit_with_theta_given_or_estimated():
    df, dims, names, y = nb_panel((12, 6), seed=8)
    covs = [n for n in names if n != "x_0"]
    X = df[[*dims, *covs, "off"]]
    for cov_type, extra in [("nonrobust", {}), ("cluster", {"cluster": "d0"})]:
        a, d = (
            PanelNegativeBinomialRegressor(
                dims=dims, theta=1.7, offset="off", cov_type=cov_type, **extra, **kind
            ).fit(X, y)
            for kind in ({"absorb": ["d0"]}, {"fixed_effects": ["d0"]})
        )
        np.testing.assert_allclose(
            pd.Series(a.coef_, a.coef_names_)[covs],
            pd.Series(d.coef_, d.coef_names_)[covs],
            rtol=1e-8,
        )
        np.testing.assert_allclose(a.bse_[covs], d.bse_[covs], rtol=1e-7)
    # theta estimated: the same joint maximum, and theta_, as with indicators.
    a, d = (
        PanelNegativeBinomialRegressor(dims=dims, offset="off", **kind).fit(X, y)
        for kind in ({"absorb": ["d0"]}, {"fixed_effects": ["d0"]})
    )
    assert a.theta_ == pytest.approx(d.theta_, rel=1e-6)
    np.testing.assert_allclose(
        pd.Series(a.coef_, a.coef_names_)[covs],
        pd.Series(d.coef_, d.coef_names_)[covs],
        rtol=1e-6,
    )


def test_pipeline_predict_score_on_held_out_panel():
    df, dims, names, y = nb_panel((8, 5), seed=6)
    pipe = make_pipeline(
        PanelDesign(dims=dims, covariates=names), PanelNegativeBinomialRegressor(offset="off")
    ).fit(df, y)
    theta = pipe[-1].theta_
    df2, _, _, y2 = nb_panel((8, 5), seed=7)
    mu = pipe.predict(df2)
    fam = sm.families.NegativeBinomial(alpha=1 / theta)
    dev = fam.deviance(y2, mu)
    dev0 = fam.deviance(y2, np.full_like(y2, y2.mean()))
    assert pipe.score(df2, y2) == pytest.approx(1 - dev / dev0, rel=1e-10)


def test_family_functions():
    fam = negative_binomial(2.0)
    rng = np.random.default_rng(0)
    y = rng.poisson(3.0, size=30).astype(float)
    eta = rng.normal(size=30)
    g, h = fam.grad_hess(y, eta, 1.0)
    eps = 1e-6
    np.testing.assert_allclose(
        g, (fam.loglik(y, eta + eps, 1.0) - fam.loglik(y, eta - eps, 1.0)) / (2 * eps), rtol=1e-7
    )
    np.testing.assert_allclose(
        h,
        (fam.grad_hess(y, eta + eps, 1.0)[0] - fam.grad_hess(y, eta - eps, 1.0)[0]) / (2 * eps),
        rtol=1e-6,
    )
    mu = np.exp(eta)
    full = fam.loglik(y, eta, 1.0) + fam.loglik_const(y, 1.0)
    ref = sm.families.NegativeBinomial(alpha=0.5).loglike_obs(y, mu)
    np.testing.assert_allclose(full, ref, rtol=1e-12)
    ref_dev = sm.families.NegativeBinomial(alpha=0.5).resid_dev(y, mu) ** 2
    np.testing.assert_allclose(fam.unit_deviance(y, mu, 1.0), ref_dev, rtol=1e-10)
    # No overflow where exp(eta) would.
    assert np.isfinite(fam.loglik(np.array([3.0]), np.array([800.0]), 1.0)).all()
    assert not fam.canonical and fam.sweep_code is None and fam.separation == "lower"


def test_theta_search_tallied_by_count_equals_cell_by_cell(monkeypatch):
    rng = np.random.default_rng(5)
    mu = np.exp(rng.normal(0.5, 0.5, size=500))
    y = rng.negative_binomial(1.7, 1.7 / (1.7 + mu)).astype(float)
    w = rng.uniform(0.5, 2.0, size=500)
    tallied = theta_mod.ml_theta(y, mu, w, 1.0)
    monkeypatch.setattr(theta_mod, "MAX_TALLY", -1)  # every cell evaluated on its own
    assert theta_mod.ml_theta(y, mu, w, 1.0) == pytest.approx(tallied, rel=1e-11)
    # The same root from the likelihood itself (scipy's bounded search on log theta).
    fam = sm.families.NegativeBinomial

    def nll(t):
        return -np.dot(w, fam(alpha=np.exp(-t)).loglike_obs(y, mu))

    ref = minimize_scalar(nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
    assert np.log(tallied) == pytest.approx(ref.x, abs=1e-6)
