"""``score`` is D^2 against a constant, as scikit-learn's metrics compute it."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from conftest import make_panel
from sklearn.metrics import d2_tweedie_score, mean_poisson_deviance, r2_score

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)

SIZES = (6, 5, 4)


def fit_and_data(est, family, seed, keep):
    df, dims, names, y = make_panel(SIZES, seed=seed, family=family)
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df[[*dims, *names, *keep]])
    return est.fit(data, y), data, y, df


def test_poisson_score_is_d2_tweedie_of_predictions_with_offset_and_weights():
    est, data, y, df = fit_and_data(PanelPoissonRegressor(offset="off"), "poisson", 1, ["off"])
    w = df["w"].to_numpy()
    ref = d2_tweedie_score(y, est.predict(data), sample_weight=w, power=1)
    assert est.score(data, y, sample_weight=w) == pytest.approx(ref, rel=1e-10)


def test_linear_score_is_r2():
    est, data, y, df = fit_and_data(PanelLinearRegressor(), "gaussian", 2, [])
    w = df["w"].to_numpy()
    ref = r2_score(y, est.predict(data), sample_weight=w)
    assert est.score(data, y, sample_weight=w) == pytest.approx(ref, rel=1e-10)


def test_logit_score_with_trials_against_constant_probability():
    est, data, y, df = fit_and_data(PanelLogitRegressor(trials="m"), "binomial", 3, ["m"])
    m, w = df["m"].to_numpy(), df["w"].to_numpy()
    binomial = sm.families.Binomial()

    def deviance(p):
        return binomial.deviance(y / m, p, var_weights=m * w)

    p0 = np.sum(w * y) / np.sum(w * m)
    ref = 1 - deviance(est.predict(data) / m) / deviance(np.full(len(y), p0))
    assert est.score(data, y, sample_weight=w) == pytest.approx(ref, rel=1e-10)


def test_exponential_score_against_constant_hazard():
    df, dims, names, _ = make_panel(SIZES, seed=4)
    rng = np.random.default_rng(4)
    T = rng.exponential(size=len(df)) + 0.1
    df["event"] = (rng.uniform(size=len(df)) < 0.7).astype(float)
    data = PanelDesign(dims=dims).fit_transform(df[[*dims, *names, "event"]])
    est = PanelExponentialRegressor(event="event").fit(data, T)
    d = df["event"].to_numpy()
    expected_events = T / est.predict(data)  # hazard * T
    constant = T * d.sum() / T.sum()
    ref = 1 - mean_poisson_deviance(d, expected_events) / mean_poisson_deviance(d, constant)
    assert est.score(data, T) == pytest.approx(ref, rel=1e-10)


def test_scores_with_and_without_offset_rank_by_deviance():
    """The reference does not depend on the offset, so D^2 orders models by deviance.

    With the offset in the reference (statsmodels' null deviance) the model
    with the true offset scores lower here, although it fits far better.
    """
    df, dims, names, _ = make_panel(SIZES, seed=5)
    rng = np.random.default_rng(5)
    x = df["x_0"].to_numpy()
    df["log_exposure"] = 0.8 * x + 0.3 * rng.normal(size=len(df))  # correlated with x_0
    y = rng.poisson(np.exp(-1.0 + 0.1 * x + df["log_exposure"])).astype(float)
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    with_off = PanelPoissonRegressor(offset="log_exposure").fit(data, y)
    without = PanelPoissonRegressor().fit(data, y)
    dev_with = mean_poisson_deviance(y, with_off.predict(data))
    dev_without = mean_poisson_deviance(y, without.predict(data))
    assert dev_with < dev_without
    ratio = (1 - with_off.score(data, y)) / (1 - without.score(data, y))
    assert ratio == pytest.approx(dev_with / dev_without, rel=1e-10)
    # What an offset-aware reference would have said instead:
    null_with = np.exp(df["log_exposure"]) * y.sum() / np.exp(df["log_exposure"]).sum()
    old_with = 1 - dev_with / mean_poisson_deviance(y, null_with)
    old_without = 1 - dev_without / mean_poisson_deviance(y, np.full(len(y), y.mean()))
    assert old_with < old_without
