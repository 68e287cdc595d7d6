"""The scale of a fit, as its family declares it, and the likelihood at an estimated scale.

A family's ``dispersion`` says whether the scale is fixed at one, the
Gaussian variance (profiled out of the likelihood, ``deviance / (n - k)`` for
the covariance), or estimated from Pearson's chi-square as statsmodels' GLM
does by default (gamma). Sums over the cells run chunk by chunk through the
objective, so no array of all cells is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._model.families import Family, full_loglik, pearson_chi2
from .._util.warn import warn


def estimate_scale(
    family: Family,
    deviance: float,
    pearson: Callable[[], float] | None,
    n_eff: float,
    n_coef: int,
    weighted: bool,
) -> float:
    """The scale ``phi``: one, or a chi-square over the residual degrees of freedom.

    Parameters
    ----------
    family : Family
        The family; its ``dispersion`` decides.
    deviance : float
        The fit's deviance (the Gaussian's chi-square).
    pearson : callable or None
        ``pearson()``: Pearson's chi-square of the fit, asked for only when
        the family's scale is estimated from it.
    n_eff : float
        Total weight (the observations, weights being frequency weights).
    n_coef : int
        Parameters of the mean.
    weighted : bool
        Whether the fit had sample weights (for the message).

    Returns
    -------
    float
        NaN, with a warning, when there are no residual degrees of freedom.
    """
    kind = family.dispersion
    if kind == "fixed":
        return 1.0
    chi2 = deviance if kind == "profiled" else pearson()
    if n_eff > n_coef:
        return chi2 / (n_eff - n_coef)
    # Frequency weights count observations: weights normalised to sum to
    # one leave no residual degrees of freedom. Say so, not just NaN.
    why = (
        f"sum(sample_weight) = {n_eff:.6g} for {n_coef} coefficients; sample_weight are "
        "frequency weights (they sum to the number of observations): rescale them, or "
        "use cov_type='robust', which does not depend on their scale"
        if weighted
        else f"{n_eff:.6g} rows for {n_coef} coefficients"
    )
    msg = f"No residual degrees of freedom ({why}): scale_ and nonrobust SEs are NaN."
    warn(msg, RuntimeWarning)
    return np.nan


def pearson_sum(objective: Any, beta: np.ndarray, family: Family) -> float:
    """Pearson's chi-square of the fit at ``beta``, chunk by chunk."""

    def chi2(sub: Any, eta: np.ndarray) -> tuple[float]:
        return (pearson_chi2(family, sub.y, eta, sub.m, sub.w),)

    return objective.chunk_sums(beta, chi2)[0]


def loglik_at_scale(objective: Any, beta: np.ndarray, family: Family, scale: float) -> float:
    """The full log-likelihood at ``beta`` and ``scale``, chunk by chunk."""

    def loglik(sub: Any, eta: np.ndarray) -> tuple[float]:
        w = 1.0 if sub.w is None else sub.w
        return (full_loglik(family, sub.y, eta, sub.m, w, scale),)

    return objective.chunk_sums(beta, loglik)[0]
