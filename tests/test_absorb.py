"""Absorbed fixed effects equal the dense indicator model (panelglm's and statsmodels')."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from absorb_helpers import DIMS, FAMILIES, columns, covariates_for, make_frame
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelPoissonRegressor

# The dense fits' indicators of separated levels, and their two-way cluster
# variances, warn; the absorbed fits' warnings are tested elsewhere.
pytestmark = [
    pytest.mark.filterwarnings("ignore::panelglm.exceptions.SeparationWarning"),
    pytest.mark.filterwarnings("ignore:.*negative variances:RuntimeWarning"),
]

EFFECTS = {
    "one": ["j"],
    "two": ["j", "k"],
    "tuple": [("j", "k")],
    "tuple+one": [("j", "k"), "l"],
    "three": ["j", "k", "l"],
}
COV = {
    "nonrobust": {},
    "robust": {"cov_type": "robust"},
    "cluster-dim": {"cov_type": "cluster", "cluster": "j"},
    "cluster-tuple": {"cov_type": "cluster", "cluster": ("j", "l")},
    "multiway": {"cov_type": "cluster", "cluster": ["j", ("k", "l")]},
}


def fit_pair(family, effects, cov, X, y, w=None, design_kw=None):
    """The absorbed and the dense fixed-effect fit of the same model."""
    cls, aux = FAMILIES[family]
    fits = []
    for kind in ("absorb", "fixed_effects"):
        est = cls(**aux, **cov)
        if design_kw is None:
            est.set_params(dims=DIMS, **{kind: effects})
            fits.append(est.fit(X, y, sample_weight=w))
        else:
            design = PanelDesign(dims=DIMS, **{kind: effects}, **design_kw)
            pipe = make_pipeline(design, est)
            fits.append(pipe.fit(X, y, **{f"{type(est).__name__.lower()}__sample_weight": w}))
    return fits


def final(model):
    return model[-1] if hasattr(model, "steps") else model


def check_equal(absorbed, dense, names, X, y, w=None, se=True):
    a, d = final(absorbed), final(dense)
    # Nuisance parameters: only the covariates are coefficients.
    assert a.coef_names_ == names
    assert a.intercept_ == 0.0
    assert list(a.bse_.index) == names
    assert list(a.cov_params_.index) == names
    assert list(a.summary().index) == names
    np.testing.assert_allclose(a.coef_, pd.Series(d.coef_, d.coef_names_)[names], rtol=1e-8)
    if se:
        assert np.all(np.isfinite(a.bse_))
        np.testing.assert_allclose(a.bse_, d.bse_[names], rtol=1e-8)
        np.testing.assert_allclose(
            a.cov_params_, d.cov_params_.loc[names, names], rtol=1e-7, atol=1e-14
        )
    assert a.loglik_ == pytest.approx(d.loglik_, rel=1e-10)
    assert a.deviance_ == pytest.approx(d.deviance_, rel=1e-8, abs=1e-10)
    assert a.aic_ == pytest.approx(d.aic_, rel=1e-10)
    assert a.bic_ == pytest.approx(d.bic_, rel=1e-10)
    assert a.scale_ == pytest.approx(d.scale_, rel=1e-8)
    assert a.null_deviance_ == pytest.approx(d.null_deviance_, rel=1e-10)
    if hasattr(d, "pseudo_r2_"):
        assert a.pseudo_r2_ == pytest.approx(d.pseudo_r2_, rel=1e-8)
    np.testing.assert_allclose(absorbed.predict(X), dense.predict(X), rtol=1e-8)
    assert absorbed.score(X, y, w) == pytest.approx(dense.score(X, y, w), rel=1e-8, abs=1e-10)


BALANCED = [
    (family, effects, cov)
    for family in FAMILIES
    for effects in EFFECTS
    for cov in COV
    # Every cluster kind for two families; the others with one of each kind.
    if family in ("poisson", "linear") or cov in ("nonrobust", "robust", "multiway")
]


@pytest.mark.parametrize(("family", "effects", "cov"), BALANCED)
def test_balanced_matches_dense_fixed_effects(family, effects, cov):
    fe = EFFECTS[effects]
    # Seeds whose two-way cluster covariance is positive definite for every
    # configuration (with 8 j-clusters, Cameron-Gelbach-Miller's need not be).
    df, y = make_frame(family=family, seed=2 if family == "linear" else 0)
    X = df[columns(family, fe)]
    absorbed, dense = fit_pair(family, fe, COV[cov], X, y)
    check_equal(absorbed, dense, covariates_for(fe), X, y)


UNBALANCED = [
    (family, effects, cov)
    for family in FAMILIES
    for effects, covs in (
        ("two", ("nonrobust", "robust", "cluster-tuple")),
        ("tuple+one", ("nonrobust", "robust", "cluster-tuple")),
        ("one", ("multiway",)),
        ("tuple", ("multiway",)),
    )
    for cov in covs
]


@pytest.mark.parametrize(("family", "effects", "cov"), UNBALANCED)
def test_weighted_unbalanced_matches_dense_fixed_effects(family, effects, cov):
    """Some cells missing (laid out through a pipeline) and sample weights."""
    fe = EFFECTS[effects]
    df, y = make_frame(family=family, seed=3 * len(effects) + len(cov))
    rows = np.random.default_rng(1).uniform(size=len(df)) < 0.75
    df, y = df[rows].reset_index(drop=True), y[rows]
    X = df[columns(family, fe)]
    w = df["w"].to_numpy()
    absorbed, dense = fit_pair(family, fe, COV[cov], X, y, w, design_kw={"balanced": False})
    assert len(df) < 8 * 5 * 4
    check_equal(absorbed, dense, covariates_for(fe), X, y, w)


def test_disconnected_two_way_counts_components():
    """Two effects in two unlinked blocks: one more normalisation, as the dense rank."""
    df, y = make_frame(family="linear", seed=5)
    # j levels 0-3 only with k levels 0-1, the others only with k levels 2-4.
    j_pos = df["j"].rank(method="dense").astype(int) <= 4
    k_pos = df["k"].rank(method="dense").astype(int) <= 2
    keep = (j_pos == k_pos).to_numpy()
    df, y = df[keep].reset_index(drop=True), y[keep]
    X = df[columns("linear", ["j", "k"])]
    with warnings.catch_warnings():
        # The dense path drops the indicator the second block makes redundant.
        warnings.simplefilter("ignore")
        absorbed, dense = fit_pair(
            "linear",
            ["j", "k"],
            {"cov_type": "cluster", "cluster": "l"},
            X,
            y,
            design_kw={"balanced": False},
        )
    check_equal(absorbed, dense, covariates_for(["j", "k"]), X, y)


# --------------------------------------------------------------- statsmodels
def dummy_matrix(df, effects):
    """The explicit indicators: all of the first effect's levels, the others less their first."""
    parts = []
    for r, fe in enumerate(effects):
        key = df[fe[0]] if len(fe) == 1 else df[list(fe)].astype(str).agg("|".join, axis=1)
        parts.append(pd.get_dummies(key, prefix=":".join(fe), drop_first=r > 0, dtype=float))
    return pd.concat(parts, axis=1)


@pytest.mark.parametrize(
    ("effects", "cluster"),
    [((("j",), ("k",)), "j"), ((("j", "k"), ("l",)), "l"), ((("j",), ("k",), ("l",)), "k")],
)
def test_poisson_matches_statsmodels_dummies(effects, cluster):
    df, y = make_frame(family="poisson", seed=11)
    fe = [e[0] if len(e) == 1 else e for e in effects]
    names = covariates_for(fe)
    X = df[columns("poisson", fe)]
    exog = pd.concat([df[names], dummy_matrix(df, effects)], axis=1)
    n, k = exog.shape
    assert np.linalg.matrix_rank(exog.to_numpy()) == k  # no constant: full rank
    model = sm.GLM(y, exog, family=sm.families.Poisson(), offset=df["off"])
    groups = {"groups": pd.factorize(df[cluster])[0]}
    ref = model.fit(tol=1e-14, cov_type="cluster", cov_kwds=groups)

    est = PanelPoissonRegressor(
        dims=DIMS, absorb=fe, offset="off", cov_type="cluster", cluster=cluster
    ).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.params[names], rtol=1e-8)
    np.testing.assert_allclose(est.bse_, ref.bse[names], rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(est.predict(X), ref.fittedvalues, rtol=1e-8)
    # statsmodels' default is the documented G/(G-1) (n-1)/(n-k), k its
    # columns: the covariates and the effects' degrees of freedom.
    g = df[cluster].nunique()
    levels = sum(len(df[list(e)].drop_duplicates()) for e in effects)
    assert k == len(names) + levels - (len(effects) - 1)
    plain = model.fit(tol=1e-14, cov_type="cluster", cov_kwds={**groups, "use_correction": False})
    factor = g / (g - 1) * (n - 1) / (n - k)
    np.testing.assert_allclose(est.bse_**2, factor * plain.bse[names] ** 2, rtol=1e-8)

    nonrobust = PanelPoissonRegressor(dims=DIMS, absorb=fe, offset="off").fit(X, y)
    np.testing.assert_allclose(nonrobust.bse_, model.fit(tol=1e-14).bse[names], rtol=1e-8)
