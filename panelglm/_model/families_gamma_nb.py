"""The gamma and negative binomial (NB2) families, both with the log link.

Neither link is canonical: the observed curvature ``h`` depends on ``y``, so
each family declares its expected information (``expected_curvature``) for
the model-based covariance. Both log-likelihoods are concave in the linear
predictor for admissible ``y`` (``-h >= 0``), so Newton on the observed
Hessian converges to the same optimum as statsmodels' IRLS.

The negative binomial family depends on its ``theta`` (the variance is
``mu + mu^2 / theta``, statsmodels' ``alpha = 1 / theta``):
:func:`negative_binomial` makes one per value. Its functions are written in
``eta - log(theta)`` so that no ``exp(eta)`` is formed where it could
overflow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import expit, gammaln, xlogy

from .families import POISSON
from .family import Array, Family, _bsum, _log1pexp, _offset_shift, _safe_exp

# Newton steps for the intercept-only negative binomial model with an offset
# (no closed form); it is concave in the intercept and starts at Poisson's.
NULL_NEWTON_STEPS = 50


def _log_mean(eta: Array, m: Array) -> Array:
    return _safe_exp(eta)


# --- Gamma (log link) ---------------------------------------------------------


def _gamma_f(y: Array, eta: Array, m: Array) -> Array:
    # The exponential log-density (gamma at unit scale): -y / mu - log(mu).
    return -y * _safe_exp(-eta) - eta


def _gamma_gh(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
    r = y * _safe_exp(-eta)
    return r - 1.0, -r


def _log_y(y: Array) -> Array:
    # y > 0 wherever a cell has weight; the filler of a missing cell (0) gets
    # a finite stand-in, so its zero weight cancels it without a NaN.
    return np.log(np.where(y > 0, y, 1.0))


def _gamma_dev(y: Array, mu: Array, m: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = y / mu
        return 2.0 * ((ratio - 1.0) - np.log(ratio))


def _gamma_saturated(y: Array, m: Array) -> Array:
    return -1.0 - _log_y(y)


def _gamma_const(y: Array, m: Array) -> Array:
    return np.zeros_like(y, dtype=np.float64)


def _gamma_variance(mu: Array, m: Array) -> Array:
    return mu * mu


def _gamma_pearson(y: Array, mu: Array, m: Array) -> Array:
    # (y - mu) / mu, not over sqrt(mu^2): mu^2 underflows before mu does.
    return (y - mu) / mu


def _gamma_scaled(y: Array, eta: Array, m: Array, scale: float) -> Array:
    # statsmodels' Gamma.loglike_obs with shape nu = 1 / scale:
    # nu log(nu y / mu) - nu y / mu - lgamma(nu) - log y.
    nu = 1.0 / scale
    log_y = _log_y(y)
    return nu * (np.log(nu) + log_y - eta) - nu * y * _safe_exp(-eta) - gammaln(nu) - log_y


def _gamma_expected(eta: Array, m: Array) -> Array:
    return np.broadcast_to(np.float64(1.0), np.shape(eta))


def _gamma_null(y: Array, off: Array, m: Array, w: Array) -> float:
    # The score sum w (y / mu - 1) is zero at mu = exp(b + off) with
    # exp(b) = sum w y exp(-off) / sum w; the smallest offset is taken out
    # of the exponential so that no term overflows.
    off, shift = _offset_shift(off, np.min)
    num = _bsum(w, y * _safe_exp(-(off - shift)), y.shape)
    den = _bsum(w, 1.0, y.shape)
    if num > 0 and den > 0 and np.isfinite(num):
        return float(np.log(num) - np.log(den)) - shift
    return -shift


def _gamma_check(y: Array, m: Array) -> str | None:
    if np.any(y <= 0):
        return "must be positive for the gamma family"
    return None


GAMMA = Family(
    name="gamma",
    loglik=_gamma_f,
    grad_hess=_gamma_gh,
    mean=_log_mean,
    unit_deviance=_gamma_dev,
    loglik_const=_gamma_const,
    null_intercept=_gamma_null,
    check_y=_gamma_check,
    link="log",
    dispersion="pearson",
    variance=_gamma_variance,
    pearson_residual=_gamma_pearson,
    scaled_loglik=_gamma_scaled,
    expected_curvature=_gamma_expected,
    saturated=_gamma_saturated,
)


# --- Negative binomial NB2 (log link), theta fixed ------------------------------


@lru_cache(maxsize=64)
def negative_binomial(theta: float) -> Family:
    """The NB2 family of the given ``theta`` (variance ``mu + mu^2 / theta``).

    Parameters
    ----------
    theta : float
        The shape (inverse dispersion), positive; statsmodels' ``alpha`` is
        ``1 / theta``.

    Returns
    -------
    Family
    """
    theta = float(theta)
    log_theta = float(np.log(theta))

    def f(y: Array, eta: Array, m: Array) -> Array:
        # y eta - (y + theta) log(theta + mu), less its value at mu = 0 ...
        return y * eta - (y + theta) * _log1pexp(eta - log_theta)

    def grad_hess(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
        # p = mu / (theta + mu) and 1 - p, each to full precision in its tail.
        p, q = expit(eta - log_theta), expit(log_theta - eta)
        yt = y + theta
        return y - yt * p, -yt * p * q

    def dev(y: Array, mu: Array, m: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(y > 0, y / mu, 1.0)
            # log((y + theta) / (mu + theta)) as a log1p: exact near the fit.
            tail = (y + theta) * np.log1p((y - mu) / (mu + theta))
        return 2.0 * (xlogy(y, ratio) - tail)

    def saturated(y: Array, m: Array) -> Array:
        return xlogy(y, y) - (y + theta) * np.log1p(y / theta)

    def const(y: Array, m: Array) -> Array:
        # ... so the full log-likelihood adds this term of y alone.
        return gammaln(y + theta) - gammaln(theta) - gammaln(y + 1.0) - y * log_theta

    def expected(eta: Array, m: Array) -> Array:
        return theta * expit(eta - log_theta)  # theta mu / (theta + mu)

    def null(y: Array, off: Array, m: Array, w: Array) -> float:
        b = POISSON.null_intercept(y, off, m, w)
        off = np.asarray(off, dtype=np.float64)
        if off.size <= 1 or float(np.ptp(off)) == 0.0 or _bsum(w, y, y.shape) <= 0:
            return b  # a constant mean: the weighted mean of y, as Poisson's
        for _ in range(NULL_NEWTON_STEPS):
            g, h = grad_hess(y, b + off, m)
            step = _bsum(w, g, y.shape) / _bsum(w, -h, y.shape)
            if not np.isfinite(step):
                break
            b += step
            if abs(step) <= 1e-13 * (1.0 + abs(b)):
                break
        return float(b)

    def check(y: Array, m: Array) -> str | None:
        if np.any(y < 0):
            return "must be non-negative for the negative binomial family"
        return None

    return Family(
        name="negative binomial",
        loglik=f,
        grad_hess=grad_hess,
        mean=_log_mean,
        unit_deviance=dev,
        loglik_const=const,
        null_intercept=null,
        check_y=check,
        link="log",
        separation="lower",
        expected_curvature=expected,
        saturated=saturated,
    )
