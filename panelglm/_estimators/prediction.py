"""Predictions and scores on new panels, for the estimators (a mixin).

The fitted coefficients, effects and layout are the estimator's; this reads
new data with them: its columns laid out as the fit's, its offsets and trials
read from it, separated levels at their limits, absorbed effects added.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._data.panel import PanelData
from .._data.validation import check_target
from .._data.xarray import without_missing_target
from .._engine.dask_engine import is_lazy_fit
from .._engine.objective import PanelProblem, null_intercept
from .._ident.separation import check_observed, limit_signs
from .._model.conform import conform
from .._model.lazy_design import lazy_linear_predictor
from .._model.statistics import explained_deviance
from .._model.terms import build_design
from .._util.lazy import dask_settings, is_lazy, where
from .._util.warn import warn


class Prediction:
    """``predict`` and ``score``, mixed into :class:`PanelGLMBase`."""

    def _eta_on(
        self, X: Any, y: Any = None, sample_weight: Any = None
    ) -> tuple[PanelData, PanelProblem, np.ndarray]:
        check_is_fitted(self, "coef_")
        data, _ = self._as_panel(X, None, reset=False)
        # A PanelData laid out by another PanelDesign is read as the model was fitted.
        data = conform(self._spec, data)
        if y is not None:
            # Scoring on a Dataset's panel: the cells where y is NaN have no data.
            data, y, sample_weight = without_missing_target(data, y, sample_weight)
            y = check_target(y, data)
        problem = self._problem(data, y, self._check_weights(sample_weight, data.n_rows, data))
        design, _ = build_design(self._spec, data)
        check_observed(self._unobserved_levels, self._spec, data)
        if is_lazy_fit(design, problem):  # Dask in, a lazy prediction out
            eta = lazy_linear_predictor(design, self._beta, problem.offset)
        else:
            eta = design.linear_predictor(self._beta, problem.offset)
        if getattr(self, "_effects", None) is not None:
            return data, problem, self._absorbed_eta(data, eta)
        # At a separated level the maximum likelihood mean is the boundary itself.
        limits = limit_signs(self._separated_levels, self._spec, data)
        if limits is not None:
            eta = where(limits < 0, -np.inf, where(limits > 0, np.inf, eta))
        return data, problem, eta

    @dask_settings
    def predict(self, X: Any) -> np.ndarray:
        """Predict the mean response of every row of ``X``, in ``X``'s row order.

        Offsets, trials and exposures are read from ``X`` itself.

        Parameters
        ----------
        X : PanelData, DataFrame, xarray.Dataset or array-like
            Data laid out like the training data.

        Returns
        -------
        ndarray of shape (n_samples,) or xarray.DataArray
            A DataArray over the panel's dimensions, in the Dataset's
            coordinates, when ``X`` is an ``xarray.Dataset`` (or a
            :class:`PanelData` made from one).
        """
        data, problem, eta = self._eta_on(X)
        mean = self._prediction(eta, problem)
        if is_lazy(mean):
            # Computed when the caller asks: an overflow check here would read
            # every cell now.
            return data.labels.to_dataarray(data.grid, mean, "prediction")
        # inf from a finite linear predictor is an overflow, not a separated
        # level's limit: say so rather than return it silently.
        overflow = np.isinf(mean) & np.isfinite(eta)
        if overflow.any():
            warn(
                f"{int(overflow.sum())} predicted mean(s) overflow to inf: the linear "
                "predictor there is beyond the range of exp in float64 (about 709); "
                "check the offset or exposure columns of X.",
                RuntimeWarning,
            )
        if data.labels is not None:
            return data.labels.to_dataarray(data.grid, data.from_grid(mean), "prediction")
        return data.from_grid(mean)

    @dask_settings
    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Fraction of deviance explained, D^2 (R^2 for the linear model).

        The model's deviance on ``(X, y)``, offsets and trials read from
        ``X``, is compared with that of a constant: the intercept-only model
        fitted to ``y`` without the offset column (the weighted mean of
        ``y``; a constant probability with trials; a constant hazard for
        durations), as scikit-learn's ``d2_tweedie_score`` and glum do. The
        reference thus does not depend on the hyper-parameters, so models
        with and without an offset are ranked by their deviance, as a
        search over ``offset`` needs. Where the constant fits ``y`` exactly
        (a constant ``y``, all zeros) the score is 1.0 for a perfect
        prediction and 0.0 otherwise, scikit-learn's convention for R^2.

        Parameters
        ----------
        X : PanelData, DataFrame or array-like
            Data laid out like the training data.
        y : array-like of shape (n_samples,)
            True responses, in ``X``'s row order.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        float
        """
        data, problem, eta = self._eta_on(X, y, sample_weight)
        self._check_response(data, problem)
        reference = dataclasses.replace(problem, offset=self._reference_offset(problem))
        eta0 = null_intercept(self.family, reference) + reference.offset_grid()
        return explained_deviance(self.family, problem, eta, reference, eta0)
