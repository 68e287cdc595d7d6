"""Pipelines, search and cross-validation on long frames, with held-out panels."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit
from sklearn.base import clone
from sklearn.metrics import d2_tweedie_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelLogitRegressor, PanelPoissonRegressor
from panelglm.model_selection import PanelKFold, PanelTimeSeriesSplit

DIMS = ["customer", "product", "week"]
COVARIATES = ["income", "price", "loyalty"]
TRUTH = {"Intercept": -0.5, "income": 0.3, "price": -0.4, "loyalty": 0.2}


def simulate(n_customers=60, n_products=5, n_weeks=8, seed=0):
    """Purchases on a customer x product x week panel, rows shuffled.

    The expected count is ``exposure * exp(X @ coef)`` with ``log_exposure``
    varying by customer and week; ``visits`` (by customer and week) is the
    number of trials of a binary-outcome version of the same panel.
    """
    rng = np.random.default_rng(seed)
    c, p, w = (a.ravel() for a in np.indices((n_customers, n_products, n_weeks)))
    income = rng.normal(size=n_customers)
    price = rng.normal(size=(n_products, n_weeks))
    loyalty = rng.normal(size=(n_customers, n_products))
    log_exposure = 0.5 * income[:, None] + 0.6 * rng.normal(size=(n_customers, n_weeks))
    visits = rng.integers(1, 6, size=(n_customers, n_weeks))
    df = pd.DataFrame(
        {
            "customer": [f"c{i:03d}" for i in c],
            "product": [f"p{i}" for i in p],
            "week": w + 1,
            "income": income[c],
            "price": price[p, w],
            "loyalty": loyalty[c, p],
            "log_exposure": log_exposure[c, w],
            "visits": visits[c, w].astype(float),
        }
    )
    eta = TRUTH["Intercept"] + df[COVARIATES].to_numpy() @ [TRUTH[k] for k in COVARIATES]
    purchases = rng.poisson(np.exp(eta + df["log_exposure"].to_numpy())).astype(float)
    bought = rng.binomial(df["visits"].to_numpy().astype(int), expit(eta)).astype(float)
    order = rng.permutation(len(df))
    return df.iloc[order].reset_index(drop=True), purchases[order], bought[order]


@pytest.fixture(scope="module")
def panel():
    df, purchases, bought = simulate()
    held_out = df["customer"] >= "c048"  # the last 12 customers never enter a fit
    return df, purchases, bought, held_out.to_numpy()


def poisson_pipe(**kw):
    return make_pipeline(
        PanelDesign(dims=DIMS, covariates=COVARIATES), PanelPoissonRegressor(**kw)
    )


def dense_mean(est, df, offset=None):
    """The model's mean computed straight from the long frame, rows in its order."""
    eta = est.intercept_ + df[est.coef_names_].to_numpy() @ est.coef_
    return np.exp(eta if offset is None else eta + df[offset].to_numpy())


def test_grid_search_over_alpha_and_offset_picks_the_true_offset(panel):
    df, y, _, held_out = panel
    train, test = df[~held_out], df[held_out]
    search = GridSearchCV(
        poisson_pipe(),
        {
            "panelpoissonregressor__alpha": [0.0, 1e-3, 1e-1],
            "panelpoissonregressor__offset": [None, "log_exposure"],
        },
        cv=PanelKFold("customer", n_splits=4, shuffle=True, random_state=0),
    ).fit(train, y[~held_out])
    assert search.best_params_["panelpoissonregressor__offset"] == "log_exposure"
    res = pd.DataFrame(search.cv_results_["params"]).assign(
        score=search.cv_results_["mean_test_score"]
    )
    res["offset"] = res["panelpoissonregressor__offset"].fillna("none")
    by_alpha = res.pivot(index="panelpoissonregressor__alpha", columns="offset", values="score")
    assert (by_alpha["log_exposure"] > by_alpha["none"]).all()

    # Held-out customers: predict and score use *their* exposures.
    best = search.best_estimator_
    est = best[-1]
    mu = dense_mean(est, test, offset="log_exposure")
    np.testing.assert_allclose(best.predict(test), mu, rtol=1e-12)
    score = best.score(test, y[held_out])
    assert score == pytest.approx(d2_tweedie_score(y[held_out], mu, power=1), rel=1e-10)
    ignoring_offset = d2_tweedie_score(y[held_out], dense_mean(est, test), power=1)
    assert score - ignoring_offset > 0.1


def test_cross_val_score_matches_statsmodels_fold_by_fold(panel):
    df, y, _, _ = panel
    cv = PanelKFold("customer", n_splits=3)
    ours = cross_val_score(poisson_pipe(offset="log_exposure"), df, y, cv=cv)
    ref = []
    for train, test in cv.split(df):
        X = sm.add_constant(df[COVARIATES].to_numpy())
        off = df["log_exposure"].to_numpy()
        fit = sm.GLM(y[train], X[train], family=sm.families.Poisson(), offset=off[train])
        params = fit.fit(tol=1e-13).params
        ref.append(d2_tweedie_score(y[test], np.exp(X[test] @ params + off[test]), power=1))
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


def test_pickled_pipeline_predicts_identically_and_clones(panel):
    df, y, _, held_out = panel
    pipe = poisson_pipe(offset="log_exposure", alpha=0.01).fit(df[~held_out], y[~held_out])
    test = df[held_out].sample(frac=1.0, random_state=3)  # another row order
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(test), pipe.predict(test))
    twin = clone(pipe)
    assert twin.get_params()["panelpoissonregressor__offset"] == "log_exposure"
    assert not hasattr(twin[-1], "coef_")
    twin.set_params(panelpoissonregressor__alpha=0.5, paneldesign__fixed_effects=["product"])
    assert twin[-1].alpha == 0.5 and twin[0].fixed_effects == ["product"]
    assert pipe[-1].alpha == 0.01 and pipe[0].fixed_effects is None


def test_logit_trials_of_held_out_panel_reach_predict_and_score(panel):
    df, _, bought, held_out = panel
    pipe = make_pipeline(
        PanelDesign(dims=DIMS, covariates=COVARIATES), PanelLogitRegressor(trials="visits")
    ).fit(df[~held_out], bought[~held_out])
    test, y = df[held_out], bought[held_out]
    est = pipe[-1]
    p = expit(est.intercept_ + test[COVARIATES].to_numpy() @ est.coef_)
    m = test["visits"].to_numpy()
    np.testing.assert_allclose(pipe.predict(test), m * p, rtol=1e-12)
    binomial = sm.families.Binomial()
    p0 = y.sum() / m.sum()
    ref = 1 - binomial.deviance(y / m, p, var_weights=m) / binomial.deviance(
        y / m, np.full(len(y), p0), var_weights=m
    )
    assert pipe.score(test, y) == pytest.approx(ref, rel=1e-10)


@pytest.mark.filterwarnings("ignore::panelglm.exceptions.SeparationWarning")
def test_time_series_cv_and_unseen_levels(panel):
    df, y, _, _ = panel
    cv = PanelTimeSeriesSplit("week", n_splits=3)
    # Without a week effect the model predicts later weeks from their covariates.
    scores = cross_val_score(poisson_pipe(offset="log_exposure"), df, y, cv=cv)
    assert np.all(np.isfinite(scores)) and np.all(scores > 0)
    # A customer effect is fine (every customer is seen in every period)...
    with_customer = make_pipeline(
        PanelDesign(dims=DIMS, covariates=["price"], fixed_effects=["customer"]),
        PanelPoissonRegressor(offset="log_exposure"),
    )
    # ... though a customer whose training visits are all 0 is separated: its
    # maximum likelihood mean is 0, so a later visit makes that fold's D^2 -inf.
    scores = cross_val_score(with_customer, df, y, cv=cv, error_score="raise")
    assert not np.any(np.isnan(scores)) and np.all(scores[np.isfinite(scores)] > 0)
    # ...a week effect cannot be extrapolated to weeks not seen in training.
    with_week = make_pipeline(
        PanelDesign(dims=DIMS, covariates=COVARIATES, fixed_effects=["week"]),
        PanelPoissonRegressor(offset="log_exposure"),
    )
    with pytest.raises(ValueError, match=r"Level\(s\) \[3, 4\] of dimension 'week'"):
        cross_val_score(with_week, df, y, cv=cv, error_score="raise")
