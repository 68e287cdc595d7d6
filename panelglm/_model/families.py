"""Exponential-family log-likelihoods as small immutable values.

A family knows the per-cell log-likelihood ``f``, its first and second
derivatives with respect to the linear predictor (``g`` and ``h``), the mean,
the unit deviance and which responses are admissible. It works on arrays of
any shape and knows nothing of panels or designs.

Every function takes the response ``y``, the linear predictor ``eta`` and
``m``, the number of trials of the binomial family (``1`` elsewhere, where
it is ignored). Arrays broadcast against each other.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, gammaln, xlogy

from .family import (
    SWEEP_BINOMIAL,
    SWEEP_GAUSSIAN,
    SWEEP_POISSON,
    Array,
    Family,
    _bsum,
    _log1pexp,
    _offset_shift,
    _safe_exp,
)

__all__ = [
    "BINOMIAL",
    "FAMILIES",
    "GAUSSIAN",
    "POISSON",
    "Family",
    "full_loglik",
    "pearson_chi2",
    "profiled_gaussian_loglik",
]


# --- Gaussian (identity link) ------------------------------------------------


def _gaussian_f(y: Array, eta: Array, m: Array) -> Array:
    r = y - eta
    return -0.5 * r * r


def _gaussian_gh(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
    return y - eta, np.broadcast_to(np.float64(-1.0), np.shape(eta))


def _gaussian_mean(eta: Array, m: Array) -> Array:
    return eta


def _gaussian_dev(y: Array, mu: Array, m: Array) -> Array:
    r = y - mu
    return r * r


def _gaussian_saturated(y: Array, m: Array) -> Array:
    return np.zeros_like(y)


def _zero_const(y: Array, m: Array) -> Array:
    return np.zeros_like(y)


def _gaussian_check(y: Array, m: Array) -> str | None:
    return None


def _gaussian_null(y: Array, off: Array, m: Array, w: Array) -> float:
    return (_bsum(w, y, y.shape) - _bsum(w, off, y.shape)) / _bsum(w, 1.0, y.shape)


# --- Poisson (log link) ------------------------------------------------------


def _poisson_f(y: Array, eta: Array, m: Array) -> Array:
    return y * eta - _safe_exp(eta)


def _poisson_gh(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
    mu = _safe_exp(eta)
    return y - mu, -mu


def _poisson_mean(eta: Array, m: Array) -> Array:
    return _safe_exp(eta)


def _poisson_dev(y: Array, mu: Array, m: Array) -> Array:
    # y log(y / mu), not y log y - y log mu: with counts of 1e13 each of
    # those is 3e14 and their difference, about 1, would keep two digits.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(y > 0, y / mu, 1.0)
    return 2.0 * (xlogy(y, ratio) - (y - mu))


def _poisson_saturated(y: Array, m: Array) -> Array:
    return xlogy(y, y) - y


def _poisson_const(y: Array, m: Array) -> Array:
    return -gammaln(y + 1.0)


def _has_values(y: Array) -> bool:
    # A Dask array's size is NaN (true) where its chunks are unknown (masked).
    size = getattr(y, "size", None)
    return bool(np.size(y) if size is None else size)


def _below_zero(y: Array) -> bool:
    # The smallest value, without a boolean array of y's size (y is finite here).
    return _has_values(y) and bool(np.min(y) < 0)


def _poisson_check(y: Array, m: Array) -> str | None:
    if _below_zero(y):
        return "must be non-negative for the Poisson family"
    return None


def _poisson_null(y: Array, off: Array, m: Array, w: Array) -> float:
    # log(sum w y) - log(sum w exp(off)), with the largest offset taken out of
    # the exponential: offsets beyond about +-709 (exposures in tiny or huge
    # units) neither overflow nor underflow, and the start stays finite.
    off, shift = _offset_shift(off, np.max)
    swy = _bsum(w, y, y.shape)
    denom = _bsum(w, _safe_exp(off - shift), y.shape)
    if swy > 0 and 0 < denom < np.inf:
        return float(np.log(swy) - np.log(denom)) - shift
    return -shift


def _wsum(x: Array, scratch: Array | None = None) -> float:
    """A sum accumulated in float64 whatever the dtype of ``x``."""
    return float(np.sum(x, dtype=np.float64))


def _poisson_fused(y, eta, m, w, curv, resid, derivs) -> float:
    """``sum(w f)`` of one chunk; writes the curvature ``w exp(eta)`` into ``curv``.

    The mean equals the curvature, so no residual is written: the gradient is
    ``X'(w y) - X'(curv)``. Everything happens in the two given buffers; in
    float64, ``sum(w y eta)`` is one BLAS dot product.
    """
    if w is None and eta.dtype == np.float64 and y.dtype == np.float64:
        lin = float(np.dot(y.reshape(-1), eta.reshape(-1)))
    else:
        np.multiply(y, eta, out=curv)
        if w is not None:
            curv *= w
        lin = _wsum(curv)
    with np.errstate(over="ignore"):
        np.exp(eta, out=curv)
    if w is not None:
        curv *= w
    return lin - _wsum(curv)


# --- Binomial (logit link) with m trials --------------------------------------


def _binomial_f(y: Array, eta: Array, m: Array) -> Array:
    return y * eta - m * _log1pexp(eta)


def _binomial_gh(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
    p = expit(eta)
    mp = m * p
    # p (1 - p) as expit(eta) * expit(-eta) keeps full relative precision
    # in both tails, where 1 - p would cancel to zero.
    return y - mp, -m * p * expit(-eta)


def _binomial_mean(eta: Array, m: Array) -> Array:
    return m * expit(eta)


def _binomial_dev(y: Array, mu: Array, m: Array) -> Array:
    return 2.0 * (xlogy(y, y) - xlogy(y, mu) + xlogy(m - y, m - y) - xlogy(m - y, m - mu))


def _binomial_saturated(y: Array, m: Array) -> Array:
    # f at the saturated fit p = y / m: y log y + (m - y) log(m - y) - m log m.
    return xlogy(y, y) + xlogy(m - y, m - y) - xlogy(m, m)


def _binomial_const(y: Array, m: Array) -> Array:
    return gammaln(m + 1.0) - gammaln(y + 1.0) - gammaln(m - y + 1.0)


def _binomial_null(y: Array, off: Array, m: Array, w: Array) -> float:
    # The logit model takes no offset, so the closed form ignores it.
    swy = _bsum(w, y, y.shape)
    swm = _bsum(w, m, y.shape)
    return float(np.log(swy / (swm - swy))) if 0 < swy < swm else 0.0


def _binomial_check(y: Array, m: Array) -> str | None:
    if _below_zero(y):
        return "must be non-negative for the binomial family"
    if _has_values(y) and (np.max(y) > m if np.ndim(m) == 0 else np.any(y > m)):
        return "must not exceed the number of trials (1 unless a trials column is given)"
    return None


GAUSSIAN = Family(
    name="gaussian",
    loglik=_gaussian_f,
    grad_hess=_gaussian_gh,
    mean=_gaussian_mean,
    unit_deviance=_gaussian_dev,
    loglik_const=_zero_const,
    null_intercept=_gaussian_null,
    check_y=_gaussian_check,
    link="identity",
    dispersion="profiled",
    sweep_code=SWEEP_GAUSSIAN,
    saturated=_gaussian_saturated,
)

POISSON = Family(
    name="poisson",
    loglik=_poisson_f,
    grad_hess=_poisson_gh,
    mean=_poisson_mean,
    unit_deviance=_poisson_dev,
    loglik_const=_poisson_const,
    null_intercept=_poisson_null,
    check_y=_poisson_check,
    link="log",
    separation="lower",
    sweep_code=SWEEP_POISSON,
    curvature_is_mean=True,
    fused=_poisson_fused,
    saturated=_poisson_saturated,
)

BINOMIAL = Family(
    name="binomial",
    loglik=_binomial_f,
    grad_hess=_binomial_gh,
    mean=_binomial_mean,
    unit_deviance=_binomial_dev,
    loglik_const=_binomial_const,
    null_intercept=_binomial_null,
    check_y=_binomial_check,
    link="logit",
    separation="both",
    sweep_code=SWEEP_BINOMIAL,
    saturated=_binomial_saturated,
)

# The families above, for listings (what the compiled sweep covers).
FAMILIES = (GAUSSIAN, POISSON, BINOMIAL)


def full_loglik(
    family: Family, y: Array, eta: Array, m: Array, w: Array | float, scale: float = 1.0
) -> float:
    """Weighted full log-likelihood, as statsmodels reports ``llf``.

    Weights act as frequency weights. With a profiled dispersion (Gaussian)
    the variance is at its maximum-likelihood value ``sum(w r^2) / sum(w)``;
    with a Pearson one (gamma) the likelihood is evaluated at ``scale``.

    Parameters
    ----------
    family : Family
        The family.
    y, eta, m : ndarray
        Response, linear predictor and trials, broadcastable to one shape.
    w : ndarray or float
        Cell weights.
    scale : float, default=1.0
        The estimated scale, for ``family.dispersion == "pearson"``.

    Returns
    -------
    float
        The log-likelihood.
    """
    w_b = np.broadcast_to(w, np.broadcast_shapes(np.shape(y), np.shape(eta)))
    sum_w = float(w_b.sum())
    if family.dispersion == "profiled":
        ssr = float(np.sum(w_b * family.unit_deviance(y, eta, m)))
        return profiled_gaussian_loglik(ssr, sum_w)
    if family.dispersion == "pearson":
        terms = family.scaled_loglik(y, eta, m, scale)
    else:
        terms = family.loglik(y, eta, m) + family.loglik_const(y, m)
    # Cells of zero weight (missing cells) may hold any value, even one that
    # makes their term nan; they must contribute exactly nothing.
    return float(np.sum(np.where(w_b > 0, w_b * terms, 0.0)))


def profiled_gaussian_loglik(ssr: float, sum_w: float) -> float:
    """Gaussian log-likelihood with the variance at its maximum ``ssr / sum_w``."""
    return -0.5 * sum_w * (np.log(2.0 * np.pi * ssr / sum_w) + 1.0)


def pearson_chi2(family: Family, y: Array, eta: Array, m: Array, w: Array | None) -> float:
    """Pearson's ``sum w (y - mu)^2 / V(mu)``, cells of zero weight left out.

    Parameters
    ----------
    family : Family
        A family with a :attr:`~Family.variance` function.
    y, eta, m : ndarray
        Response, linear predictor and trials, broadcastable to one shape.
    w : ndarray or None
        Cell weights (``None``: all one).

    Returns
    -------
    float
    """
    mu = family.mean(np.asarray(eta, dtype=np.float64), m)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The residual over the standard deviation, squared, in the family's
        # own form where it has one: (y - mu)^2 and V(mu) may both underflow.
        if family.pearson_residual is not None:
            r = family.pearson_residual(y, mu, m)
        else:
            r = (y - mu) / np.sqrt(family.variance(mu, m))
        r = r * r
    r = np.broadcast_to(r, np.shape(y))
    if w is None:
        return float(np.sum(r))
    return float(np.vdot(w, np.where(w > 0, r, 0.0)))
