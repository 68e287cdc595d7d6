"""Elastic net (``l1_ratio``) against glum and scikit-learn on the dense matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel
from glum import GeneralizedLinearRegressor
from scipy.special import expit
from sklearn.linear_model import PoissonRegressor

from panelglm import PanelDesign, PanelLogitRegressor, PanelPoissonRegressor

# glum's IRLS-CD stops on the subgradient norm; 1e-10 is about as far as its
# line search goes on these problems, and puts its coefficients within ~1e-9.
GLUM = {"gradient_tol": 1e-10, "max_iter": 1000, "solver": "irls-cd"}


def glum_fit(family, X, y, alpha, l1_ratio, **fit_kw):
    ref = GeneralizedLinearRegressor(family=family, alpha=alpha, l1_ratio=l1_ratio, **GLUM)
    return ref.fit(X, y, **fit_kw)


def ours(est, names):
    return pd.Series(est.coef_, index=est.coef_names_)[names].to_numpy()


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_poisson_matches_glum_with_offset_and_weights(l1_ratio):
    df, dims, names, y = make_panel((6, 5, 4), seed=21, scale=0.5)
    w = df["w"].to_numpy()
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    est = PanelPoissonRegressor(alpha=0.02, l1_ratio=l1_ratio, offset="off")
    est.fit(data, y, sample_weight=w)
    ref = glum_fit(
        "poisson", df[names].to_numpy(), y, 0.02, l1_ratio, sample_weight=w, offset=df["off"]
    )
    np.testing.assert_allclose(ours(est, names), ref.coef_, atol=1e-6)
    assert est.intercept_ == pytest.approx(ref.intercept_, abs=1e-6)
    if l1_ratio == 1.0:
        assert 0 < np.sum(ref.coef_ == 0) < len(names)  # the lasso removes some, not all
    np.testing.assert_array_equal(ours(est, names) == 0.0, ref.coef_ == 0.0)


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_logit_matches_glum(l1_ratio):
    df, dims, names, y = make_panel((8, 6, 4), seed=22, family="binomial", scale=0.8)
    y = np.minimum(y, 1.0)
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    est = PanelLogitRegressor(alpha=0.01, l1_ratio=l1_ratio).fit(data, y)
    ref = glum_fit("binomial", df[names].to_numpy(), y, 0.01, l1_ratio)
    np.testing.assert_allclose(ours(est, names), ref.coef_, atol=1e-6)
    assert est.intercept_ == pytest.approx(ref.intercept_, abs=1e-6)
    np.testing.assert_array_equal(ours(est, names) == 0.0, ref.coef_ == 0.0)


def test_penalized_fixed_effects_match_glum():
    """Fixed effects (indicator blocks) are penalized like any coefficient."""
    df, dims, names, y = make_panel((25, 6, 3), seed=23, scale=0.5)
    cols = ["x_1", "x_2", "x_12"]
    data = PanelDesign(dims=dims, covariates=cols, fixed_effects=["d0"]).fit_transform(df)
    est = PanelPoissonRegressor(alpha=0.004, l1_ratio=0.9).fit(data, y)
    dummies = pd.get_dummies(df["d0"], drop_first=True, dtype=float)
    X = np.hstack([df[cols].to_numpy(), dummies.to_numpy()])
    ref = glum_fit("poisson", X, y, 0.004, 0.9)
    names = cols + [f"d0[{c}]" for c in dummies.columns]
    np.testing.assert_allclose(ours(est, names), ref.coef_, atol=1e-6)
    assert 0 < np.sum(ours(est, names) == 0.0) < len(names)
    np.testing.assert_array_equal(ours(est, names) == 0.0, ref.coef_ == 0.0)


def test_l1_ratio_zero_is_the_ridge_fit_and_small_l1_approaches_it():
    df, dims, names, y = make_panel((6, 5, 4), seed=24)
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    ridge = PanelPoissonRegressor(alpha=0.05).fit(data, y)
    zero = PanelPoissonRegressor(alpha=0.05, l1_ratio=0.0).fit(data, y)
    np.testing.assert_array_equal(zero.coef_, ridge.coef_)
    ref = PoissonRegressor(alpha=0.05, tol=1e-12, max_iter=1000, solver="newton-cholesky")
    ref.fit(df[names].to_numpy(), y)
    np.testing.assert_allclose(ours(zero, names), ref.coef_, rtol=1e-7, atol=1e-9)
    # The proximal-Newton path with a vanishing L1 part lands on the same fit.
    tiny = PanelPoissonRegressor(alpha=0.05, l1_ratio=1e-9).fit(data, y)
    np.testing.assert_allclose(tiny.coef_, ridge.coef_, atol=1e-8)


def test_lasso_optimality_conditions_and_alpha_max():
    """KKT conditions on the dense gradient, and the closed-form alpha_max."""
    df, dims, names, y = make_panel((7, 5, 4), seed=25)
    X = df[names].to_numpy()
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    n = len(y)
    # Above alpha_max = max_j |X_j' (y - mean(y))| / n every coefficient is zero.
    alpha_max = np.max(np.abs(X.T @ (y - y.mean()))) / n
    top = PanelPoissonRegressor(alpha=alpha_max * 1.001, l1_ratio=1.0).fit(data, y)
    assert np.all(top.coef_ == 0.0)
    assert top.intercept_ == pytest.approx(np.log(y.mean()), rel=1e-12)
    below = PanelPoissonRegressor(alpha=alpha_max * 0.95, l1_ratio=1.0).fit(data, y)
    assert np.sum(below.coef_ != 0.0) == 1
    # In between: zero coefficients have |gradient| <= alpha * l1_ratio, the
    # others gradient = -alpha * l1_ratio * sign(coef).
    alpha, l1_ratio = alpha_max / 4, 0.7
    est = PanelPoissonRegressor(alpha=alpha, l1_ratio=l1_ratio).fit(data, y)
    b = ours(est, names)
    mu = np.exp(est.intercept_ + X @ b)
    grad = X.T @ (mu - y) / n + alpha * (1 - l1_ratio) * b
    assert np.sum(mu - y) == pytest.approx(0.0, abs=1e-8 * n)  # unpenalized intercept
    zero = b == 0.0
    assert zero.any() and not zero.all()
    assert np.all(np.abs(grad[zero]) <= alpha * l1_ratio + 1e-10)
    np.testing.assert_allclose(grad[~zero], -alpha * l1_ratio * np.sign(b[~zero]), atol=1e-10)


def test_lasso_on_a_cross_section_drops_the_noise_columns():
    rng = np.random.default_rng(26)
    X = rng.normal(size=(400, 6))
    y = rng.binomial(1, expit(0.3 + X[:, :2] @ [1.0, -0.8]))
    est = PanelLogitRegressor(alpha=0.03, l1_ratio=1.0).fit(X, y)
    assert np.all(est.coef_[:2] != 0.0)
    ref = glum_fit("binomial", X, y, 0.03, 1.0)
    np.testing.assert_allclose(est.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_array_equal(est.coef_ == 0.0, ref.coef_ == 0.0)
