"""The estimator base shared by every panelglm model.

It turns whatever ``fit`` receives (a :class:`PanelData`, a long DataFrame with
``dims``, or a plain array) into a factored design, builds the penalized
objective of the subclass's family and hands it to the Newton solver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions

from .._absorb.fit import AbsorbedFit
from .._data.design import PanelDesign
from .._data.inputs import PanelInput
from .._data.panel import PanelData
from .._data.validation import check_dense_size, check_response, check_target
from .._engine.objective import FitStatistics, PanelProblem, PenalizedObjective, null_intercept
from .._ident.identification import Identifier, SeparationWording
from .._ident.kept import embed, expand
from .._inference.covariance import COV_TYPES
from .._inference.dispersion import estimate_scale, loglik_at_scale, pearson_sum
from .._inference.summary import InferenceMixin
from .._model.factored import FactoredDesign
from .._model.families import Family, full_loglik, profiled_gaussian_loglik
from .._model.shifts import shift_map, to_user
from .._model.terms import ModelSpec, build_design, build_model_spec
from .._solve.cd import prox_newton_solve
from .._solve.newton import newton_solve
from .._util.lazy import broadcast_lazy, dask_settings, is_lazy, masked_weights
from .._util.threads import blas_threads, fit_threads, resolve_threads
from .prediction import Prediction

# Up to this many coefficients the Newton solve runs on one BLAS thread.
SMALL_SOLVE = 1000


class PanelGLMBase(
    Prediction, AbsorbedFit, InferenceMixin, PanelInput, RegressorMixin, BaseEstimator
):
    """Shared machinery of the panel GLM estimators; not for direct use.

    Subclasses set :attr:`family` and name their auxiliary columns; see
    :class:`PanelPoissonRegressor` for the parameters.
    """

    family: Family
    # How the separation warning words the boundary (the exponential model's
    # differs: see SeparationWording).
    _separation_wording = SeparationWording()

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0.0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0.0, 1.0, closed="both")],
        "fit_intercept": ["boolean"],
        "tol": [Interval(Real, 0.0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "dims": [list, tuple, None],
        "fixed_effects": [list, tuple, None],
        "absorb": [list, tuple, None],
        "cov_type": [StrOptions(set(COV_TYPES))],
        "cluster": [str, tuple, list, None],
        "small_sample": ["boolean", StrOptions({"fixest"})],
        "dtype": [
            Options(type, {np.float64, np.float32}),
            Options(np.dtype, {np.dtype(np.float64), np.dtype(np.float32)}),
            StrOptions({"float64", "float32"}),
        ],
        "collinear": [StrOptions({"drop", "raise"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    # ------------------------------------------------------------- hooks
    def _aux_columns(self) -> dict[str, str]:
        """Columns used other than as covariates, by role."""
        roles = {
            "offset": getattr(self, "offset", None),
            "trials": getattr(self, "trials", None),
            "event": getattr(self, "event", None),
            # A Dataset's variable named as the weights is not a covariate either.
            "sample_weight": getattr(self, "_weight_variable", None),
        }
        return {role: col for role, col in roles.items() if col is not None}

    def _problem(
        self, data: PanelData, y: np.ndarray | None, w: np.ndarray | None
    ) -> PanelProblem:
        """Response, trials, weights and offset on the grid (``y`` is None at predict)."""
        offset = getattr(self, "offset", None)
        if w is None and data.is_balanced:
            grid_w = None
        else:  # cells without a row (unbalanced panels) weigh nothing
            grid_w = data.to_grid(np.ones(data.n_rows) if w is None else w)
        if data.present is not None:  # a lazy target's cells without data, likewise
            grid_w = masked_weights(data.present, grid_w)
        return PanelProblem(
            shape=data.shape,
            y=None if y is None else data.to_grid(y),
            w=grid_w,
            offset=None if offset is None else data.numeric(offset, "offset"),
        )

    def _reference_offset(self, problem: PanelProblem) -> tuple | None:
        """The offset of :meth:`score`'s reference model: none of the user's."""
        return None

    def _prediction(self, eta: np.ndarray, problem: PanelProblem) -> np.ndarray:
        """What ``predict`` reports; the family's mean unless a subclass says otherwise."""
        return self.family.mean(eta, problem.m)

    # ------------------------------------------------------------- input
    def _check_response(self, data: PanelData, problem: PanelProblem) -> None:
        """The family's check of ``y`` on the grid; on failure, name the first bad row."""
        if is_lazy(problem.y):  # Dask: the cells with data, checked by reductions
            y, m = problem.y, problem.m
            if data.present is not None:
                keep = data.present.reshape(-1)
                if np.ndim(m):
                    m = broadcast_lazy(m, problem.shape).reshape(-1)[keep]
                y = y.reshape(-1)[keep]
            message = self.family.check_y(y, m)
            if message is not None:
                raise ValueError(f"The target y {message}.")
            return
        if self.family.check_y(problem.y, problem.m) is None:
            return  # no array of the rows is made for the common case
        m = problem.m if np.ndim(problem.m) == 0 else data.from_grid(problem.m)
        check_response(self.family, data.from_grid(problem.y), m, data)

    # --------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @dask_settings
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PanelGLMBase:
        """Fit the model by Newton-Raphson on the factored design.

        Parameters
        ----------
        X : PanelData, DataFrame, xarray.Dataset or array-like of shape (n_samples, n_features)
            A :class:`PanelData` from :class:`PanelDesign`; a long-format
            DataFrame (with ``dims`` set on the estimator); an
            ``xarray.Dataset``, whose dimensions are the panel's (or
            ``dims``) and whose variables each vary along their own
            dimensions; or a plain 2-D array, treated as a cross-section.
        y : array-like of shape (n_samples,), DataArray or str
            Target, one value per row of ``X`` in its row order. With a
            DataFrame ``X``, a Series ``y`` named like a column of ``X`` and
            equal to it row by row is that column, which is then not a
            covariate; one whose values differ leaves the column a covariate.
            With a Dataset ``X``: a DataArray over the panel (NaN cells have
            no data, which needs ``PanelDesign(balanced=False)``) or the name
            of a variable of ``X``, which is then not a covariate.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, one per row (with a Dataset ``X`` also a
            DataArray over the panel or a variable's name).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # A fit that fails leaves the previous one whole (scikit-learn's input
        # checks set n_features_in_ and feature_names_in_ before the solve);
        # one that succeeds replaces, or drops, the layout predict reads
        # frames with, so no earlier fit's layout decodes new data.
        state = self._input_state()
        try:
            layout = self._fit_panel(X, y, sample_weight)
        except BaseException:
            self._restore_input(state)
            raise
        self._set_input(X, layout)
        return self

    def _fit_panel(self, X: Any, y: Any, sample_weight: Any) -> PanelDesign | None:
        """Everything ``fit`` does but the bookkeeping of its input; the frame's layout."""
        data, y, layout = self._fit_input(X, y)
        self._weight_variable = sample_weight if isinstance(sample_weight, str) else None
        y = check_target(y, data)
        w = self._check_weights(sample_weight, data.n_rows, data)
        if is_lazy(y):
            self._check_lazy_fit(data)
        if data.absorb:
            self._fit_absorbed(data, y, w)
            return layout
        self._effects = None
        aux = self._aux_columns()
        spec = build_model_spec(data, self.fit_intercept, set(aux.values()))
        self._cluster_axes(spec.dims, data.shape)  # fail on a bad cluster before the solver runs
        check_dense_size(spec.terms)  # before anything P x P (or the blocks) is made
        design, order = build_design(spec, data)
        # The BLAS calls of a fit with few coefficients are many and small:
        # threads gain nothing on them, and their spin-waits after each call
        # take cores from the compiled sweep's threads (and, on a busy
        # machine, cost more than the calls). So BLAS keeps one thread for the
        # whole fit, unless the P x P solve is large enough to gain from n_threads.
        threads = resolve_threads(self.n_threads)
        with (
            fit_threads(self.n_threads),
            blas_threads(1 if design.n_coef <= SMALL_SOLVE else threads),
        ):
            problem = self._problem(data, y, w)
            self._check_response(data, problem)
            # Separated cells and collinear coefficients are dropped around the solve.
            ident = Identifier(
                spec,
                order,
                design,
                data,
                self.family,
                alpha=self.alpha,
                fit_intercept=self.fit_intercept,
                collinear=self.collinear,
                wording=self._separation_wording,
            )
            try:
                objective, result = self._identified_fit(ident, spec, problem)
                self._set_identification(ident, data, spec, order)
                self._set_results(spec, order, objective, result, problem)
            finally:
                self._null_known = None  # it holds the fit's arrays
        return layout

    def _lazy_unsupported(self) -> str | None:
        """What of this model cannot run on a Dask-backed panel, if anything."""
        return None

    def _check_lazy_fit(self, data: PanelData) -> None:
        """Refuse, before any pass, a model whose fit has no Dask form yet."""
        what = "absorb=" if data.absorb else self._lazy_unsupported()
        if what is None:
            return
        instead = ", or fit the effects as fixed_effects= instead" if data.absorb else ""
        raise ValueError(
            f"{type(self).__name__} with {what} does not run on Dask-backed data yet; load "
            f"the Dataset into memory first (Dataset.load()){instead}."
        )

    def _identified_fit(
        self, ident: Identifier, spec: ModelSpec, problem: PanelProblem
    ) -> tuple[PenalizedObjective, Any]:
        """The solve with separated cells and collinear coefficients dropped around it."""
        return ident.fit(problem, lambda d: self._objective(d, spec, problem), self._solve)

    def _objective(
        self, design: FactoredDesign, spec: ModelSpec, problem: PanelProblem
    ) -> tuple[PenalizedObjective, np.ndarray]:
        """The penalized objective of ``problem`` and Newton's starting point."""
        penalized = np.ones(design.n_coef)
        if spec.has_intercept:
            penalized[0] = 0.0  # the intercept is always the first internal coefficient
        # Elastic net: the L2 part stays in the smooth objective, the L1 part
        # goes to proximal Newton (see _solve).
        l1 = self.alpha * self.l1_ratio
        work = {"dtype": np.dtype(self.dtype), "n_threads": self.n_threads}
        objective = PenalizedObjective(
            design, self.family, problem, self.alpha - l1, penalized, **work
        )
        coef0 = np.zeros(design.n_coef)
        if spec.has_intercept:
            coef0[0] = self._null_intercept(problem)
        return objective, coef0

    def _solve(self, objective: PenalizedObjective, coef0: np.ndarray) -> Any:
        """Newton, or proximal Newton when the penalty has an L1 part."""
        solve_kw = {"tol": self.tol, "max_iter": self.max_iter, "verbose": self.verbose}
        l1 = self.alpha * self.l1_ratio
        # BLAS threads are held by the caller (_fit_panel) for the whole fit.
        try:
            if l1 > 0:  # objective.pen: 1 for penalized coefficients, 0 for the intercept
                return prox_newton_solve(objective, l1 * objective.pen, coef0, **solve_kw)
            return newton_solve(objective, coef0, **solve_kw)
        finally:
            # The passes keep their accumulators' buffers from one to the next
            # (no fresh pages); the statistics after the solve need them no more.
            objective.release()

    def _set_identification(
        self, ident: Identifier, data: PanelData, spec: ModelSpec, order: np.ndarray
    ) -> None:
        """Record what was dropped: coefficients (NaN in ``coef_``) and separated rows."""
        self._kept = ident.kept  # internal order; False: not estimated
        self._separated_levels = ident.levels
        self._unobserved_levels = ident.unobserved
        self.collinear_names_ = [
            n for n, k in zip(spec.names, ident.kept[order], strict=True) if not k
        ]
        self.separated_rows_ = (
            np.zeros(data.n_rows, dtype=bool)
            if ident.separated is None
            else data.from_grid(ident.separated).astype(bool)
        )

    def _set_results(
        self,
        spec: ModelSpec,
        order: np.ndarray,
        objective: PenalizedObjective,
        result: Any,
        problem: PanelProblem,
    ) -> None:
        # ``objective`` and ``result`` are over the kept coefficients only.
        beta = expand(self._kept, result.coef)
        self._spec = spec
        self._order = order
        self._beta = beta  # zero where not estimated, so predictions ignore those columns
        user = np.where(self._kept[order], beta[order], np.nan)
        # Shifted columns (a timestamp) were centred for the solver; the
        # intercept of the columns as given is the solver's less their shifts.
        self._shift_map = shift_map(spec, self._kept[order])
        if self._shift_map is not None:
            user = to_user(self._shift_map, user)
        names = spec.names
        if spec.has_intercept:
            self.intercept_ = float(user[0])
            self.coef_, self.coef_names_ = user[1:], names[1:]
        else:
            self.intercept_ = 0.0
            self.coef_, self.coef_names_ = user, names
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        stats = self._statistics(objective, result.coef, problem)
        self.deviance_ = stats.deviance
        fam, n_coef = self.family, int(self._kept.sum())
        self.scale_ = self._scale(
            problem.sum_w,
            n_coef,
            problem.w is not None,
            lambda: pearson_sum(objective, result.coef, fam),
        )
        if fam.dispersion == "pearson":  # the likelihood at the estimated scale
            ll = loglik_at_scale(objective, result.coef, fam, self.scale_)
            stats = dataclasses.replace(stats, loglik=ll)
        self.loglik_ = stats.loglik
        # Of the penalized objective at the solution; rows and columns of
        # coefficients not estimated (``~self._kept``) are NaN.
        self._hessian = embed(self._kept, result.hess)
        self._set_inference(objective, result, problem, stats)

    def _statistics(
        self, objective: PenalizedObjective, beta: np.ndarray, problem: PanelProblem
    ) -> FitStatistics:
        """Deviance and log-likelihood of the fit and of the intercept-only model.

        Chunk by chunk, so no array of N cells is made for them. The null
        model is the intercept alone, with the same offset, trials and weights,
        whether or not the model has an intercept (as statsmodels).
        """
        intercept0 = self._null_intercept(problem)
        if type(self)._loglik is PanelGLMBase._loglik:
            return objective.fit_statistics(beta, intercept0)
        additive = self.family.dispersion != "profiled"

        def stats(sub: PanelProblem, eta: np.ndarray) -> tuple[float, ...]:
            eta0 = np.broadcast_to(intercept0 + sub.offset_grid(), sub.shape)
            return tuple(
                v
                for e in (eta, eta0)
                for v in (sub.deviance(self.family, e), self._loglik(sub, e) if additive else 0.0)
            )

        dev, loglik, dev0, loglik0 = objective.chunk_sums(beta, stats)
        if not additive:  # the Gaussian likelihood profiles out the variance
            loglik = profiled_gaussian_loglik(dev, problem.sum_w)
            loglik0 = profiled_gaussian_loglik(dev0, problem.sum_w)
        return FitStatistics(dev, loglik, dev0, loglik0)

    def _null_intercept(self, problem: PanelProblem) -> float:
        """:func:`null_intercept`, once per problem, weights and family of a fit.

        Newton's start and the statistics' null model ask for the same one;
        it is a pass over the response. :meth:`_fit_panel` lets go of it.
        """
        key = (problem, problem.w, self.family)
        known = getattr(self, "_null_known", None)
        if known is not None and all(a is b for a, b in zip(known[0], key, strict=True)):
            return known[1]
        value = null_intercept(self.family, problem)
        self._null_known = (key, value)
        return value

    def _loglik(self, problem: PanelProblem, eta: np.ndarray) -> float:
        w = 1.0 if problem.w is None else problem.w
        return full_loglik(self.family, problem.y, eta, problem.m, w)

    def _scale(
        self,
        n_eff: float,
        n_coef: int,
        weighted: bool,
        pearson: Callable[[], float] | None = None,
    ) -> float:
        """The dispersion as the family declares it (``deviance_`` already set)."""
        return estimate_scale(self.family, self.deviance_, pearson, n_eff, n_coef, weighted)
