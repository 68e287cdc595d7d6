"""Separation: separated cells are dropped with a warning; the rest equals statsmodels on it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import PoissonRegressor

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import CollinearityWarning, SeparationWarning

smf = pytest.importorskip("statsmodels.formula.api")
DIMS = ["firm", "year"]
COLS = [*DIMS, "x"]


def firm_year(seed=0, n_firms=8, n_years=6, family="poisson"):
    rng = np.random.default_rng(seed)
    df = pd.MultiIndex.from_product(
        [[f"f{i}" for i in range(n_firms)], range(2000, 2000 + n_years)], names=DIMS
    ).to_frame(index=False)
    df["x"] = rng.normal(size=len(df))
    df["m"] = rng.integers(2, 6, size=len(df)).astype(float)
    if family == "poisson":
        df["y"] = rng.poisson(np.exp(0.5 + 0.5 * df["x"])).astype(float)
    else:
        df["y"] = rng.binomial(df["m"].astype(int), 1 / (1 + np.exp(-0.5 * df["x"]))).astype(float)
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def by_name(est):
    return pd.Series(est.coef_, est.coef_names_)


def sm_names(params):
    return params.rename(lambda n: n.replace("C(", "").replace(")[T.", "["))


def test_poisson_zero_level_dropped_and_rest_equals_statsmodels():
    df = firm_year()
    zero = df.firm.isin(["f3", "f6"])
    df.loc[zero, "y"] = 0.0
    # statsmodels "converges" to a large negative effect without a word.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = smf.glm("y ~ x + C(firm) + C(year)", df, family=sm.families.Poisson()).fit()
    assert full.params["C(firm)[T.f3]"] < -15
    est = PanelPoissonRegressor(dims=DIMS, fixed_effects=DIMS)
    with pytest.warns(SeparationWarning, match=r"firm='f3' \(y all 0\); firm='f6'.* 12 row"):
        est.fit(df[COLS], df["y"])
    np.testing.assert_array_equal(est.separated_rows_, zero.to_numpy())
    assert est.collinear_names_ == ["firm[f3]", "firm[f6]"]
    rest = df[~zero]
    ref = smf.glm("y ~ x + C(firm) + C(year)", rest, family=sm.families.Poisson()).fit(tol=1e-13)
    ours = by_name(est).dropna()
    np.testing.assert_allclose(ours, sm_names(ref.params)[ours.index], rtol=1e-8)
    assert est.intercept_ == pytest.approx(ref.params["Intercept"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)
    assert est.converged_ and est.n_iter_ < 15
    pred = est.predict(df[COLS])
    np.testing.assert_allclose(pred[~zero.to_numpy()], ref.fittedvalues, rtol=1e-8)
    assert np.all(pred[zero.to_numpy()] == 0.0)  # the limit of the MLE at those levels
    # The standard errors are those of the model on the remaining rows.
    np.testing.assert_allclose(est.bse_["x"], ref.bse["x"], rtol=1e-6)


def test_separated_reference_level():
    """The first level has no coefficient; the rest is re-referenced, as on the rows left."""
    df = firm_year(seed=1)
    zero = df.firm == "f0"
    df.loc[zero, "y"] = 0.0
    est = PanelPoissonRegressor(dims=DIMS, fixed_effects=DIMS)
    with pytest.warns(SeparationWarning, match=r"firm='f0' \(y all 0\)"):
        est.fit(df[COLS], df["y"])
    assert est.collinear_names_ == ["firm[f7]"]  # the new reference, quietly
    ref = smf.glm("y ~ x + C(firm) + C(year)", df[~zero], family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    assert by_name(est)["x"] == pytest.approx(ref.params["x"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(
        est.predict(df[COLS])[~zero.to_numpy()], ref.fittedvalues, rtol=1e-8
    )


def test_logit_levels_all_zero_and_all_trials():
    df = firm_year(seed=2, family="binomial")
    low, high = df.firm == "f2", df.firm == "f5"
    df.loc[low, "y"] = 0.0
    df.loc[high, "y"] = df.loc[high, "m"]
    est = PanelLogitRegressor(trials="m", dims=DIMS, fixed_effects=["firm"])
    with pytest.warns(SeparationWarning, match=r"firm='f2' \(y all 0\); firm='f5' \(y all at"):
        est.fit(df[[*COLS, "m"]], df["y"])
    rest = df[~(low | high)]
    ref = smf.glm("y + I(m - y) ~ x + C(firm)", rest, family=sm.families.Binomial()).fit(tol=1e-13)
    ours = by_name(est).dropna()
    np.testing.assert_allclose(ours, sm_names(ref.params)[ours.index], rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    pred = est.predict(df[[*COLS, "m"]])
    assert np.all(pred[low.to_numpy()] == 0.0)
    np.testing.assert_array_equal(pred[high.to_numpy()], df.loc[high, "m"])
    # Scoring the training rows counts the separated rows as fitted perfectly.
    assert np.isfinite(est.score(df[[*COLS, "m"]], df["y"]))


def test_binomial_separation_found_by_iterating():
    """Year 2000 is all 0; only once it is dropped is firm f1 all at the trials."""
    df = firm_year(seed=3, family="binomial")
    y2000 = df.year == 2000
    df.loc[y2000, "y"] = 0.0
    f1 = (df.firm == "f1") & ~y2000
    df.loc[f1, "y"] = df.loc[f1, "m"]
    est = PanelLogitRegressor(trials="m", dims=DIMS, fixed_effects=DIMS)
    with pytest.warns(
        SeparationWarning, match=r"firm='f1' \(y all at the trials\).*year=2000 \(y all 0\)"
    ):
        est.fit(df[[*COLS, "m"]], df["y"])
    dropped = y2000 | (df.firm == "f1")
    np.testing.assert_array_equal(est.separated_rows_, dropped.to_numpy())
    ref = smf.glm(
        "y + I(m - y) ~ x + C(firm) + C(year)", df[~dropped], family=sm.families.Binomial()
    ).fit(tol=1e-13)
    assert by_name(est)["x"] == pytest.approx(ref.params["x"], rel=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)


def test_poisson_covariate_separation_is_certified_and_dropped():
    df = firm_year(seed=4)
    rng = np.random.default_rng(4)
    zeros = np.flatnonzero(df["y"].to_numpy() == 0)[:5]
    df["z"] = 0.0
    df.loc[zeros, "z"] = rng.uniform(0.5, 2.0, size=zeros.size)  # positive only where y = 0
    cols = [*COLS, "z"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = smf.glm("y ~ x + z + C(year)", df, family=sm.families.Poisson()).fit()
    assert full.params["z"] < -10  # statsmodels walks off toward -inf
    est = PanelPoissonRegressor(dims=DIMS, fixed_effects=["year"])
    with pytest.warns(SeparationWarning, match=r"'z' separate\(s\) the data: 5 row"):
        est.fit(df[cols], df["y"])
    assert np.flatnonzero(est.separated_rows_).tolist() == sorted(zeros.tolist())
    assert np.isnan(by_name(est)["z"]) and est.collinear_names_ == ["z"]
    rest = df.drop(index=zeros)
    ref = smf.glm("y ~ x + C(year)", rest, family=sm.families.Poisson()).fit(tol=1e-13)
    ours = by_name(est).dropna()
    np.testing.assert_allclose(ours, sm_names(ref.params)[ours.index], rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-12)


def test_logit_quasi_complete_separation_by_covariate():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2))
    X[:, 0] = np.where(X[:, 0] > 0.5, X[:, 0], 0.0)  # y = 1 wherever x0 > 0
    y = np.where(X[:, 0] > 0, 1.0, (rng.uniform(size=300) < 1 / (1 + np.exp(-X[:, 1]))))
    with pytest.warns(SeparationWarning, match="'x0' separate"):
        est = PanelLogitRegressor().fit(X, y)
    keep = X[:, 0] == 0
    np.testing.assert_array_equal(est.separated_rows_, ~keep)
    ref = sm.GLM(y[keep], sm.add_constant(X[keep, 1]), family=sm.families.Binomial())
    ref = ref.fit(tol=1e-13)
    assert np.isnan(est.coef_[0])
    np.testing.assert_allclose([est.intercept_, est.coef_[1]], ref.params, rtol=1e-8)


def test_complete_separation_is_an_error_naming_the_covariate():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 1))
    with pytest.raises(ValueError, match="Complete separation: 'x0'"):
        PanelLogitRegressor().fit(X, (X[:, 0] > 0).astype(float))


@pytest.mark.parametrize(
    "est, y, match",
    [
        (PanelPoissonRegressor(), np.zeros(20), "y is 0 on every row"),
        (PanelLogitRegressor(), np.ones(20), "equal to the number of trials on every row"),
    ],
)
def test_target_at_a_boundary_everywhere_is_an_error(est, y, match):
    X = np.random.default_rng(7).normal(size=(20, 2))
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_ridge_does_not_drop_and_matches_sklearn():
    df = firm_year(seed=8)
    df.loc[df.firm == "f3", "y"] = 0.0
    data = PanelDesign(dims=DIMS, fixed_effects=["firm"]).fit_transform(df[COLS])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        est = PanelPoissonRegressor(alpha=0.01).fit(data, df["y"])
    dense = pd.get_dummies(df.firm, drop_first=True, dtype=float)
    X = np.column_stack([df["x"], dense])
    ref = PoissonRegressor(alpha=0.01, tol=1e-12, max_iter=1000, solver="newton-cholesky")
    ref.fit(X, df["y"])
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert not est.separated_rows_.any()


def test_exponential_level_without_events():
    df = firm_year(seed=9)
    rng = np.random.default_rng(9)
    T = rng.exponential(size=len(df)) + 0.1
    df["event"] = (rng.uniform(size=len(df)) < 0.7).astype(float)
    never = df.firm == "f4"
    df.loc[never, "event"] = 0.0  # every duration of f4 is censored
    est = PanelExponentialRegressor(event="event", dims=DIMS, fixed_effects=["firm"])
    with pytest.warns(SeparationWarning, match="firm='f4'"):
        est.fit(df[[*COLS, "event"]], T)
    rest = df[~never].assign(logT=np.log(T[~never.to_numpy()]))
    ref = smf.glm(
        "event ~ x + C(firm)", rest, offset=rest["logT"], family=sm.families.Poisson()
    ).fit(tol=1e-13)
    assert by_name(est)["x"] == pytest.approx(ref.params["x"], rel=1e-8)
    # A hazard of zero: the expected duration at that level is infinite.
    assert np.all(np.isinf(est.predict(df[[*COLS, "event"]])[never.to_numpy()]))


def test_no_false_alarm_on_small_fitted_means():
    """Rare events with tiny but finite fitted means are not separation."""
    rng = np.random.default_rng(10)
    X = rng.normal(size=(2000, 2))
    y = rng.poisson(np.exp(-4.0 + 2.0 * X[:, 0])).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        warnings.simplefilter("error", CollinearityWarning)
        est = PanelPoissonRegressor().fit(X, y)
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-13)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-8)


def test_exponential_separation_names_censoring_and_an_infinite_duration():
    """A level with every duration censored: the warning says so (not 'y all 0'), the
    prediction there is an infinite expected duration, and the rest is the fit without it."""
    import warnings

    from panelglm import PanelExponentialRegressor
    from panelglm.exceptions import SeparationWarning

    rng = np.random.default_rng(10)
    df = pd.DataFrame([(g, i) for g in range(4) for i in range(10)], columns=["g", "i"])
    df["x"] = rng.normal(size=40)
    df["T"] = rng.exponential(size=40) + 0.05
    df["ev"] = (rng.random(40) < 0.7).astype(int)
    df.loc[df.g == 3, "ev"] = 0
    design = PanelDesign(dims=["g", "i"], fixed_effects=["g"], covariates=["x"])
    with pytest.warns(SeparationWarning, match="every duration censored.*infinite expected"):
        est = PanelExponentialRegressor(event="ev").fit(design.fit_transform(df), df["T"])
    assert np.all(np.isinf(est.predict(design.transform(df))[df.g == 3]))
    kept = df[df.g != 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = PanelExponentialRegressor(event="ev").fit(
            PanelDesign(dims=["g", "i"], fixed_effects=["g"], covariates=["x"]).fit_transform(
                kept
            ),
            kept["T"],
        )
    x = est.coef_names_.index("x")
    assert est.coef_[x] == pytest.approx(ref.coef_[ref.coef_names_.index("x")], rel=1e-9)


def test_exponential_all_censored_and_covariate_separation_in_its_words():
    from panelglm import PanelExponentialRegressor
    from panelglm.exceptions import SeparationWarning

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 1))
    T = rng.exponential(size=60) + 0.05
    with pytest.raises(ValueError, match="Every duration is censored"):
        PanelExponentialRegressor(event="ev").fit(
            pd.DataFrame({"x": X[:, 0], "ev": np.zeros(60)}), T
        )
    # A covariate positive only on censored durations separates them.
    ev = (rng.random(60) < 0.7).astype(float)
    z = np.where(ev == 0, rng.uniform(0.5, 1.5, 60), 0.0)
    frame = pd.DataFrame({"x": X[:, 0], "z": z, "ev": ev})
    with pytest.warns(SeparationWarning, match="row\\(s\\) with a censored duration"):
        PanelExponentialRegressor(event="ev").fit(frame, T)
