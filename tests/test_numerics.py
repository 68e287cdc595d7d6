"""Numerical safety: linear predictors up to +-700, and Newton's warnings on hard problems."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

from panelglm import PanelData, PanelDesign, PanelPoissonRegressor
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.families import BINOMIAL
from panelglm._model.terms import build_design, build_model_spec
from panelglm._solve.newton import newton_solve


@pytest.mark.parametrize("level", [690.0, -690.0])
def test_poisson_with_linear_predictor_near_plus_minus_700(level):
    """Offsets near +-690 put V near +-700; the MLE per group has a closed form."""
    rng = np.random.default_rng(0)
    n = 10
    df = pd.DataFrame({"g": np.repeat(["a", "b"], n), "t": np.tile(np.arange(n), 2)})
    df["off"] = level + rng.uniform(-8, 8, 2 * n)
    # PPML: any non-negative y; here y = exp(off + effect) * noise, from 1e-304 to 1e304.
    log_y = df["off"] + np.where(df.g == "a", 0.7, -0.4) + rng.normal(scale=0.3, size=2 * n)
    y = np.exp(log_y.to_numpy())
    assert np.all(np.isfinite(y) & (y > 0))
    data = PanelDesign(dims=["g", "t"], fixed_effects=["g"]).fit_transform(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no convergence trouble
        est = PanelPoissonRegressor(offset="off").fit(data, y)
    # Per group: b = log(sum y / sum exp(off)), computed in logs.
    b = {g: logsumexp(log_y[df.g == g]) - logsumexp(df.loc[df.g == g, "off"]) for g in "ab"}
    eta = est.predict(data)
    assert np.max(np.abs(est.intercept_ + df["off"])) > 697
    assert est.intercept_ == pytest.approx(b["a"], rel=1e-10, abs=1e-10)
    assert est.coef_names_ == ["g[b]"]
    assert est.coef_[0] == pytest.approx(b["b"] - b["a"], rel=1e-9)
    assert np.all(np.isfinite(eta)) and np.isfinite(est.loglik_) and est.converged_


@pytest.mark.parametrize("shift", [800.0, -800.0, 5000.0])
def test_poisson_offsets_beyond_the_range_of_exp(shift):
    """Offsets beyond +-709 (exposure in absurd units): exp(offset) overflows or
    underflows, but the model is the same; only the intercept moves, by -shift."""
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"g": np.repeat(np.arange(30), 8), "t": np.tile(np.arange(8), 30)})
    df["x"] = rng.normal(size=len(df))
    df["off"] = rng.uniform(-1, 1, size=len(df))
    y = rng.poisson(np.exp(0.2 + 0.4 * df["x"] + df["off"]))
    ref = sm.GLM(y, sm.add_constant(df[["x"]]), family=sm.families.Poisson(), offset=df["off"])
    ref = ref.fit(tol=1e-13)
    shifted = df.assign(off=df["off"] + shift)
    data = PanelDesign(dims=["g", "t"]).fit_transform(shifted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning, no convergence trouble
        est = PanelPoissonRegressor(offset="off").fit(data, y)
    assert est.coef_[0] == pytest.approx(ref.params["x"], rel=1e-9)
    assert est.intercept_ + shift == pytest.approx(ref.params["const"], rel=1e-8, abs=1e-8)
    np.testing.assert_allclose(est.predict(data), ref.fittedvalues, rtol=1e-8)


@pytest.mark.parametrize("unit", [1e-12, 1e12])
def test_poisson_fit_does_not_depend_on_the_units_of_y(unit):
    """PPML on flows in trillions: only the intercept moves, by log(unit)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2))
    y = rng.poisson(np.exp(1.0 + X @ [0.5, -0.3])).astype(float)
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-13)
    est = PanelPoissonRegressor().fit(X, y * unit)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-9)
    assert est.intercept_ == pytest.approx(ref.params[0] + np.log(unit), rel=1e-9)


def test_logit_objective_finite_at_plus_minus_700():
    X = np.array([[700.0], [-700.0], [699.0], [-699.0], [0.5]])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3])
    data = PanelData.from_array(X)
    design, _ = build_design(build_model_spec(data, True, set()), data)
    obj = PenalizedObjective(
        design, BINOMIAL, PanelProblem(shape=(5,), y=y), 0.0, np.array([0.0, 1.0])
    )
    with np.errstate(all="raise"):
        loss, grad, hess = obj.loss_grad_hess(np.array([0.0, 1.0]))
    v = X[:, 0]
    # Per cell -f = log(1 + e^v) - y v, written without overflow.
    expected = np.mean(np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v))) - y * v)
    assert loss == pytest.approx(expected, rel=1e-12)
    p = 0.5 * (1 + np.tanh(v / 2))
    np.testing.assert_allclose(grad, [np.mean(p - y), np.mean((p - y) * v)], rtol=1e-12)
    assert np.all(np.isfinite(hess))


def test_newton_max_iter_warning_reports_gradient_norm():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = rng.poisson(np.exp(1.0 + 2.0 * X[:, 0])).astype(float)
    with pytest.warns(ConvergenceWarning, match=r"max_iter=1 .*gradient max-norm \d"):
        est = PanelPoissonRegressor(max_iter=1).fit(X, y)
    assert not est.converged_ and est.n_iter_ == 1


class _Cliff:
    """A convex objective that is finite only at its starting point (line search must fail)."""

    def loss(self, x):
        return 0.0 if np.all(x == 0.0) else np.inf

    def loss_grad_hess(self, x):
        return self.loss(x), np.array([3.0, -4.0]), np.eye(2)


def test_line_search_failure_is_a_clear_warning():
    with pytest.warns(ConvergenceWarning, match=r"could not decrease.*gradient max-norm 4.0"):
        res = newton_solve(_Cliff(), np.zeros(2), tol=1e-10, max_iter=10)
    assert not res.converged
    np.testing.assert_array_equal(res.coef, 0.0)


def test_prediction_overflow_warns_but_separated_limits_do_not():
    """exp beyond float64 at predict is reported; nothing else about predict warns."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(np.arange(4), 3), "t": np.tile(np.arange(3), 4)})
    df["x"] = rng.normal(size=12)
    df["off"] = 0.0
    y = rng.poisson(2.0, 12)
    est = PanelPoissonRegressor(dims=["g", "t"], offset="off").fit(df, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(
            est.predict(df), np.exp(est.intercept_ + est.coef_[0] * df["x"]), rtol=1e-12
        )
    with pytest.warns(RuntimeWarning, match="12 predicted mean.*overflow"):
        pred = est.predict(df.assign(off=800.0))
    assert np.all(np.isinf(pred))


def test_fixed_effects_reach_their_closed_form_at_the_default_tol():
    """Offsets over six orders of magnitude make sum(w y eta) large; convergence is
    judged on the deviance's scale, so low-information firm effects are exact too."""
    rng = np.random.default_rng(4)
    nf, ny = 300, 10
    df = pd.MultiIndex.from_product(
        [[f"f{i:03d}" for i in range(nf)], range(ny)], names=["firm", "year"]
    ).to_frame(index=False)
    df["x"] = rng.normal(size=len(df))
    df["off"] = np.log(10 ** rng.uniform(-3, 3, size=len(df)))
    alpha = np.repeat(rng.normal(scale=2, size=nf), ny)
    y = rng.poisson(np.exp(alpha + 0.3 * df.x + df.off)).astype(float)
    w = 10 ** rng.uniform(-2, 2, size=len(df))
    est = PanelPoissonRegressor(dims=["firm", "year"], fixed_effects=["firm"], offset="off")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # firms with y all 0 are separated
        est.fit(df, y, sample_weight=w)
    coef = pd.Series(est.coef_, index=est.coef_names_)
    # Given the slope, each firm's effect has a closed form (its score equation).
    checked = 0
    for f in df.firm.unique()[1:]:
        m = (df.firm == f).to_numpy()
        if y[m].sum() == 0:
            continue
        mu0 = np.exp(est.intercept_ + coef["x"] * df.x[m] + df.off[m])
        closed = np.log(np.sum(w[m] * y[m]) / np.sum(w[m] * mu0))
        assert coef[f"firm[{f}]"] == pytest.approx(closed, rel=1e-8, abs=1e-10)
        checked += 1
    assert checked > 250


def test_poisson_deviance_of_large_counts_keeps_its_digits():
    """Flows in dollars (y ~ 1e9): the deviance is ~2e3 while sum(y log y) is ~4e13."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    y = rng.poisson(np.exp(np.log(1e9) + X @ [0.3, -0.2])).astype(float)
    est = PanelPoissonRegressor().fit(X, y)
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-13)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-8)
    mu = est.predict(X)
    # Cell by cell in the ratio form: good to ~1e-9 here (y log(y / mu) rounds
    # at y * eps per cell), against 1e-5 for sum(y log y) less sum(y log mu).
    direct = 2.0 * np.sum(y * np.log(y / mu) - (y - mu))
    assert est.deviance_ == pytest.approx(direct, rel=1e-8)
    assert est.deviance_ == pytest.approx(ref.deviance, rel=1e-8)
    assert est.null_deviance_ == pytest.approx(ref.null_deviance, rel=1e-10)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
@pytest.mark.parametrize("step", [60.0, 1.0])
def test_timestamp_covariate_is_solved_in_centred_coordinates(family, step):
    """A Unix timestamp seen over minutes: mean / range ~ 1e7, so the raw Hessian's
    condition number is ~1e14. Coefficients, standard errors (intercept included)
    and predictions equal statsmodels' on the centred column, mapped back."""
    from panelglm import PanelLinearRegressor

    rng = np.random.default_rng(0)
    n, c = 600, 1.7e9
    k = rng.integers(0, 6, size=n).astype(float)
    x = rng.normal(size=n)
    ts = c + step * k
    if family == "poisson":
        y = rng.poisson(np.exp(-1 + 0.3 * x + 0.1 * k)).astype(float)
        est, fam = PanelPoissonRegressor(), sm.families.Poisson()
    else:
        y = 2.0 + 0.3 * x + 0.1 * k + rng.normal(size=n)
        est, fam = PanelLinearRegressor(), sm.families.Gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singular-Hessian notice, no convergence trouble
        est.fit(np.column_stack([x, ts]), y)
    ref = sm.GLM(y, sm.add_constant(np.column_stack([x, ts - c])), family=fam).fit(tol=1e-14)
    t = np.eye(3)
    t[0, 2] = -c  # intercept of the raw column = a - c b
    params, cov = t @ ref.params, t @ ref.cov_params() @ t.T
    np.testing.assert_allclose(est.coef_, params[1:], rtol=1e-8)
    assert est.intercept_ == pytest.approx(params[0], rel=1e-8)
    np.testing.assert_allclose(est.bse_, np.sqrt(np.diag(cov)), rtol=1e-6)
    np.testing.assert_allclose(est.predict(np.column_stack([x, ts])), ref.fittedvalues, rtol=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_timestamp_centring_on_an_unbalanced_panel(dtype):
    """The shift is the observed rows' mean, not that of a grid whose missing
    cells hold a fill value: one missing row must not turn the centring off."""
    rng = np.random.default_rng(1)
    df = pd.MultiIndex.from_product(
        [[f"f{i:02d}" for i in range(40)], range(2001, 2011)], names=["firm", "year"]
    ).to_frame(index=False)
    df["ts"] = 1.7e9 + 60.0 * (df["year"] - 2001) + rng.uniform(0, 30, len(df))
    df["rate"] = rng.normal(size=len(df))
    k = (df["ts"] - 1.7e9) / 60.0
    y = rng.poisson(np.exp(0.3 + 0.05 * k + 0.3 * df["rate"])).astype(float)
    keep = np.ones(len(df), bool)
    keep[[3, 50, 222]] = False
    d, yy = df[keep].reset_index(drop=True), y[keep]
    data = PanelDesign(dims=["firm", "year"], balanced=False).fit_transform(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = PanelPoissonRegressor(cov_type="cluster", cluster="firm", dtype=dtype)
        est.fit(data, yy)
    Xc = np.column_stack([np.ones(len(d)), d["ts"] - 1.7e9, d["rate"]])
    groups = d["firm"].factorize()[0]
    ref = sm.GLM(yy, Xc, family=sm.families.Poisson()).fit(
        tol=1e-13, cov_type="cluster", cov_kwds={"groups": groups}
    )
    tol = 1e-8 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=tol)
    np.testing.assert_allclose(np.asarray(est.bse_)[1:], ref.bse[1:], rtol=tol)


def test_gaussian_scale_with_normalised_weights_warns():
    """sum(w) <= k leaves no residual degrees of freedom: NaN, with a warning saying why."""
    from panelglm import PanelLinearRegressor

    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 2))
    y = X @ [0.5, -0.2] + rng.normal(size=40)
    w = rng.uniform(0.5, 2.0, size=40)
    with pytest.warns(RuntimeWarning, match="frequency weights"):
        est = PanelLinearRegressor().fit(X, y, sample_weight=w / w.sum())
    assert np.isnan(est.scale_)
    # The same weights on the scale of counts: statsmodels' frequency-weight scale.
    scaled = w / w.sum() * 40
    est = PanelLinearRegressor().fit(X, y, sample_weight=scaled)
    ref = sm.GLM(y, sm.add_constant(X), freq_weights=scaled).fit()
    assert est.scale_ == pytest.approx(ref.scale, rel=1e-10)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-10)


@pytest.mark.parametrize("l1_ratio", [0.0, 0.5])
def test_float32_with_large_offsets_converges(l1_ratio):
    """float32's loss is noisy in proportion to the loss itself, which offsets make
    large next to the deviance: the stopping rule must not ask for less than that."""
    rng = np.random.default_rng(1)
    f, t = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    df = pd.DataFrame({"firm": f.ravel(), "year": t.ravel()})
    df["x"] = rng.normal(size=len(df))
    df["z"] = rng.normal(size=30)[df.firm]
    df["off"] = np.log(rng.uniform(1e3, 1e5, size=len(df)))
    y = rng.poisson(np.exp(df.off + 0.3 * df.x - 0.2 * df.z)).astype(float)
    kw = {"dims": ["firm", "year"], "offset": "off"}
    if l1_ratio:
        kw.update(alpha=1e-4, l1_ratio=l1_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        e32 = PanelPoissonRegressor(dtype=np.float32, **kw).fit(df, y)
    e64 = PanelPoissonRegressor(**kw).fit(df, y)
    assert e32.converged_ and e32.n_iter_ <= 6
    np.testing.assert_allclose(e32.coef_, e64.coef_, rtol=1e-4, atol=1e-6)
    if not l1_ratio:
        ref = sm.GLM(
            y, sm.add_constant(df[["x", "z"]]), family=sm.families.Poisson(), offset=df.off
        ).fit(tol=1e-14)
        np.testing.assert_allclose(e64.coef_, ref.params[1:], rtol=1e-9)


def test_timestamp_in_a_table_with_gaps_is_centred():
    """A table keyed on (firm, year) of an unbalanced panel has gaps; the shift is
    the mean of the rows it has, not of a layout whose gaps hold zeros."""
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    rows = [(f, t) for f in range(40) for t in range(10) if not (f == 39 and t > 0)]
    X = pd.DataFrame(rows, columns=["firm", "year"])
    X["x"] = rng.normal(size=len(X))
    ts = 1.7e9 + rng.uniform(0, 60, size=len(X))
    y = rng.poisson(np.exp(0.2 + 0.02 * (ts - 1.7e9 - 30) + 0.3 * X.x)).astype(float)
    ref = sm.GLM(y, sm.add_constant(np.c_[X.x, ts - 1.7e9]), family=sm.families.Poisson()).fit(
        tol=1e-14
    )
    table = X[["firm", "year"]].assign(ts=ts)
    design = PanelDesign(["firm", "year"], balanced=False, tables={("firm", "year"): table})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = make_pipeline(design, PanelPoissonRegressor()).fit(X, y)[-1]
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-8)
    np.testing.assert_allclose(np.asarray(est.bse_)[1:], ref.bse[1:], rtol=1e-6)
