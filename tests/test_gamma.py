"""The gamma model (log link) against statsmodels' GLM on the dense matrix of the long frame.

statsmodels' conventions, matched here: the scale is Pearson's chi-square
over ``n - k`` (``scale``), the model-based covariance is the scale times the
inverse *expected* information, and the robust and cluster sandwiches use the
*observed* Hessian as their bread (``GLM.hessian``'s default after IRLS). For
the log link the two informations differ (``X' W X`` with ``W = w`` against
``W = w y / mu``), so both halves are checked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from sklearn.pipeline import make_pipeline
from statsmodels.tools.sm_exceptions import SpecificationWarning

from panelglm import PanelDesign, PanelGammaRegressor
from panelglm._model.families_gamma_nb import GAMMA

SIZES = {1: (60,), 2: (9, 7), 3: (6, 5, 4)}
RTOL = 1e-8


def gamma_panel(sizes, seed, shape=2.0):
    """make_panel's frame with a gamma response of the same linear predictor's kind."""
    df, dims, names, _ = make_panel(sizes, seed=seed, shuffle=False)
    rng = np.random.default_rng(seed + 7)
    eta = 0.5 + df[names].to_numpy() @ rng.uniform(-0.4, 0.4, size=len(names))
    mu = np.exp(eta + df["off"].to_numpy())
    y = rng.gamma(shape, mu / shape)
    return df, dims, names, y


def dense(df, names):
    return sm.add_constant(df[names].to_numpy(), has_constant="add")


def sm_model(df, names, y, *, offset=False, weights=None):
    kw = {}
    if offset:
        kw["offset"] = df["off"].to_numpy()
    if weights is not None:
        kw[weights] = df["w"].to_numpy()
    fam = sm.families.Gamma(link=sm.families.links.Log())
    return sm.GLM(y, dense(df, names), family=fam, **kw)


def groups(df, cluster):
    cols = [cluster] if isinstance(cluster, str) else list(cluster)
    return df.groupby(cols, sort=True).ngroup().to_numpy()


def sm_fit(df, names, y, cov_type, cluster, *, offset, weighted):
    # Frequency weights for the likelihood, the scale and the model-based
    # covariance; the HC meat of a cell's score w g x is statsmodels' under
    # var_weights (see test_inference's module docstring).
    kind = "var_weights" if cov_type == "robust" else "freq_weights"
    model = sm_model(df, names, y, offset=offset, weights=kind if weighted else None)
    fit = {"tol": 1e-13, "maxiter": 300, "tol_criterion": "params"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecificationWarning)
        if cov_type == "nonrobust":
            return model.fit(**fit)
        if cov_type == "robust":
            return model.fit(cov_type="HC0", **fit)
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups(df, cluster)}, **fit)


def ours(df, dims, y, *, offset, weighted, **params):
    est = PanelGammaRegressor(offset="off" if offset else None, **params)
    drop = [c for c in ("m", "w", *([] if offset else ["off"]))]
    data = PanelDesign(dims=dims).fit_transform(df.drop(columns=drop))
    return est.fit(data, y, sample_weight=df["w"].to_numpy() if weighted else None)


def in_sm_order(est, names):
    labels = ["Intercept", *names]
    coef = pd.Series(np.r_[est.intercept_, est.coef_], ["Intercept", *est.coef_names_])
    return coef[labels].to_numpy(), est.cov_params_.loc[labels, labels].to_numpy()


def assert_cov_close(ours_cov, ref, rtol=RTOL):
    np.testing.assert_allclose(np.diag(ours_cov), np.diag(ref), rtol=rtol)
    size = np.sqrt(np.abs(np.outer(np.diag(ref), np.diag(ref))))
    np.testing.assert_array_less(np.abs(ours_cov - ref), rtol * size + 1e-300)


CASES = [
    (1, "nonrobust", None, False, False),
    (2, "nonrobust", None, True, True),
    (3, "nonrobust", None, True, False),
    (2, "robust", None, True, True),
    (3, "robust", None, False, False),
    (2, "cluster", "d0", True, True),
    (3, "cluster", ("d0", "d1"), True, False),
]


@pytest.mark.parametrize("D, cov_type, cluster, offset, weighted", CASES)
def test_matches_statsmodels(D, cov_type, cluster, offset, weighted):
    df, dims, names, y = gamma_panel(SIZES[D], seed=D)
    small = cov_type != "robust"  # statsmodels' HC0; its clusters' G/(G-1) (n-1)/(n-k)
    est = ours(
        df,
        dims,
        y,
        offset=offset,
        weighted=weighted,
        cov_type=cov_type,
        cluster=cluster,
        small_sample=small,
    )
    ref = sm_fit(df, names, y, cov_type, cluster, offset=offset, weighted=weighted)
    coef, cov = in_sm_order(est, names)
    np.testing.assert_allclose(coef, ref.params, rtol=RTOL, atol=1e-12)
    assert_cov_close(cov, ref.cov_params())
    if cov_type != "robust":  # robust used var_weights, whose scale counts rows, not weights
        assert est.scale_ == pytest.approx(ref.scale, rel=RTOL)
        assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    assert est.deviance_ == pytest.approx(ref.deviance, rel=1e-9)
    assert est.null_deviance_ == pytest.approx(ref.null_deviance, rel=1e-8)


def test_scale_is_pearson_not_the_deviance_formula():
    """The gamma family routes to Pearson's scale (statsmodels'), not the Gaussian's."""
    df, dims, names, y = gamma_panel(SIZES[2], seed=11, shape=0.7)
    est = ours(df, dims, y, offset=False, weighted=False)
    ref = sm_model(df, names, y).fit(tol=1e-13, tol_criterion="params")
    n, k = len(y), len(names) + 1
    pearson = np.sum((y - ref.mu) ** 2 / ref.mu**2) / (n - k)
    assert est.scale_ == pytest.approx(pearson, rel=1e-9)
    assert est.scale_ == pytest.approx(ref.scale, rel=1e-9)
    assert abs(est.scale_ - est.deviance_ / (n - k)) > 0.05 * est.scale_
    # The model-based covariance is that scale times the inverse expected
    # information X'X (W = 1 for the log link), not the observed one.
    X = dense(df, names)
    _, cov = in_sm_order(est, names)
    np.testing.assert_allclose(cov, pearson * np.linalg.inv(X.T @ X), rtol=1e-8)


def test_unbalanced_panel_and_pipeline():
    df, dims, names, y = gamma_panel((7, 6, 3), seed=5)
    rows = np.random.default_rng(0).uniform(size=len(df)) < 0.7
    df, y = df[rows].reset_index(drop=True), y[rows]
    pipe = make_pipeline(
        PanelDesign(dims=dims, covariates=names, balanced=False),
        PanelGammaRegressor(offset="off", cov_type="cluster", cluster="d1", small_sample=False),
    )
    pipe.fit(df, y)
    est = pipe[-1]
    kwds = {"groups": groups(df, "d1"), "use_correction": False}
    ref = sm_model(df, names, y, offset=True).fit(
        tol=1e-13, tol_criterion="params", cov_type="cluster", cov_kwds=kwds
    )
    coef, cov = in_sm_order(est, names)
    np.testing.assert_allclose(coef, ref.params, rtol=RTOL, atol=1e-12)
    assert_cov_close(cov, ref.cov_params())
    np.testing.assert_allclose(pipe.predict(df), ref.fittedvalues, rtol=1e-8)


def test_score_on_held_out_panel_is_d2_of_gamma_deviance():
    df, dims, names, y = gamma_panel((8, 5), seed=3)
    design = PanelDesign(dims=dims, covariates=names)
    est = PanelGammaRegressor(offset="off").fit(design.fit_transform(df), y)
    df2, _, _, y2 = gamma_panel((8, 5), seed=4)
    data2 = design.transform(df2)
    mu = est.predict(data2)
    fam = sm.families.Gamma(link=sm.families.links.Log())
    dev = fam.deviance(y2, mu)
    dev0 = fam.deviance(y2, np.full_like(y2, y2.mean()))  # constant model without the offset
    assert est.score(data2, y2) == pytest.approx(1 - dev / dev0, rel=1e-10)


def test_absorbed_effects_equal_dense_fixed_effects():
    df, dims, names, y = gamma_panel((12, 6), seed=9)
    covs = [n for n in names if n != "x_0"]  # x_0 varies along d0 only: the effect explains it
    X = df[[*dims, *covs, "off"]]
    for cov_type, extra in [("nonrobust", {}), ("cluster", {"cluster": "d0"})]:
        fits = [
            PanelGammaRegressor(dims=dims, offset="off", cov_type=cov_type, **extra, **kind).fit(
                X, y
            )
            for kind in ({"absorb": ["d0"]}, {"fixed_effects": ["d0"]})
        ]
        absorbed, dense_fit = fits
        a = pd.Series(absorbed.coef_, absorbed.coef_names_)[covs]
        d = pd.Series(dense_fit.coef_, dense_fit.coef_names_)[covs]
        np.testing.assert_allclose(a, d, rtol=1e-8)
        np.testing.assert_allclose(absorbed.bse_[covs], dense_fit.bse_[covs], rtol=1e-7)
        assert absorbed.scale_ == pytest.approx(dense_fit.scale_, rel=1e-9)
        assert absorbed.loglik_ == pytest.approx(dense_fit.loglik_, rel=1e-10)


def test_family_is_not_canonical_and_has_no_compiled_form():
    y = np.array([0.5, 2.0, 3.0])
    eta = np.array([0.1, 0.4, 1.2])
    _g, h = GAMMA.grad_hess(y, eta, 1.0)
    np.testing.assert_allclose(-h, y * np.exp(-eta))  # observed: depends on y
    assert not GAMMA.canonical
    np.testing.assert_allclose(GAMMA.expected().grad_hess(y, eta, 1.0)[1], -1.0)
    assert GAMMA.sweep_code is None


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_y_is_refused_naming_the_row(bad):
    df, dims, names, y = gamma_panel((5, 4), seed=1)
    y = y.copy()
    y[7] = bad
    with pytest.raises(ValueError, match="positive for the gamma family"):
        PanelGammaRegressor(dims=dims).fit(df[[*dims, *names]], y)


def test_scale_and_likelihood_survive_responses_near_the_underflow():
    """Gamma's fit does not depend on the units of y; its Pearson scale must not
    either, though (y - mu)^2 and mu^2 underflow near 1e-300 (it was NaN)."""
    rng = np.random.default_rng(11)
    n = 300
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = rng.gamma(2.0, np.exp(0.5 + 0.3 * X["a"]) / 2.0)
    w = rng.integers(0, 3, n).astype(float)
    ref = PanelGammaRegressor().fit(X, y, sample_weight=w)
    tiny = PanelGammaRegressor().fit(X, y * 1e-300, sample_weight=w)
    np.testing.assert_allclose(tiny.coef_, ref.coef_, rtol=1e-10)
    assert tiny.scale_ == pytest.approx(ref.scale_, rel=1e-10)
    np.testing.assert_allclose(tiny.bse_, ref.bse_, rtol=1e-8)
    assert np.isfinite(tiny.loglik_)
