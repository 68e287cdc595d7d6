"""Families: derivatives, deviance and overflow safety, cell by cell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_panel
from scipy import stats

from panelglm import PanelPoissonRegressor
from panelglm._model.families import BINOMIAL, GAUSSIAN, POISSON, full_loglik
from panelglm.exceptions import SeparationWarning

FAMILIES = [GAUSSIAN, POISSON, BINOMIAL]


def sample(family, rng, n=50):
    eta = rng.normal(size=n)
    m = rng.integers(1, 5, size=n).astype(float)
    if family is BINOMIAL:
        y = rng.binomial(m.astype(int), 0.4).astype(float)
    elif family is POISSON:
        y = rng.poisson(2.0, size=n).astype(float)
    else:
        y = rng.normal(size=n)
    return y, eta, m


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_derivatives_match_finite_differences(family):
    y, eta, m = sample(family, np.random.default_rng(0))
    g, h = family.grad_hess(y, eta, m)
    eps = 1e-6
    f_plus, f_minus = family.loglik(y, eta + eps, m), family.loglik(y, eta - eps, m)
    np.testing.assert_allclose(g, (f_plus - f_minus) / (2 * eps), rtol=1e-7, atol=1e-8)
    g_plus, _ = family.grad_hess(y, eta + eps, m)
    g_minus, _ = family.grad_hess(y, eta - eps, m)
    np.testing.assert_allclose(h, (g_plus - g_minus) / (2 * eps), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_deviance_is_twice_loglik_ratio(family):
    y, eta, m = sample(family, np.random.default_rng(1))
    mu = family.mean(eta, m)
    # Saturated model: mu = y (clipped inside the support for the log link cases).
    sat = np.clip(y, 1e-300, None) if family is not GAUSSIAN else y
    if family is BINOMIAL:
        p_sat = np.clip(y / m, 1e-15, 1 - 1e-15)
        eta_sat = np.log(p_sat / (1 - p_sat))
    elif family is POISSON:
        eta_sat = np.log(sat)
    else:
        eta_sat = y
    dev = 2 * (family.loglik(y, eta_sat, m) - family.loglik(y, eta, m))
    np.testing.assert_allclose(family.unit_deviance(y, mu, m), dev, rtol=1e-6, atol=1e-6)


def test_full_loglik_matches_scipy():
    rng = np.random.default_rng(2)
    y, eta, m = sample(POISSON, rng)
    w = rng.uniform(0.5, 2, size=y.size)
    expected = np.sum(w * stats.poisson.logpmf(y, np.exp(eta)))
    assert full_loglik(POISSON, y, eta, m, w) == pytest.approx(expected, rel=1e-12)
    y, eta, m = sample(BINOMIAL, rng)
    expected = np.sum(w * stats.binom.logpmf(y, m, 1 / (1 + np.exp(-eta))))
    assert full_loglik(BINOMIAL, y, eta, m, w) == pytest.approx(expected, rel=1e-12)
    y, eta, m = sample(GAUSSIAN, rng)
    sigma = np.sqrt(np.sum(w * (y - eta) ** 2) / w.sum())
    expected = np.sum(w * stats.norm.logpdf(y, eta, sigma))
    assert full_loglik(GAUSSIAN, y, eta, m, w) == pytest.approx(expected, rel=1e-12)


def test_binomial_is_overflow_safe_in_both_tails():
    eta = np.array([-800.0, -700.0, -40.0, 40.0, 700.0, 800.0])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    m = np.ones_like(y)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        f = BINOMIAL.loglik(y, eta, m)
        g, h = BINOMIAL.grad_hess(y, eta, m)
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    # log(1 + e^V) = V for large V, e^V for very negative V: exact in both tails.
    np.testing.assert_allclose(f[3:], y[3:] * eta[3:] - eta[3:], atol=1e-12)
    np.testing.assert_allclose(h[2], -np.exp(-40.0), rtol=1e-12)  # no cancellation to 0


def test_poisson_overflow_gives_inf_not_a_warning():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        f = POISSON.loglik(np.array([1.0]), np.array([800.0]), 1.0)
    assert f[0] == -np.inf


@pytest.mark.parametrize(
    "family, y, m, ok",
    [
        (POISSON, [0.0, 2.5], 1.0, True),
        (POISSON, [-1.0], 1.0, False),
        (BINOMIAL, [0.0, 0.3, 1.0], 1.0, True),
        (BINOMIAL, [3.0], np.array([2.0]), False),
        (BINOMIAL, [-0.1], 1.0, False),
    ],
)
def test_response_range(family, y, m, ok):
    assert (family.check_y(np.asarray(y), m) is None) is ok


def test_a_family_is_known_by_its_fields_not_its_name():
    """Poisson under another name is still fitted, separated and reported as Poisson.

    Separation, the compiled sweep and the statistics read the family's
    declared properties; none of them looks at its name.
    """
    renamed = dataclasses.replace(POISSON, name="counts")

    class Counts(PanelPoissonRegressor):
        family = renamed

    df, dims, _, y = make_panel((6, 5), seed=4)
    y = y.copy()
    y[(df["d0"] == df["d0"].iloc[0]).to_numpy()] = 0.0  # one level all zero: separated
    X = df[[*dims, "x_1", "off"]]
    fits = []
    for cls in (PanelPoissonRegressor, Counts):
        with pytest.warns(SeparationWarning):
            fits.append(cls(dims=dims, fixed_effects=["d0"], offset="off").fit(X, y))
    poisson, counts = fits
    np.testing.assert_array_equal(counts.separated_rows_, poisson.separated_rows_)
    assert counts.separated_rows_.sum() == 5
    np.testing.assert_allclose(counts.coef_, poisson.coef_, rtol=1e-12, equal_nan=True)
    assert counts.loglik_ == pytest.approx(poisson.loglik_, rel=1e-12)
    assert counts.scale_ == 1.0
