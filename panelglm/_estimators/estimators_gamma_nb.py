"""The gamma and negative binomial estimators: positive costs and overdispersed counts.

Both use the log link, which is not canonical for either family: the
model-based covariance comes from the expected information and the
sandwiches' bread from the observed one, as statsmodels' GLM reports them
(see :class:`~panelglm._model.family.Family`).
"""

from __future__ import annotations

import dataclasses
from numbers import Real
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval

from .._data.panel import PanelData
from .._engine.objective import PanelProblem, PenalizedObjective
from .._ident.identification import Identifier
from .._model.families_gamma_nb import GAMMA, negative_binomial
from .._model.family import Family
from .._model.terms import ModelSpec
from .._util.docstrings import fill_doc
from .._util.lazy import broadcast_lazy, compute, is_lazy
from .._util.warn import warn
from .base import PanelGLMBase
from .theta import ml_theta, ml_theta_by_passes

# Rounds of the alternation between the coefficients and theta, and the
# change of log(theta) at which it stops.
MAX_THETA_ROUNDS = 100
THETA_RTOL = 1e-10


@fill_doc
class PanelGammaRegressor(PanelGLMBase):
    """Gamma regression (log link) for positive, skewed responses such as costs, on panels.

    The variance is ``scale_ * mu^2``: the model fits the mean and estimates
    the dispersion from Pearson's chi-square, as statsmodels'
    ``GLM(family=Gamma(link=Log()))`` does. An offset column (the log of an
    exposure) multiplies the mean by ``exp(offset)``.

    Parameters
    ----------
    offset : str, default=None
        Column added to the linear predictor with coefficient one, such as
        the log of exposure; read from the data at fit, predict and score.
    {common_params}

    Attributes
    ----------
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelGammaRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(4000, 1))
    >>> y = rng.gamma(shape=2.0, scale=np.exp(1.0 + 0.5 * X[:, 0]) / 2.0)
    >>> est = PanelGammaRegressor().fit(X, y)
    >>> round(est.intercept_, 1), est.coef_.round(1)
    (1.0, array([0.5]))
    >>> round(est.scale_, 1)  # one over the gamma shape
    0.5
    """

    _attr_docs = {
        "scale_": (
            "The dispersion: Pearson's ``sum w (y - mu)^2 / mu^2`` over ``n - k``,\n"
            "        as statsmodels' GLM reports ``scale``; it multiplies the\n"
            "        model-based covariance, and ``loglik_`` is evaluated at it."
        ),
    }

    family = GAMMA
    _parameter_constraints: dict = {**PanelGLMBase._parameter_constraints, "offset": [str, None]}

    def __init__(
        self,
        *,
        offset=None,
        alpha=0.0,
        l1_ratio=0.0,
        fit_intercept=True,
        tol=1e-10,
        max_iter=100,
        verbose=0,
        dims=None,
        fixed_effects=None,
        absorb=None,
        cov_type="nonrobust",
        cluster=None,
        small_sample=True,
        dtype=np.float64,
        collinear="drop",
        n_threads=None,
    ):
        self.offset = offset
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose
        self.dims = dims
        self.fixed_effects = fixed_effects
        self.absorb = absorb
        self.cov_type = cov_type
        self.cluster = cluster
        self.small_sample = small_sample
        self.dtype = dtype
        self.collinear = collinear
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags


@fill_doc
class PanelNegativeBinomialRegressor(PanelGLMBase):
    """Negative binomial regression (NB2, log link) for overdispersed counts on panels.

    The variance is ``mu + mu^2 / theta``. With ``theta`` given the model is
    statsmodels' ``GLM(family=NegativeBinomial(alpha=1 / theta))``; with
    ``theta=None`` it is estimated by maximum likelihood together with the
    coefficients (statsmodels' discrete ``NegativeBinomial``, ``alpha = 1 /
    theta_``), alternating the coefficients' Newton fit with the
    one-dimensional maximisation over ``theta``. Standard errors are those
    of the GLM at ``theta_`` (``theta`` treated as known).

    Parameters
    ----------
    theta : float, default=None
        The shape of the NB2 model (statsmodels' ``1 / alpha``), positive;
        ``None`` estimates it. Large values approach the Poisson model.
    offset : str, default=None
        Column added to the linear predictor with coefficient one, such as
        the log of exposure; read from the data at fit, predict and score.
    {common_params}

    Attributes
    ----------
    {common_attrs}
    theta_ : float
        The ``theta`` of the fit: the given one, or its estimate. An
        estimate at ``1e8`` means no overdispersion (the Poisson limit).

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelNegativeBinomialRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(4000, 1))
    >>> mu = np.exp(0.5 + 0.3 * X[:, 0])
    >>> y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    >>> est = PanelNegativeBinomialRegressor().fit(X, y)
    >>> est.coef_.round(1), round(est.theta_)
    (array([0.3]), 2)
    """

    _parameter_constraints: dict = {
        **PanelGLMBase._parameter_constraints,
        "theta": [Interval(Real, 0.0, None, closed="neither"), None],
        "offset": [str, None],
    }

    def __init__(
        self,
        *,
        theta=None,
        offset=None,
        alpha=0.0,
        l1_ratio=0.0,
        fit_intercept=True,
        tol=1e-10,
        max_iter=100,
        verbose=0,
        dims=None,
        fixed_effects=None,
        absorb=None,
        cov_type="nonrobust",
        cluster=None,
        small_sample=True,
        dtype=np.float64,
        collinear="drop",
        n_threads=None,
    ):
        self.theta = theta
        self.offset = offset
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose
        self.dims = dims
        self.fixed_effects = fixed_effects
        self.absorb = absorb
        self.cov_type = cov_type
        self.cluster = cluster
        self.small_sample = small_sample
        self.dtype = dtype
        self.collinear = collinear
        self.n_threads = n_threads

    @property
    def family(self) -> Family:
        """The NB2 family of the ``theta`` being fitted, else of the fit's ``theta_``."""
        theta = self.__dict__.get("_theta_now")
        if theta is None:
            theta = self.__dict__.get("theta_", self.theta)
        # Before any theta is known only what all thetas share is asked
        # (the admissible y, the separation rule).
        return negative_binomial(1.0 if theta is None else theta)

    def _fit_panel(self, X: Any, y: Any, sample_weight: Any) -> Any:
        self._theta_now = None if self.theta is None else float(self.theta)
        try:
            layout = super()._fit_panel(X, y, sample_weight)
            self.theta_ = self._theta_now
        finally:
            del self._theta_now
        return layout

    def _fit_absorbed(self, data: PanelData, y: np.ndarray, w: np.ndarray | None) -> None:
        if self.theta is not None:
            super()._fit_absorbed(data, y, w)
            return
        # The dense path's alternation (see _identified_fit), each round a
        # whole absorbed fit at the current theta: the effects' solves have no
        # warm start across thetas, which a round or two more costs little.
        y = np.asarray(y, dtype=np.float64)
        self._theta_now = _moment_theta(PanelProblem(shape=y.shape, y=y, w=w))
        n_iter = 0
        for _ in range(MAX_THETA_ROUNDS):
            super()._fit_absorbed(data, y, w)
            n_iter += self.n_iter_
            _, problem, eta = self._eta_on(data)
            with np.errstate(over="ignore"):
                mu = data.from_grid(self._prediction(eta, problem))
            theta = ml_theta(y, mu, w, self._theta_now)
            if abs(np.log(theta / self._theta_now)) <= THETA_RTOL:
                break
            self._theta_now = theta
        else:
            warn(
                f"theta did not converge in {MAX_THETA_ROUNDS} rounds of the alternation "
                f"with the coefficients (last theta {self._theta_now:.6g}).",
                ConvergenceWarning,
            )
        self.n_iter_ = n_iter

    def _identified_fit(
        self, ident: Identifier, spec: ModelSpec, problem: PanelProblem
    ) -> tuple[PenalizedObjective, Any]:
        if self.theta is not None:
            return super()._identified_fit(ident, spec, problem)
        self._theta_now = _moment_theta(problem)
        # Separation (which cells have y = 0 only) does not depend on theta:
        # the cells and coefficients the first fit keeps serve every round.
        objective, result = super()._identified_fit(ident, spec, problem)
        n_iter = result.n_iter
        for _ in range(MAX_THETA_ROUNDS):
            if is_lazy(problem.y):  # Dask: the means stay in the engine's slabs
                theta = ml_theta_by_passes(objective, result.coef, self._theta_now)
            else:
                with np.errstate(over="ignore"):
                    mu = np.exp(objective.eta(result.coef))
                theta = ml_theta(problem.y, mu, problem.w, self._theta_now)
                del mu
            if abs(np.log(theta / self._theta_now)) <= THETA_RTOL:
                break
            self._theta_now = theta
            objective = self._objective(objective.design, spec, problem)[0]
            result = self._solve(objective, result.coef)  # warm: the last round's coefficients
            n_iter += result.n_iter
        else:
            warn(
                f"theta did not converge in {MAX_THETA_ROUNDS} rounds of the alternation "
                f"with the coefficients (last theta {self._theta_now:.6g}).",
                ConvergenceWarning,
            )
        return objective, dataclasses.replace(result, n_iter=n_iter)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags


def _moment_theta(problem: PanelProblem) -> float:
    """A start for ``theta``: the method of moments on ``y`` alone, kept in a sane range."""
    if is_lazy(problem.y):  # Dask: the same two sums, as reductions
        y = problem.y
        w = 1.0 if problem.w is None else problem.w
        total, weighted = compute(broadcast_lazy(w, y.shape).sum(), (w * y).sum())
        mean = float(weighted) / float(total)
        var = float(compute((w * (y - mean) ** 2).sum())[0]) / float(total)
        total = float(total)
    else:
        y = np.asarray(problem.y, dtype=np.float64)
        w = np.ones(y.shape) if problem.w is None else np.broadcast_to(problem.w, y.shape)
        total = float(w.sum())
        mean = float(np.vdot(w, y)) / total
        var = float(np.vdot(w, (y - mean) ** 2)) / total
    if mean > 0 and var > mean:
        return float(np.clip(mean * mean / (var - mean), 1e-2, 1e4))
    return 1.0
