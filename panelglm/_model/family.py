"""The family value: a GLM family's functions and the properties code may branch on.

Kept apart from the families themselves (:mod:`panelglm._model.families`,
:mod:`panelglm._model.families_gamma_nb`), which import it, so that each family
module depends on this one only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .._util.lazy import compute, is_lazy

Array = np.ndarray


def _log1pexp(eta: Array) -> Array:
    """Compute ``log(1 + exp(eta))`` without overflow for large ``eta``."""
    return np.logaddexp(0.0, eta)


def _safe_exp(eta: Array) -> Array:
    # exp overflows to inf beyond ~709; inf is the honest answer and the line
    # search rejects it, so only the floating-point warning is silenced.
    with np.errstate(over="ignore"):
        return np.exp(eta)


def _bsum(w: Array | float, x: Array | float, shape: tuple[int, ...]) -> float:
    """``sum(w * x)`` over ``shape`` (both broadcast to it).

    With a scalar weight no array of that shape is made: each value of ``x``
    occurs ``prod(shape) / x.size`` times. A panel of 1e8 cells must not
    allocate a gigabyte to find its starting intercept.
    """
    if np.ndim(w) == 0:
        x = x if is_lazy(x) else np.asarray(x)
        return (
            float(w)
            * float(np.sum(x, dtype=np.float64))
            * (np.prod(shape) / getattr(x, "size", 1))
        )
    return float(np.sum((w if is_lazy(w) else np.asarray(w)) * x, dtype=np.float64))


def _offset_shift(off: Array, extreme: Callable[[Array], Array]) -> tuple[Array, float]:
    """The offset as float64 and its ``extreme`` (0 if none or not finite).

    A closed-form null intercept takes it out of its exponentials, so that
    offsets beyond about +-709 neither overflow nor underflow there.
    """
    off = off.astype(np.float64) if is_lazy(off) else np.asarray(off, dtype=np.float64)
    shift = float(compute(extreme(off))[0]) if off.size else 0.0
    return off, shift if np.isfinite(shift) else 0.0


# Family codes of the compiled sweep (``_sweep.c``): the families it has a form for.
SWEEP_POISSON, SWEEP_BINOMIAL, SWEEP_GAUSSIAN = 0, 1, 2


@dataclass(frozen=True)
class Family:
    """A GLM family with its link, evaluated cell by cell, and what code may assume of it.

    The callables define the model; the fields after them declare the
    properties that the rest of the package branches on, so that a new family
    is described here and nowhere else.

    Attributes
    ----------
    name : str
        Short name, used in messages only (never to decide anything).
    loglik : callable
        ``loglik(y, eta, m)``: the log-likelihood of each cell, at unit scale,
        up to a term that does not depend on ``eta``.
    grad_hess : callable
        ``grad_hess(y, eta, m)``: derivatives ``(g, h)`` of ``loglik`` with
        respect to ``eta`` (``h`` the observed curvature).
    mean : callable
        ``mean(eta, m)``: the expected response.
    unit_deviance : callable
        ``unit_deviance(y, mu, m)``: twice the log-likelihood ratio of the
        saturated model, per cell.
    loglik_const : callable
        ``loglik_const(y, m)``: the term that :attr:`loglik` leaves out, so
        their sum is the full log-likelihood at unit scale. Not used when the
        dispersion is ``"profiled"``.
    null_intercept : callable
        ``null_intercept(y, offset, m, w)``: the maximum-likelihood intercept
        of the model without covariates (``0.0`` where it is infinite).
    check_y : callable
        ``check_y(y, m)``: ``None`` if ``y`` is admissible, else the reason why not.
    link : {"identity", "log", "logit"}
        The link: with ``"identity"`` an offset shifts the mean, otherwise it
        scales it (how a constant model's exact fit is recognised).
    dispersion : {"fixed", "profiled", "pearson"}
        The scale ``phi``. ``"fixed"``: one (Poisson, binomial, negative
        binomial with its ``theta``). ``"profiled"``: the Gaussian variance,
        profiled out of the log-likelihood (computed from the deviance), and
        ``scale_ = deviance / (n - k)``. ``"pearson"``: estimated as
        statsmodels' GLM does, Pearson's ``sum w (y - mu)^2 / V(mu)``
        over ``n - k`` (gamma); the log-likelihood is evaluated at it.
        Wherever the scale is estimated it multiplies the model-based
        covariance.
    variance : callable or None
        ``variance(mu, m)``: the variance function ``V(mu)`` of Pearson's
        residuals; needed with ``dispersion="pearson"``.
    pearson_residual : callable or None
        ``pearson_residual(y, mu, m)``: ``(y - mu) / sqrt(V(mu))`` in a form
        that does not underflow where ``V`` does (gamma's ``y / mu - 1`` for
        responses near 1e-300); ``None`` computes it from :attr:`variance`.
    scaled_loglik : callable or None
        ``scaled_loglik(y, eta, m, scale)``: the full log-likelihood of each
        cell at the given scale; needed with ``dispersion="pearson"``.
    separation : {None, "lower", "both"}
        Where the maximum likelihood estimate may lie at infinity. ``"lower"``:
        the mean tends to zero where ``y`` is zero (counts with a log link);
        ``"both"``: also to the trials where ``y`` equals them (binomial);
        ``None``: never (the check for separated levels is skipped).
    sweep_code : int or None
        The compiled sweep's code of this family (``SWEEP_*``), or ``None``
        where it has none: the numpy pass then runs.
    expected_curvature : callable or None
        ``expected_curvature(eta, m)``: ``-E[h]``, the expected information
        per cell, for a link that is not canonical (``h`` then depends on
        ``y``). ``None`` for a canonical link, whose ``-h`` is already it.
        The solver uses the observed ``h``; the model-based covariance uses
        the expected information, the sandwiches the observed one (as
        statsmodels' GLM does).
    curvature_is_mean : bool
        Whether ``-h`` equals the mean (Poisson), so the score needs no array
        of its own: ``X'(y - mean) = X'y - X'(-h)``.
    fused : callable or None
        ``fused(y, eta, m, w, curv, resid, derivs)``: the weighted
        log-likelihood sum of one chunk, writing ``-w h`` into ``curv`` (and
        ``w g`` into ``resid`` unless it is ``None``) in place; ``None`` means
        the kernels use :attr:`loglik` and :attr:`grad_hess`.
    saturated : callable or None
        ``saturated(y, m)``: :attr:`loglik` of the saturated model (the mean
        equal to ``y``), so the deviance is ``2 sum w (saturated - loglik)``.
    """

    name: str
    loglik: Callable[[Array, Array, Array], Array]
    grad_hess: Callable[[Array, Array, Array], tuple[Array, Array]]
    mean: Callable[[Array, Array], Array]
    unit_deviance: Callable[[Array, Array, Array], Array]
    loglik_const: Callable[[Array, Array], Array]
    null_intercept: Callable[[Array, Array, Array, Array], float]
    check_y: Callable[[Array, Array], str | None]
    link: str
    dispersion: str = "fixed"
    variance: Callable[[Array, Array], Array] | None = None
    pearson_residual: Callable[[Array, Array, Array], Array] | None = None
    scaled_loglik: Callable[[Array, Array, Array, float], Array] | None = None
    separation: str | None = None
    sweep_code: int | None = None
    expected_curvature: Callable[[Array, Array], Array] | None = None
    curvature_is_mean: bool = False
    fused: Callable[..., float] | None = None
    saturated: Callable[[Array, Array], Array] | None = None

    @property
    def canonical(self) -> bool:
        """Whether the observed information equals the expected one (``h`` free of ``y``)."""
        return self.expected_curvature is None

    def expected(self) -> Family:
        """The family with its curvature replaced by the expected information.

        Its Hessian is the Fisher information, which the model-based
        covariance of a non-canonical link uses; a canonical family is itself.
        """
        if self.expected_curvature is None:
            return self
        grad_hess, curvature = self.grad_hess, self.expected_curvature

        def expected_grad_hess(y: Array, eta: Array, m: Array) -> tuple[Array, Array]:
            g = grad_hess(y, eta, m)[0]
            return g, np.broadcast_to(-curvature(eta, m), np.shape(g))

        return replace(
            self,
            grad_hess=expected_grad_hess,
            expected_curvature=None,
            fused=None,
            sweep_code=None,
            curvature_is_mean=False,
        )
