"""The public estimators: each names its family and its auxiliary columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._data.panel import PanelData
from .._data.validation import first_bad_row
from .._engine.objective import PanelProblem
from .._model.families import BINOMIAL, GAUSSIAN, POISSON
from .._util.docstrings import fill_doc
from .._util.lazy import compute, is_lazy
from .base import PanelGLMBase


@fill_doc
class PanelPoissonRegressor(PanelGLMBase):
    """Poisson regression (log link) for counts, rates and PPML on panels.

    The response may be any non-negative number (Poisson pseudo-maximum
    likelihood). An offset column turns counts into rates: with
    ``offset="log_exposure"`` the expected count is
    ``exposure * exp(X @ coef)``.

    Parameters
    ----------
    offset : str, default=None
        Column added to the linear predictor with coefficient one, such as
        the log of exposure; read from the data at fit, predict and score.
    {common_params}

    Attributes
    ----------
    {common_attrs}
    pseudo_r2_ : float
        McFadden's pseudo R^2, ``1 - loglik_ / loglik(null model)``, the null
        model as for ``null_deviance_`` (statsmodels' ``prsquared``).

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelPoissonRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2))
    >>> y = rng.poisson(np.exp(0.5 + X @ [0.3, -0.2]))
    >>> est = PanelPoissonRegressor().fit(X, y)
    >>> est.coef_.round(1)
    array([ 0.3, -0.2])
    """

    family = POISSON
    _discrete_likelihood = True
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
class PanelLinearRegressor(PanelGLMBase):
    """Linear regression (Gaussian, identity link) on panels.

    Parameters
    ----------
    {common_params}

    Attributes
    ----------
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelLinearRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    >>> est = PanelLinearRegressor().fit(X, [1.1, 2.9, 5.0, 7.1, 8.9])
    >>> round(est.intercept_, 6), est.coef_.round(6)
    (1.04, array([1.98]))
    """

    _attr_docs = {
        "scale_": "The residual variance ``SSR / (n - p)``, as statsmodels' GLM reports it.",
    }

    family = GAUSSIAN

    def __init__(
        self,
        *,
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


@fill_doc
class PanelLogitRegressor(PanelGLMBase):
    """Binomial regression (logit link) for successes out of trials on panels.

    ``y`` counts successes out of ``M`` trials (``M = 1`` without a
    ``trials`` column, so ``y`` is a 0/1 outcome or a fraction in [0, 1]).
    ``predict`` gives the expected number of successes ``M * p`` (the
    probability ``p`` when there is no trials column).

    Parameters
    ----------
    trials : str, default=None
        Column holding the number of trials ``M`` of each cell.
    {common_params}

    Attributes
    ----------
    {common_attrs}
    pseudo_r2_ : float
        McFadden's pseudo R^2, ``1 - loglik_ / loglik(null model)``, the null
        model as for ``null_deviance_`` (statsmodels' ``prsquared``).

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelLogitRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 1))
    >>> y = rng.binomial(1, 1 / (1 + np.exp(-(0.5 + 1.0 * X[:, 0]))))
    >>> PanelLogitRegressor().fit(X, y).coef_.round(0)
    array([1.])
    """

    family = BINOMIAL
    _discrete_likelihood = True
    _parameter_constraints: dict = {**PanelGLMBase._parameter_constraints, "trials": [str, None]}

    def __init__(
        self,
        *,
        trials=None,
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
        self.trials = trials
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

    def _problem(self, data: PanelData, y, w) -> PanelProblem:
        problem = super()._problem(data, y, w)
        if self.trials is not None:
            m, axes = data.numeric(self.trials, "trials", fill=1.0)
            if is_lazy(m):
                m = lazy_trials(m, self.trials)
            elif np.any(m <= 0):
                rows = data.from_grid(
                    m.reshape([n if d in axes else 1 for d, n in enumerate(data.shape)])
                )
                raise ValueError(
                    f"The trials column {self.trials!r} must be positive"
                    f"{first_bad_row(data, rows > 0)}."
                )
            problem.m = m.reshape([n if d in axes else 1 for d, n in enumerate(data.shape)])
        return problem

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags


def lazy_trials(m: Any, name: str) -> Any:
    """Dask-backed trials (1 at cells without data) checked positive by one reduction."""
    (n_bad,) = compute((m <= 0).sum())
    if n_bad:
        raise ValueError(
            f"The trials column {name!r} must be positive ({int(n_bad)} cells are not)."
        )
    return m


# Pickles made when the duration model lived in this module find it here.
from .duration import PanelExponentialRegressor  # noqa: E402, F401
