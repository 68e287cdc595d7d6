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

import numpy as np
from scipy.special import digamma, polygamma

# theta beyond this is the Poisson limit (no overdispersion left to estimate).
THETA_MAX = 1e8
THETA_MIN = 1e-8
# Iterations of the one-dimensional root search.
MAX_STEPS = 200


def _derivatives(t: float, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """First and second derivatives of the log-likelihood in ``t = log(theta)``."""
    theta = np.exp(t)
    tm = theta + mu
    # log(theta) + 1 - log(theta + mu) - (y + theta) / (theta + mu), written
    # without the cancellation of its first and third terms.
    d1 = digamma(y + theta) - digamma(theta) - np.log1p(mu / theta) + (mu - y) / tm
    d2 = polygamma(1, y + theta) - polygamma(1, theta) + (mu * mu + theta * y) / (theta * tm * tm)
    g = float(np.dot(w, d1))
    h = float(np.dot(w, d2))
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
    t_min, t_max = np.log(THETA_MIN), np.log(THETA_MAX)
    t0 = t = float(np.clip(np.log(theta0), t_min, t_max))
    g = _derivatives(t, y, mu, w)[0]
    # A bracket of the derivative's sign change, widened from the start
    # outward (the derivative at the bounds themselves is all rounding).
    lo = hi = t
    step = 1.0
    while True:
        if g > 0:
            lo, t = t, t + step
            if t > t_max:
                return THETA_MAX
        else:
            hi, t = t, t - step
            if t < t_min:
                return THETA_MIN
        new_g = _derivatives(t, y, mu, w)[0]
        if (new_g > 0) != (g > 0):
            lo, hi = (lo, t) if g > 0 else (t, hi)
            break
        g, step = new_g, 2.0 * step
    t = t0  # an end of the bracket: near the root once the rounds settle
    for _ in range(MAX_STEPS):
        g, h = _derivatives(t, y, mu, w)
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
