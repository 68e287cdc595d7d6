"""Absorbed fixed effects: fixef_, separated and unseen levels, collinearity, ridge, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from absorb_helpers import DIMS, columns, covariates_for, make_frame
from scipy.special import expit
from sklearn.pipeline import make_pipeline

from panelglm import (
    PanelDesign,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import CollinearityWarning, SeparationWarning


def frame(seed, **kw):
    """A Poisson panel with counts high enough that no level is all zero."""
    return make_frame(family="poisson", seed=seed, level=3.0, effects_scale=0.3, **kw)


def poisson_fit(df, y, absorb, **kw):
    X = df[columns("poisson", absorb)]
    return PanelPoissonRegressor(dims=DIMS, absorb=absorb, offset="off", **kw).fit(X, y), X


def effects_sum(est, df, absorb):
    """Each row's absorbed effects read from fixef_ by its levels."""
    total = np.zeros(len(df))
    for fe in absorb:
        fe = fe if isinstance(fe, tuple) else (fe,)
        series = est.fixef_[":".join(fe)]
        key = df[fe[0]] if len(fe) == 1 else pd.MultiIndex.from_frame(df[list(fe)])
        total += series.reindex(key).to_numpy()
    return total


# ------------------------------------------------------------------ fixef_
@pytest.mark.parametrize("absorb", [["j", "k"], [("j", "k"), "l"], ["j", "k", "l"]])
def test_fixef_reconstructs_predictions(absorb):
    df, y = frame(21)
    est, X = poisson_fit(df, y, absorb)
    names = covariates_for(absorb)
    assert est.intercept_ == 0.0
    assert set(est.fixef_) == {fe if isinstance(fe, str) else ":".join(fe) for fe in absorb}
    # The first effect carries the level; every other's first level is exactly 0.
    for name in list(est.fixef_)[1:]:
        assert est.fixef_[name].iloc[0] == 0.0
    first = est.fixef_[next(iter(est.fixef_))]
    assert np.all(first != 0)
    eta = df[names].to_numpy() @ est.coef_ + df["off"].to_numpy() + effects_sum(est, df, absorb)
    np.testing.assert_allclose(est.predict(X), np.exp(eta), rtol=1e-10)
    # Every level of every effect, in the levels' order.
    for fe in absorb:
        fe = fe if isinstance(fe, tuple) else (fe,)
        series = est.fixef_[":".join(fe)]
        assert series.index.names == list(fe)
        assert len(series) == len(df[list(fe)].drop_duplicates())
        assert np.all(np.isfinite(series))


def test_tuple_effect_is_a_multiindex_and_differs_from_its_parts():
    df, y = frame(22)
    est, _ = poisson_fit(df, y, [("j", "k")])
    series = est.fixef_["j:k"]
    assert isinstance(series.index, pd.MultiIndex)
    assert list(series.index.names) == ["j", "k"]
    assert series.name == "j:k"
    assert len(series) == 8 * 5
    # The interaction is not additive: no j effect plus k effect reproduces it.
    grid = series.unstack("k").to_numpy()
    resid = grid - grid.mean(1, keepdims=True) - grid.mean(0) + grid.mean()
    assert np.abs(resid).max() > 0.1


def test_separated_level_is_minus_inf_and_predicts_zero():
    df, y = frame(23)
    level = sorted(df["j"].unique())[2]
    at = (df["j"] == level).to_numpy()
    y = np.where(at, 0.0, y)
    with pytest.warns(SeparationWarning, match=r"1 of 'j'"):
        est, X = poisson_fit(df, y, ["j", "k"])
    assert est.fixef_["j"][level] == -np.inf
    assert np.all(np.isfinite(est.fixef_["j"].drop(level)))
    np.testing.assert_array_equal(est.separated_rows_, at)
    pred = est.predict(X)
    assert np.all(pred[at] == 0.0)
    assert np.all(pred[~at] > 0.0)
    # The rest is the fit without that level's rows (a balanced panel still).
    ref, _ = poisson_fit(df[~at].reset_index(drop=True), y[~at], ["j", "k"])
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-9)
    assert est.loglik_ == pytest.approx(ref.loglik_, rel=1e-10)
    # A separated level counts nothing in the score (D^2 on the kept rows is the same
    # up to the reference model, which sees every row).
    assert np.isfinite(est.score(X, y))


def test_logit_level_at_all_trials_is_plus_inf():
    df, y = make_frame(family="logit", seed=24)
    level = sorted(df["k"].unique())[1]
    at = (df["k"] == level).to_numpy()
    y = np.where(at, df["m"].to_numpy(), y)
    X = df[columns("logit", ["j", "k"])]
    with pytest.warns(SeparationWarning):
        est = PanelLogitRegressor(dims=DIMS, absorb=["j", "k"], trials="m").fit(X, y)
    assert est.fixef_["k"][level] == np.inf
    np.testing.assert_array_equal(est.predict(X)[at], df["m"].to_numpy()[at])


def test_unseen_level_raises_naming_it():
    df, y = frame(25)
    est, X = poisson_fit(df, y, ["j", ("k", "l")])
    new = X.copy()
    new.loc[3, "j"] = "j_new"
    with pytest.raises(ValueError, match=r"j_new.*'j'"):
        est.predict(new)
    new = X.copy()
    new.loc[5, "l"] = "l_new"
    with pytest.raises(ValueError, match=r"l_new.*'k:l'"):
        est.predict(new)


def test_held_out_cells_of_seen_levels_predict_exactly():
    df, y = frame(26)
    train = np.random.default_rng(2).uniform(size=len(df)) < 0.7
    absorb = [("j", "k"), "l"]
    X = df[columns("poisson", absorb)]
    pipe = make_pipeline(
        PanelDesign(dims=DIMS, absorb=absorb, balanced=False),
        PanelPoissonRegressor(offset="off"),
    ).fit(X[train], y[train])
    est = pipe[-1]
    test = X[~train]
    # Only rows whose (j, k) and l were seen (all of them, with this seed).
    key = pd.MultiIndex.from_frame(test[["j", "k"]])
    assert key.isin(est.fixef_["j:k"].index).all()
    names = covariates_for(absorb)
    eta = test[names].to_numpy() @ est.coef_ + test["off"].to_numpy()
    eta += effects_sum(est, test, absorb)
    np.testing.assert_allclose(pipe.predict(test), np.exp(eta), rtol=1e-10)


def test_level_without_cell_is_absent():
    df, y = frame(27)
    jk = (df["j"] == sorted(df["j"].unique())[0]) & (df["k"] == sorted(df["k"].unique())[0])
    keep = ~jk.to_numpy()
    absorb = [("j", "k")]
    X = df[columns("poisson", absorb)]
    est = make_pipeline(
        PanelDesign(dims=DIMS, absorb=absorb, balanced=False), PanelPoissonRegressor(offset="off")
    ).fit(X[keep], y[keep])[-1]
    assert len(est.fixef_["j:k"]) == 8 * 5 - 1
    assert np.all(np.isfinite(est.fixef_["j:k"]))


# ------------------------------------------------------------ collinearity
@pytest.mark.parametrize(
    ("absorb", "column", "level"),
    [
        (["j"], "x_j", ["j"]),
        ([("j", "k")], "x_jk_level", ["j", "k"]),
        (["j", "k"], "x_sum", None),
    ],
)
def test_covariate_explained_by_effects_is_dropped(absorb, column, level):
    df, y = frame(28)
    rng = np.random.default_rng(3)
    if level is None:  # a sum of a j-level and a k-level column
        j = df.groupby("j")["x_jl"].transform(lambda s: rng.normal())
        k = df.groupby("k")["x_kl"].transform(lambda s: rng.normal())
        df[column] = j + 2 * k
    else:
        df[column] = df.groupby(level)["x_jkl"].transform(lambda s: rng.normal())
    names = covariates_for(absorb)
    X = df[[*DIMS, names[0], column, *names[1:], "off"]]
    est = PanelPoissonRegressor(dims=DIMS, absorb=absorb, offset="off")
    with pytest.warns(CollinearityWarning, match=column):
        est.fit(X, y)
    assert est.collinear_names_ == [column]
    assert est.coef_names_ == [names[0], column, *names[1:]]
    assert np.isnan(est.coef_[1])
    ref, _ = poisson_fit(df, y, absorb)
    np.testing.assert_allclose(np.delete(est.coef_, 1), ref.coef_, rtol=1e-9)
    np.testing.assert_allclose(est.bse_.drop(column), ref.bse_, rtol=1e-9)
    assert est.aic_ == pytest.approx(ref.aic_, rel=1e-12)
    np.testing.assert_allclose(est.predict(X), ref.predict(df[columns("poisson", absorb)]))
    with pytest.raises(ValueError, match=column):
        est.set_params(collinear="raise").fit(X, y)


# ------------------------------------------------------------------- ridge
def _direct_minimum(family, X, y, m, w, off, groups, alpha):
    """Minimise (1/sum w) sum w (-loglik) + alpha/2 |beta|^2 over beta and dense dummies."""
    dummies = [
        pd.get_dummies(g, drop_first=r > 0, dtype=float).to_numpy() for r, g in enumerate(groups)
    ]
    F = np.hstack(dummies)
    Z = np.hstack([X, F])
    p = X.shape[1]
    sw = w.sum()

    def fun(theta):
        eta = Z @ theta + off
        if family == "poisson":
            mu = np.exp(eta)
            nll = mu - y * eta
            resid = mu - y
        else:
            nll = m * np.logaddexp(0, eta) - y * eta
            resid = m * expit(eta) - y
        grad = Z.T @ (w * resid) / sw
        grad[:p] += alpha * theta[:p]
        return np.dot(w, nll) / sw + 0.5 * alpha * theta[:p] @ theta[:p], grad

    res = scipy.optimize.minimize(
        fun,
        np.zeros(Z.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20000, "maxcor": 50, "ftol": 1e-16, "gtol": 1e-13},
    )
    assert np.abs(res.jac).max() < 1e-9
    return res.x[:p]


@pytest.mark.parametrize("family", ["poisson", "logit"])
def test_ridge_penalises_covariates_only(family):
    df, y = make_frame(sizes=(5, 4, 3), family=family, seed=29)
    absorb = ["j", "k"]
    names = covariates_for(absorb)
    w = df["w"].to_numpy()
    alpha = 0.3
    if family == "poisson":
        est = PanelPoissonRegressor(dims=DIMS, absorb=absorb, offset="off", alpha=alpha)
        off, m = df["off"].to_numpy(), None
    else:
        est = PanelLogitRegressor(dims=DIMS, absorb=absorb, trials="m", alpha=alpha)
        off, m = np.zeros(len(df)), df["m"].to_numpy()
    est.fit(df[columns(family, absorb)], y, sample_weight=w)
    ref = _direct_minimum(family, df[names].to_numpy(), y, m, w, off, [df["j"], df["k"]], alpha)
    np.testing.assert_allclose(est.coef_, ref, rtol=1e-6, atol=1e-9)
    # The penalty shrinks: the unpenalised fit's coefficients are larger.
    free = est.set_params(alpha=0.0).fit(df[columns(family, absorb)], y, sample_weight=w)
    assert np.linalg.norm(free.coef_) > np.linalg.norm(ref) * 1.05


# ------------------------------------------------------------------ errors
def test_absorb_not_a_dimension_names_it():
    df, y = make_frame(family="linear", seed=30)
    X = df[columns("linear", ["j"])]
    with pytest.raises(ValueError, match="firm"):
        PanelLinearRegressor(dims=DIMS, absorb=["firm"]).fit(X, y)
    with pytest.raises(ValueError, match="firm"):
        PanelLinearRegressor(dims=DIMS, absorb=[("j", "firm")]).fit(X, y)
    with pytest.raises(ValueError, match="firm"):
        PanelDesign(dims=DIMS, absorb=["firm"]).fit(X, y)


def test_absorb_without_dims_needs_dims():
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = X[:, 0] + 1.0
    with pytest.raises(ValueError, match=r"absorb.*needs dims"):
        PanelLinearRegressor(absorb=["j"]).fit(X, y)


def test_deviance_of_unbalanced_separated_fit_counts_observed_rows_only():
    """The dense path's score too: a separated level meets no missing cell's filler."""
    df, y = make_frame(family="logit", seed=31)
    keep = np.random.default_rng(4).uniform(size=len(df)) < 0.8
    df, y = df[keep].reset_index(drop=True), y[keep]
    level = sorted(df["j"].unique())[0]
    at = (df["j"] == level).to_numpy()
    y = np.where(at, df["m"].to_numpy(), y)  # all at the trials: +inf
    X = df[columns("logit", ["j", "k"])]
    m = df["m"].to_numpy()
    for kind in ("absorb", "fixed_effects"):
        pipe = make_pipeline(
            PanelDesign(dims=DIMS, balanced=False, **{kind: ["j", "k"]}),
            PanelLogitRegressor(trials="m"),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeparationWarning)
            pipe.fit(X, y)
        mu = pipe.predict(X)

        def dev(mu):
            mu = np.broadcast_to(mu, y.shape)
            up, down = y > 0, y < m
            return 2 * (
                np.sum(y[up] * np.log(y[up] / mu[up]))
                + np.sum((m - y)[down] * np.log((m - y)[down] / (m - mu)[down]))
            )

        expected = 1 - dev(mu) / dev(m * y.sum() / m.sum())
        assert pipe.score(X, y) == pytest.approx(expected, rel=1e-10)


def test_elastic_net_with_absorbed_effects_is_refused_not_ignored():
    df = pd.DataFrame({"i": np.repeat(np.arange(6), 4), "t": np.tile(np.arange(4), 6)})
    df["x"] = np.random.default_rng(0).normal(size=len(df))
    y = np.random.default_rng(1).poisson(np.exp(0.3 * df["x"]))
    est = PanelPoissonRegressor(dims=["i", "t"], absorb=["i"], alpha=0.1, l1_ratio=0.5)
    with pytest.raises(ValueError, match=r"l1_ratio=0\.5 with absorb"):
        est.fit(df, y)
    # The ridge alone is fitted.
    PanelPoissonRegressor(dims=["i", "t"], absorb=["i"], alpha=0.1).fit(df, y)


@pytest.mark.parametrize("cls", [PanelPoissonRegressor, PanelLogitRegressor])
def test_covariate_separation_is_detected_as_without_absorbing(cls):
    # A dummy that is 1 only on cells with y = 0 separates them (ppmlhdfe's
    # "ir" check): both paths drop the same rows and then the dummy, which
    # has no variation left, and agree on the rest.
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"i": np.repeat(np.arange(40), 6), "t": np.tile(np.arange(6), 40)})
    df["x"] = rng.normal(size=len(df))
    y = (rng.uniform(size=len(df)) < expit(0.3 * df["x"] - 0.3)).astype(float)
    sel = (y == 0) & (rng.uniform(size=len(df)) < 0.5)
    df["d"] = sel.astype(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ab = cls(dims=["i", "t"], absorb=["i", "t"]).fit(df, y)
        dense = cls(dims=["i", "t"], fixed_effects=["i", "t"]).fit(df, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, SeparationWarning)]
    assert any("separated by ['d']" in m for m in messages)
    np.testing.assert_array_equal(ab.separated_rows_, dense.separated_rows_)
    assert ab.separated_rows_.sum() >= sel.sum()
    np.testing.assert_allclose(ab.coef_[0], dense.coef_[0], rtol=1e-8)
    assert np.isnan(ab.coef_[1]) and ab.collinear_names_ == ["d"]
    np.testing.assert_allclose(ab.bse_.iloc[0], dense.bse_["x"], rtol=1e-7)


def test_dense_fixed_effects_beyond_the_budget_name_absorb(monkeypatch):
    # A budget lowered to the size of this model's Hessian stands for the
    # 20,000-level fixed effects that crashed: refused before any P x P array.
    import panelglm._data.validation as validation

    df = pd.DataFrame({"firm": np.repeat(np.arange(300), 3), "year": np.tile(np.arange(3), 300)})
    df["x"] = np.random.default_rng(0).normal(size=len(df))
    y = np.random.default_rng(1).poisson(1.0, size=len(df))
    monkeypatch.setattr(validation, "MAX_DENSE_HESSIAN_BYTES", 8 * 300 * 300)
    pattern = r"303 x 303 matrix.*fixed_effect \['firm'\] \(299.*absorb="
    with pytest.raises(ValueError, match=pattern):
        PanelPoissonRegressor(dims=["firm", "year"], fixed_effects=["firm", "year"]).fit(df, y)
    # The same model with the effects absorbed fits.
    est = PanelPoissonRegressor(dims=["firm", "year"], absorb=["firm", "year"]).fit(df, y)
    assert est.coef_names_ == ["x"]
