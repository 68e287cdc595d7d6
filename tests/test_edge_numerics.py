"""Edge cases of the numerics: degenerate scores, models without coefficients,
many dimensions, strided operands and covariates of extreme magnitude."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, gammaln, xlogy

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm._engine import compiled as _compiled
from panelglm._engine.description import Description
from panelglm._model.terms import NUMPY_MAX_NDIM

# --------------------------------------------------- models without coefficients


def _offset_frame(seed=0, n_i=8, n_t=5):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"i": np.repeat(np.arange(n_i), n_t), "t": np.tile(np.arange(n_t), n_i)})
    df["off"] = rng.normal(scale=0.5, size=len(df))
    df["z"] = 0.0  # a covariate that is dropped as collinear with nothing
    df["m"] = rng.integers(1, 5, size=len(df)).astype(float)
    return df, rng


@pytest.mark.parametrize("covariates", [[], ["z"]])
def test_poisson_offset_only_model_is_the_offsets_closed_form(covariates):
    """No intercept and no covariate (or one dropped): the fit is the offset's."""
    df, rng = _offset_frame()
    off = df["off"].to_numpy()
    y = rng.poisson(np.exp(off)).astype(float)
    data = PanelDesign(dims=["i", "t"], covariates=covariates).fit_transform(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the collinear column's warning
        est = PanelPoissonRegressor(offset="off", fit_intercept=False).fit(data, y)
    mu = np.exp(off)
    assert est.coef_.shape == (len(covariates),) and np.isnan(est.coef_).all()
    assert est.intercept_ == 0.0 and est.converged_
    np.testing.assert_allclose(est.predict(data), mu, rtol=1e-14)
    deviance = 2 * np.sum(xlogy(y, y / mu) - (y - mu))
    loglik = np.sum(y * off - mu - gammaln(y + 1))
    assert est.deviance_ == pytest.approx(deviance, rel=1e-12)
    assert est.loglik_ == pytest.approx(loglik, rel=1e-12)
    assert est.bse_.shape == (len(covariates),)
    assert len(est.summary()) == len(covariates)


@pytest.mark.parametrize("cov_type", ["nonrobust", "robust", "cluster"])
def test_linear_and_logit_models_without_coefficients(cov_type):
    df, rng = _offset_frame(1)
    data = PanelDesign(dims=["i", "t"], covariates=[]).fit_transform(df)
    y = rng.normal(size=len(df))
    kw = {"cov_type": cov_type, "cluster": "i" if cov_type == "cluster" else None}
    lin = PanelLinearRegressor(fit_intercept=False, **kw).fit(data, y)
    assert lin.coef_.size == 0 and lin.bse_.size == 0
    assert lin.deviance_ == pytest.approx(np.sum(y**2), rel=1e-12)
    np.testing.assert_array_equal(lin.predict(data), 0.0)
    m = df["m"].to_numpy()
    k = rng.binomial(m.astype(int), 0.3).astype(float)
    logit = PanelLogitRegressor(trials="m", fit_intercept=False, **kw).fit(data, k)
    assert logit.coef_.size == 0 and logit.summary().empty
    # p = 1/2 in every cell
    deviance = 2 * np.sum(xlogy(k, k / (m / 2)) + xlogy(m - k, (m - k) / (m / 2)))
    assert logit.deviance_ == pytest.approx(deviance, rel=1e-12)
    np.testing.assert_allclose(logit.predict(data), m * expit(0.0), rtol=1e-15)


def test_exponential_offset_only_model():
    df, rng = _offset_frame(2)
    off = df["off"].to_numpy()
    T = rng.exponential(size=len(df)) + 0.1
    data = PanelDesign(dims=["i", "t"], covariates=[]).fit_transform(df)
    est = PanelExponentialRegressor(offset="off", fit_intercept=False).fit(data, T)
    # Every duration an event, hazard exp(off): log L = sum(off - exp(off) T).
    assert est.loglik_ == pytest.approx(np.sum(off - np.exp(off) * T), rel=1e-12)
    np.testing.assert_allclose(est.predict(data), np.exp(-off), rtol=1e-14)


# ---------------------------------------------------- score against a constant y


def _fitted(est, family, seed=3):
    df, rng = _offset_frame(seed)
    df["x"] = rng.normal(size=len(df))
    data = PanelDesign(dims=["i", "t"], covariates=["x"]).fit_transform(df)
    eta = -0.2 + 0.5 * df["x"].to_numpy()
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family == "binomial":
        y = rng.binomial(1, expit(eta)).astype(float)
    else:
        y = eta + rng.normal(size=len(df))
    return est.fit(data, y), data, y


@pytest.mark.parametrize(
    ("est", "family", "y_const"),
    [
        (PanelPoissonRegressor(), "poisson", 0.0),
        (PanelPoissonRegressor(), "poisson", 3.0),
        (PanelLogitRegressor(), "binomial", 0.0),
        (PanelLogitRegressor(), "binomial", 1.0),
        (PanelLinearRegressor(), "gaussian", 0.0),
        (PanelLinearRegressor(), "gaussian", 2.5),
    ],
)
def test_score_of_a_constant_y_follows_r2_score_force_finite(est, family, y_const):
    """The constant reference fits exactly: 0.0 for an imperfect prediction, as r2_score."""
    from sklearn.metrics import r2_score

    est, data, _ = _fitted(est, family)
    y = np.full(data.n_rows, y_const)
    w = np.linspace(0.5, 2.0, data.n_rows)
    assert r2_score(y, est.predict(data)) == 0.0  # scikit-learn's convention
    assert est.score(data, y) == 0.0
    assert est.score(data, y, sample_weight=w) == 0.0


def test_score_of_a_perfect_prediction_of_a_constant_is_one():
    from sklearn.metrics import r2_score

    df, _ = _offset_frame(4)
    data = PanelDesign(dims=["i", "t"], covariates=[]).fit_transform(df)
    y = np.zeros(data.n_rows)
    lin = PanelLinearRegressor(fit_intercept=False).fit(data, y + np.linspace(-1, 1, len(y)))
    assert r2_score(y, lin.predict(data)) == 1.0
    assert lin.score(data, y) == 1.0
    # A level whose counts are all zero is predicted 0 (separated): exactly right there.
    df["y"] = np.where(df["i"] == 0, 0.0, 1.0 + df["t"])
    est = PanelPoissonRegressor(dims=["i", "t"], fixed_effects=["i"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the separation warning
        est.fit(df[["i", "t"]], df["y"])
    zero = df[df["i"] == 0]
    np.testing.assert_array_equal(est.predict(zero[["i", "t"]]), 0.0)
    assert est.score(zero[["i", "t"]], zero["y"]) == 1.0


@pytest.mark.parametrize("censored", [True, False])
def test_exponential_score_when_a_constant_hazard_fits_exactly(censored):
    """All censored (hazard 0), or equal durations that are all events."""
    df, rng = _offset_frame(5)
    df["x"] = rng.normal(size=len(df))
    df["event"] = 1.0
    data = PanelDesign(dims=["i", "t"], covariates=["x"]).fit_transform(df)
    est = PanelExponentialRegressor(event="event").fit(data, rng.exponential(size=len(df)))
    df["event"] = 0.0 if censored else 1.0
    data = PanelDesign(dims=["i", "t"], covariates=["x"]).fit_transform(df)
    assert est.score(data, np.full(len(df), 2.0)) == 0.0


# ------------------------------------------------------------- many dimensions


def _many_dims_frame(n_dims, seed=6):
    """Four two-level dims, the rest single-level: 16 cells whatever ``n_dims``."""
    rng = np.random.default_rng(seed)
    sizes = [2] * 4 + [1] * (n_dims - 4)
    codes = np.array(list(itertools.product(*[range(n) for n in sizes])))
    dims = [f"d{a}" for a in range(n_dims)]
    df = pd.DataFrame(codes, columns=dims)
    df["x"] = 0.7 * df["d0"] - 0.2 * df["d1"] + 0.3 * df["d0"] * df["d1"]  # along d0, d1
    df["z"] = rng.normal(size=len(df))  # along every dim
    y = rng.poisson(np.exp(1.0 + 0.3 * df["x"] - 0.2 * df["z"])).astype(float)
    return df, dims, y


class _SweepSpy:
    """Stands in for the compiled module, counting its passes."""

    def __init__(self, sweep):
        self.calls, self._sweep = 0, sweep

    def sweep(self, *args):
        self.calls += 1
        return self._sweep.sweep(*args)

    def tally(self, *args):  # not a pass over the design: not counted
        return self._sweep.tally(*args)


@pytest.mark.skipif(
    not _compiled.enabled(), reason="the compiled sweep is not built or switched off"
)
@pytest.mark.parametrize("n_dims", [_compiled.MAX_DIMS, _compiled.MAX_DIMS + 1, 40])
def test_panels_beyond_the_sweeps_dims_fall_back_to_numpy(n_dims, monkeypatch):
    import statsmodels.api as sm

    df, dims, y = _many_dims_frame(n_dims)
    spy = _SweepSpy(_compiled._sweep)
    monkeypatch.setattr(_compiled, "_sweep", spy)
    est = PanelPoissonRegressor(dims=dims).fit(df, y)
    assert (spy.calls > 0) == (n_dims <= _compiled.MAX_DIMS)
    ref = sm.GLM(y, sm.add_constant(df[["x", "z"]].to_numpy()), family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    np.testing.assert_allclose([est.intercept_, *est.coef_], ref.params, rtol=1e-8)
    np.testing.assert_allclose(est.bse_.to_numpy(), ref.bse, rtol=1e-6)
    monkeypatch.setenv("PANELGLM_NUMPY_PASS", "1")
    numpy_pass = PanelPoissonRegressor(dims=dims).fit(df, y)
    np.testing.assert_allclose(numpy_pass.coef_, est.coef_, rtol=1e-10)


def test_sweep_limits_match_the_compiled_source():
    """The Python side checks the C side's limits before it writes a description."""
    header = (Path(_compiled.__file__).parent / "_sweep_simd.h").read_text()
    defined = dict(re.findall(r"#define (MAX[A-Z]) (\d+)", header))
    assert int(defined["MAXD"]) == _compiled.MAX_DIMS
    assert int(defined["MAXR"]) == _compiled._LIMITS[_compiled.ROW]
    assert int(defined["MAXC"]) == _compiled._LIMITS[_compiled.DOT]


@pytest.mark.skipif(NUMPY_MAX_NDIM != 64, reason="numpy 1 arrays have at most 32 axes")
def test_a_panel_of_63_dims_fits_and_64_is_explained():
    df, dims, y = _many_dims_frame(63)
    est = PanelPoissonRegressor(dims=dims).fit(df, y)
    ref = PanelPoissonRegressor(dims=dims[:4]).fit(df.drop(columns=dims[4:]), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)
    df, dims, y = _many_dims_frame(64)
    with pytest.raises(ValueError, match="panel has 64 dimensions; panelglm fits at most 63"):
        PanelPoissonRegressor(dims=dims).fit(df, y)


# ---------------------------------------------------- operands the sweep cannot read


def _packed(n, seed=7):
    """A packed record array: its float64 fields are at odd byte offsets and strides."""
    rng = np.random.default_rng(seed)
    fields = [("flag", "i1"), ("y", "f8"), ("w", "f8"), ("x", "f8"), ("off", "f8")]
    rec = np.zeros(n, dtype=np.dtype(fields, align=False))
    rec["x"] = rng.normal(size=n)
    rec["off"] = rng.normal(scale=0.2, size=n)
    rec["y"] = rng.poisson(np.exp(0.3 * rec["x"] + rec["off"]))
    rec["w"] = rng.uniform(0.5, 2.0, size=n)
    assert rec["y"].strides == (33,) and not rec["y"].flags.aligned
    return rec


@pytest.mark.parametrize("cls", [PanelPoissonRegressor, PanelLinearRegressor])
def test_fields_of_a_packed_record_array_fit_as_their_copies(cls):
    rec = _packed(60)
    df = pd.DataFrame({"i": np.repeat(np.arange(10), 6), "t": np.tile(np.arange(6), 10)})
    df["x"], df["off"] = rec["x"], rec["off"]
    kw = {"offset": "off"} if cls is PanelPoissonRegressor else {}
    est = cls(dims=["i", "t"], **kw).fit(df, rec["y"], sample_weight=rec["w"])
    ref = cls(dims=["i", "t"], **kw).fit(df, rec["y"].copy(), sample_weight=rec["w"].copy())
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-13)
    assert est.score(df, rec["y"], sample_weight=rec["w"]) == pytest.approx(
        ref.score(df, rec["y"].copy(), sample_weight=rec["w"].copy()), rel=1e-13
    )


def test_sweep_descriptions_copy_inputs_they_cannot_read_and_refuse_such_outputs():
    rec = _packed(12)
    field = rec["x"].reshape(3, 4)  # strides (132, 33) bytes
    desc = Description((3, 4))
    desc.operand(field)
    (read,) = desc.copies
    assert read.flags.aligned and read.strides == (32, 8)
    np.testing.assert_array_equal(read, field)
    assert np.shares_memory(desc.operands[desc.words[0]], read)  # the copy is what it names
    with pytest.raises(ValueError, match="sweep outputs"):
        desc.operand(field, output=True)


# ------------------------------------------------------ covariates of extreme magnitude


@pytest.mark.parametrize("scale", [1e154, 1e200, 1e-160, 1e-200])
def test_covariates_of_extreme_magnitude_are_refused_by_name(scale):
    """Not scipy's 'infs or NaNs', nor a collinearity with the intercept."""
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    df = pd.DataFrame({"i": np.arange(200), "ok": rng.normal(size=200)})
    df["tiny_or_huge"] = rng.normal(size=200)
    y = rng.poisson(np.exp(0.3 * df["tiny_or_huge"] + 0.1 * df["ok"])).astype(float)
    extreme = df.assign(tiny_or_huge=df["tiny_or_huge"] * scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CollinearityWarning either
        with pytest.raises(ValueError, match=r"covariate 'tiny_or_huge' has values of magni"):
            PanelPoissonRegressor(dims=["i"]).fit(extreme, y)
    # Rescaled as the message says, the coefficient is statsmodels' times the scale.
    top = np.max(np.abs(extreme["tiny_or_huge"]))
    est = PanelPoissonRegressor(dims=["i"]).fit(
        extreme.assign(tiny_or_huge=extreme["tiny_or_huge"] / top), y
    )
    ref = sm.GLM(y, sm.add_constant(df[["ok", "tiny_or_huge"]].to_numpy()), sm.families.Poisson())
    coef = dict(zip(est.coef_names_, est.coef_, strict=True))
    assert coef["tiny_or_huge"] / top * scale == pytest.approx(ref.fit().params[2], rel=1e-8)
