"""The maximum-likelihood ``theta`` of the negative binomial (NB2) model given its means.

With the means ``mu`` held fixed, the log-likelihood in ``theta`` is one
dimensional: ``sum w [lgamma(y + theta) - lgamma(theta) + theta log theta
+ y log mu - (y + theta) log(theta + mu) - lgamma(y + 1)]``. Its root is
found in ``t = log(theta)`` by Newton's method kept inside a bracket of the
derivative's sign change (bisection where Newton leaves it). Alternated with
the coefficients' fit, this reaches the joint maximum: the expected cross
information of the coefficients and ``theta`` is zero, so the alternation
converges in a few rounds.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy.special import digamma, polygamma

# theta beyond this is the Poisson limit (no overdispersion left to estimate).
THETA_MAX = 1e8
THETA_MIN = 1e-8
# Iterations of the one-dimensional root search.
MAX_STEPS = 200
# Counts up to this value are tallied by value.
MAX_TALLY = 1 << 20


class _Terms:
    """The response's weighted terms, tallied by value when ``y`` holds small counts.

    The digamma and trigamma terms depend on ``y`` and ``theta`` only: for
    counts each distinct value is evaluated once per ``theta`` (as in
    :mod:`panelglm._model.statistics`), not once per cell.
    """

    def __init__(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> None:
        self.y, self.mu, self.w = y, mu, w
        self.values = self.counts = None
        if y.size and y.min() >= 0 and y.max() <= MAX_TALLY:
            ints = y.astype(np.int64)
            if np.array_equal(ints, y):
                self.counts = np.bincount(ints, weights=w)
                self.values = np.arange(self.counts.size, dtype=np.float64)

    def gamma_terms(self, theta: float) -> tuple[float, float]:
        """``sum w [psi(y + theta) - psi(theta)]`` and the same of ``psi'``."""
        y, w = (self.values, self.counts) if self.counts is not None else (self.y, self.w)
        d1 = digamma(y + theta) - digamma(theta)
        d2 = polygamma(1, y + theta) - polygamma(1, theta)
        return float(np.dot(w, d1)), float(np.dot(w, d2))

    def derivatives(self, t: float) -> tuple[float, float]:
        """First and second derivatives of the log-likelihood in ``t = log(theta)``."""
        y, mu, w = self.y, self.mu, self.w
        theta = float(np.exp(t))
        tm = theta + mu
        g1, h1 = self.gamma_terms(theta)
        # log(theta) + 1 - log(theta + mu) - (y + theta) / (theta + mu), written
        # without the cancellation of its first and third terms.
        g = g1 + float(np.dot(w, (mu - y) / tm - np.log1p(mu / theta)))
        h = h1 + float(np.dot(w, (mu * mu + theta * y) / (theta * tm * tm)))
        return theta * g, theta * theta * h + theta * g


def ml_theta(
    y: np.ndarray, mu: np.ndarray, w: np.ndarray | None, theta0: float, rtol: float = 1e-12
) -> float:
    """``theta`` maximising the NB2 likelihood of ``y`` with means ``mu``.

    Parameters
    ----------
    y, mu : ndarray
        Responses and fitted means, of one shape.
    w : ndarray or None
        Weights (``None``: all one); cells of zero weight are left out.
    theta0 : float
        Where the search starts (the last estimate).
    rtol : float, default=1e-12
        Tolerance on ``log(theta)``.

    Returns
    -------
    float
        In ``[THETA_MIN, THETA_MAX]``: the upper bound when the likelihood
        still increases up to it (no overdispersion: the Poisson limit).
    """
    shape = np.shape(y)
    y, mu = np.ravel(y), np.ravel(np.broadcast_to(mu, shape))
    if w is None:
        w = np.ones(y.size)
    else:
        w = np.ravel(np.broadcast_to(w, shape))
        keep = w > 0
        y, mu, w = y[keep], mu[keep], w[keep]
    # As theta grows the derivative tends to sum w (y - (y - mu)^2) / (2 theta^2):
    # without overdispersion at these means the likelihood increases to the
    # Poisson limit. (Evaluated directly at a large theta that derivative is
    # lost in the rounding of digamma's difference.)
    if float(np.dot(w, y - (y - mu) ** 2)) >= 0:
        return THETA_MAX
    return _root(_Terms(y, mu, w), theta0, rtol)


def ml_theta_by_passes(
    objective: Any, coef: np.ndarray, theta0: float, rtol: float = 1e-12
) -> float:
    """:func:`ml_theta` at the means of ``objective`` at ``coef``, its sums taken by passes.

    For a panel whose cells are not on the client (Dask): the sums over the
    response alone come from the objective's counts of ``y`` (or its slabs),
    those with the means from one pass of the objective's engine per
    evaluation of the derivatives; the search is :func:`ml_theta`'s.
    """
    if objective.chunk_sums(coef, _overdispersion)[0] >= 0:
        return THETA_MAX
    return _root(_PassTerms(objective, coef), theta0, rtol)


def _overdispersion(sub: Any, eta: np.ndarray) -> tuple[float]:
    """``sum w (y - (y - mu)^2)`` over a part's cells of positive weight."""
    with np.errstate(over="ignore"):
        mu = np.exp(eta)
    return (_wsum(sub, sub.y - (sub.y - mu) ** 2),)


def _wsum(sub: Any, values: np.ndarray) -> float:
    values = np.broadcast_to(values, sub.shape)
    if sub.w is None:
        return float(np.sum(values))
    return float(np.sum(np.where(sub.w > 0, sub.w * values, 0.0)))


def _mean_terms(theta: float, sub: Any, eta: np.ndarray) -> tuple[float, float]:
    """A part's sums with the means in the derivatives (see :meth:`_Terms.derivatives`)."""
    with np.errstate(over="ignore"):
        mu = np.exp(eta)
    y, tm = sub.y, theta + mu
    return (
        _wsum(sub, (mu - y) / tm - np.log1p(mu / theta)),
        _wsum(sub, (mu * mu + theta * y) / (theta * tm * tm)),
    )


def _digamma_terms(theta: float, y: np.ndarray, m: Any) -> np.ndarray:
    return digamma(y + theta) - digamma(theta)


def _trigamma_terms(theta: float, y: np.ndarray, m: Any) -> np.ndarray:
    return polygamma(1, y + theta) - polygamma(1, theta)


class _PassTerms:
    """:class:`_Terms`' derivatives with their sums over the cells taken by passes."""

    def __init__(self, objective: Any, coef: np.ndarray) -> None:
        self.objective, self.coef = objective, coef

    def derivatives(self, t: float) -> tuple[float, float]:
        theta = float(np.exp(t))
        obj = self.objective
        g1 = obj.response_sum(functools.partial(_digamma_terms, theta))
        h1 = obj.response_sum(functools.partial(_trigamma_terms, theta))
        g2, h2 = obj.chunk_sums(self.coef, functools.partial(_mean_terms, theta))
        g, h = g1 + g2, h1 + h2
        return theta * g, theta * theta * h + theta * g


def _root(terms: Any, theta0: float, rtol: float) -> float:
    """The search of :func:`ml_theta`: a bracket of the derivative's sign change, then Newton."""
    t_min, t_max = np.log(THETA_MIN), np.log(THETA_MAX)
    t0 = t = float(np.clip(np.log(theta0), t_min, t_max))
    g = terms.derivatives(t)[0]
    # A bracket of the derivative's sign change, widened from the start
    # outward (the derivative at the bounds themselves is all rounding).
    lo = hi = t
    step = 1.0
    while True:
        # A step is cut at the bound, so that a root between the last point
        # and the bound is bracketed, not skipped to the bound.
        if g > 0:
            if t >= t_max:
                return THETA_MAX
            lo, t = t, min(t + step, t_max)
        else:
            if t <= t_min:
                return THETA_MIN
            hi, t = t, max(t - step, t_min)
        new_g = terms.derivatives(t)[0]
        if (new_g > 0) != (g > 0):
            lo, hi = (lo, t) if g > 0 else (t, hi)
            break
        g, step = new_g, 2.0 * step
    t = t0  # an end of the bracket: near the root once the rounds settle
    for _ in range(MAX_STEPS):
        g, h = terms.derivatives(t)
        if g > 0:
            lo = t
        else:
            hi = t
        new = t - g / h if h < 0 else None
        if new is None or not lo < new < hi:
            new = 0.5 * (lo + hi)  # Newton left the bracket: bisect
        done = abs(new - t) <= rtol * max(1.0, abs(t)) or hi - lo <= rtol * max(1.0, abs(t))
        t = new
        if done:
            break
    return float(np.exp(t))
