"""Estimators against statsmodels and scikit-learn fitted on the dense matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from sklearn.linear_model import PoissonRegressor, TweedieRegressor

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)

SIZES = {1: (60,), 2: (8, 6), 3: (6, 5, 4), 4: (5, 4, 3, 3)}
RTOL = 1e-8


def sm_fit(family, df, names, y, *, offset=False, trials=False, weights=False):
    """statsmodels GLM on the dense matrix taken straight from the long frame."""
    X = sm.add_constant(df[names].to_numpy(), has_constant="add")
    kw = {}
    if offset:
        kw["offset"] = df["off"].to_numpy()
    if weights:
        kw["freq_weights"] = df["w"].to_numpy()
    if family == "poisson":
        fam, endog = sm.families.Poisson(), y
    elif family == "binomial":
        m = df["m"].to_numpy() if trials else np.ones(len(y))
        fam, endog = sm.families.Binomial(), np.column_stack([y, m - y])
    else:
        fam, endog = sm.families.Gaussian(), y
    return sm.GLM(endog, X, family=fam, **kw).fit(tol=1e-13, maxiter=200)


def our_fit(family, df, dims, y, *, offset=False, trials=False, weights=False, alpha=0.0):
    kw = {"alpha": alpha}
    if family == "poisson":
        est = PanelPoissonRegressor(offset="off" if offset else None, **kw)
    elif family == "binomial":
        est = PanelLogitRegressor(trials="m" if trials else None, **kw)
    else:
        est = PanelLinearRegressor(**kw)
    # Columns the model does not use as offset/trials stay out of the covariates.
    unused = [c for c in ("off", "m", "w") if c not in (est._aux_columns().values())]
    data = PanelDesign(dims=dims).fit_transform(df.drop(columns=unused))
    return est.fit(data, y, sample_weight=df["w"].to_numpy() if weights else None)


@pytest.mark.parametrize("D", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "family, extra",
    [
        ("poisson", {}),
        ("poisson", {"offset": True}),
        ("poisson", {"offset": True, "weights": True}),
        ("binomial", {}),
        ("binomial", {"trials": True}),
        ("binomial", {"trials": True, "weights": True}),
        ("gaussian", {}),
        ("gaussian", {"weights": True}),
    ],
)
def test_matches_statsmodels(D, family, extra):
    df, dims, names, y = make_panel(SIZES[D], seed=D, family=family)
    if family == "binomial" and not extra.get("trials"):
        y = np.minimum(y, 1.0)
    est = our_fit(family, df, dims, y, **extra)
    ref = sm_fit(family, df, names, y, **extra)
    ours = pd.Series(np.r_[est.intercept_, est.coef_], index=["const", *est.coef_names_])
    theirs = pd.Series(ref.params, index=["const", *names])
    np.testing.assert_allclose(ours[theirs.index], theirs, rtol=RTOL, atol=1e-10)
    np.testing.assert_allclose(est.loglik_, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(est.deviance_, ref.deviance, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        est.predict(PanelDesign(dims=dims).fit_transform(df)),
        ref.fittedvalues * (df["m"] if extra.get("trials") else 1),
        rtol=1e-8,
    )
    if family == "gaussian":
        np.testing.assert_allclose(est.scale_, ref.scale, rtol=1e-9)


def test_binomial_fractional_response():
    df, dims, names, _ = make_panel(SIZES[2], seed=3, family="binomial")
    y = np.random.default_rng(0).uniform(size=len(df))
    est = our_fit("binomial", df, dims, y)
    ref = sm_fit("binomial", df, names, y)
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], ref.params, rtol=RTOL)


@pytest.mark.parametrize("D", [2, 3])
def test_ridge_poisson_matches_sklearn(D):
    df, dims, names, y = make_panel(SIZES[D], seed=10 + D)
    est = our_fit("poisson", df, dims, y, alpha=0.05)
    ref = PoissonRegressor(alpha=0.05, tol=1e-12, max_iter=1000, solver="newton-cholesky")
    ref.fit(df[names].to_numpy(), y)
    ours = pd.Series(est.coef_, index=est.coef_names_)[names]
    np.testing.assert_allclose(ours, ref.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-7)


def test_ridge_gaussian_with_weights_matches_sklearn():
    df, dims, names, y = make_panel(SIZES[3], seed=7, family="gaussian")
    w = df["w"].to_numpy()
    est = our_fit("gaussian", df, dims, y, alpha=0.3, weights=True)
    ref = TweedieRegressor(
        power=0, alpha=0.3, link="identity", tol=1e-12, max_iter=10000, solver="newton-cholesky"
    )
    ref.fit(df[names].to_numpy(), y, sample_weight=w)
    ours = pd.Series(est.coef_, index=est.coef_names_)[names]
    np.testing.assert_allclose(ours, ref.coef_, rtol=1e-7, atol=1e-9)
    assert est.score(
        PanelDesign(dims=dims).fit_transform(df.drop(columns=["off", "m", "w"])),
        y,
        sample_weight=w,
    ) == pytest.approx(ref.score(df[names].to_numpy(), y, w), rel=1e-8)


def test_invariant_to_row_order_level_names_and_dim_order():
    df, dims, names, y = make_panel(SIZES[3], seed=5)
    cols = [*dims, *names]
    base = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df[cols]), y)
    perm = np.random.default_rng(1).permutation(len(df))
    shuffled = PanelPoissonRegressor().fit(
        PanelDesign(dims=dims).fit_transform(df[cols].iloc[perm]), y[perm]
    )
    renamed = df[cols].copy()
    renamed["d1"] = renamed["d1"].map(lambda s: "zz" + s[::-1])
    rev = PanelPoissonRegressor().fit(PanelDesign(dims=dims[::-1]).fit_transform(renamed), y)
    for other in (shuffled, rev):
        a = pd.Series(base.coef_, index=base.coef_names_)
        b = pd.Series(other.coef_, index=other.coef_names_)[a.index]
        np.testing.assert_allclose(b, a, rtol=1e-10)
        assert other.loglik_ == pytest.approx(base.loglik_, rel=1e-12)
    # Predictions come back in the caller's row order.
    pred = shuffled.predict(PanelDesign(dims=dims).fit_transform(df[cols].iloc[perm]))
    np.testing.assert_allclose(
        pred, base.predict(PanelDesign(dims=dims).fit_transform(df[cols]))[perm]
    )


def test_fixed_effects_match_statsmodels_formula():
    """A firm x year panel with firm and year fixed effects, as C(firm) + C(year)."""
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(3)
    firms = [f"firm{i:02d}" for i in range(12)]
    years = list(range(2001, 2009))
    df = pd.MultiIndex.from_product([firms, years], names=["firm", "year"]).to_frame(index=False)
    size = dict(zip(firms, rng.normal(size=len(firms)), strict=True))
    df["rate"] = rng.normal(size=len(df))
    df["gdp"] = df["year"].map(dict(zip(years, rng.normal(size=len(years)), strict=True)))
    firm_eff = df["firm"].map(size)
    df["y"] = rng.poisson(np.exp(0.5 + firm_eff + 0.3 * df["rate"] + 0.1 * df["year"].sub(2000)))
    df = df.sample(frac=1, random_state=0)
    est = PanelPoissonRegressor(dims=["firm", "year"], fixed_effects=["firm", "year"])
    est.fit(df[["firm", "year", "rate"]], df["y"])
    ref = smf.glm("y ~ rate + C(firm) + C(year)", df, family=sm.families.Poisson()).fit(tol=1e-13)
    theirs = ref.params.rename(
        lambda n: n.replace("C(", "").replace(")[T.", "[").replace("[T.", "[")
    )
    ours = pd.Series(est.coef_, index=est.coef_names_)
    np.testing.assert_allclose(ours, theirs[ours.index], rtol=1e-8)
    assert est.intercept_ == pytest.approx(ref.params["Intercept"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)


def test_tuple_fixed_effect_and_categorical_covariate():
    smf = pytest.importorskip("statsmodels.formula.api")
    df, dims, _, y = make_panel((5, 4, 3), seed=8)
    df["region"] = df["d0"].map(lambda s: "north" if s < "d0_12" else "south")
    df["y"] = y
    est = PanelPoissonRegressor(dims=dims, fixed_effects=[("d1", "d2")])
    est.fit(df[[*dims, "x_0", "region"]], y)
    assert "region[south]" in est.coef_names_
    assert "d1:d2[d1_10:d2_11]" in est.coef_names_
    ref = smf.glm("y ~ x_0 + C(region) + C(d1):C(d2)", df, family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    assert pd.Series(est.coef_, index=est.coef_names_)["x_0"] == pytest.approx(
        ref.params["x_0"], rel=1e-8
    )


def test_exponential_equals_poisson_with_log_duration_offset():
    df, dims, names, _ = make_panel(SIZES[3], seed=4)
    rng = np.random.default_rng(4)
    T = rng.exponential(size=len(df)) + 0.1
    event = (rng.uniform(size=len(df)) < 0.7).astype(float)
    df = df.assign(event=event, logT=np.log(T))
    cols = [*dims, *names]
    exp_est = PanelExponentialRegressor(event="event").fit(
        PanelDesign(dims=dims).fit_transform(df[[*cols, "event"]]), T
    )
    poi_est = PanelPoissonRegressor(offset="logT").fit(
        PanelDesign(dims=dims).fit_transform(df[[*cols, "logT"]]), event
    )
    np.testing.assert_allclose(exp_est.coef_, poi_est.coef_, rtol=1e-10)
    assert exp_est.intercept_ == pytest.approx(poi_est.intercept_, rel=1e-10)
    # The exponential likelihood is the Poisson one less sum(event * log T).
    assert exp_est.loglik_ == pytest.approx(poi_est.loglik_ - np.sum(event * np.log(T)), rel=1e-12)
    hazard = np.exp(
        np.log(exp_est.predict(PanelDesign(dims=dims).fit_transform(df[[*cols, "event"]]))) * -1
    )
    direct = np.sum(event * np.log(hazard) - hazard * T)
    assert exp_est.loglik_ == pytest.approx(direct, rel=1e-10)


def test_exponential_recovers_truth_under_censoring():
    rng = np.random.default_rng(11)
    n_c, n_p = 400, 10
    df = pd.MultiIndex.from_product([range(n_c), range(n_p)], names=["customer", "plan"])
    df = df.to_frame(index=False)
    age = rng.normal(size=n_c)
    price = rng.normal(size=n_p)
    df["age"], df["price"] = age[df["customer"]], price[df["plan"]]
    hazard = np.exp(-1.0 + 0.4 * df["age"] - 0.3 * df["price"])
    t_true = rng.exponential(1 / hazard)
    t_max = 3.0  # administrative censoring
    df["event"] = (t_true <= t_max).astype(float)
    T = np.minimum(t_true, t_max)
    assert 0.1 < 1 - df["event"].mean() < 0.9
    est = PanelExponentialRegressor(event="event", dims=["customer", "plan"]).fit(df, T)
    assert est.intercept_ == pytest.approx(-1.0, abs=0.06)
    np.testing.assert_allclose(est.coef_, [0.4, -0.3], atol=0.05)
    assert est.coef_names_ == ["age", "price"]


def test_score_uses_offset_of_new_data():
    df, dims, names, y = make_panel((20, 5, 4), seed=2)
    cols = [*dims, *names, "off"]
    est = PanelPoissonRegressor(offset="off").fit(
        PanelDesign(dims=dims).fit_transform(df[cols]), y
    )
    data = PanelDesign(dims=dims).fit_transform(df[cols])
    mu = est.predict(data)
    np.testing.assert_allclose(
        mu, np.exp(est.intercept_ + df[names].to_numpy() @ est.coef_ + df["off"].to_numpy())
    )
    # D^2 against the constant mean: the reference has no offset, so that
    # scores of models with and without one compare (see test_model_selection).
    mu0 = np.full(len(y), y.mean())

    def dev(m):
        return 2 * np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / m), 0) - y + m)

    assert est.score(data, y) == pytest.approx(1 - dev(mu) / dev(mu0), rel=1e-10)


@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
@pytest.mark.parametrize("panel", [False, True])
def test_no_intercept_and_only_cell_level_columns(family, panel):
    """No block below the cell level at all: the kernels still reduce every row."""
    rng = np.random.default_rng(3)
    n = 60
    X = rng.normal(size=(n, 2))
    eta = X @ [0.3, -0.2]
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
        est, fam = PanelPoissonRegressor(fit_intercept=False), sm.families.Poisson()
    elif family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
        est, fam = PanelLogitRegressor(fit_intercept=False), sm.families.Binomial()
    else:
        y = eta + rng.normal(size=n)
        est, fam = PanelLinearRegressor(fit_intercept=False), sm.families.Gaussian()
    if panel:
        df = pd.DataFrame({"i": np.repeat(np.arange(6), 10), "t": np.tile(np.arange(10), 6)})
        df[["a", "b"]] = X
        est.set_params(dims=["i", "t"]).fit(df, y)
    else:
        est.fit(X, y)
    ref = sm.GLM(y, X, family=fam).fit(tol=1e-13)
    np.testing.assert_allclose(est.coef_, ref.params, rtol=1e-8)
    np.testing.assert_allclose(est.bse_, ref.bse, rtol=1e-6)
    assert est.intercept_ == 0.0
