"""What a fitted estimator reports for inference: standard errors, fit statistics, summary.

:class:`InferenceMixin` is mixed into the estimator base. At the end of
``fit`` the base hands it the objective and the solution; it computes the
covariance chosen by ``cov_type`` (see :mod:`panelglm._inference.covariance`) and the fit
statistics, and keeps only small arrays (``P x P``) after that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.utils.validation import check_is_fitted

from .._engine.objective import FitStatistics, PanelProblem, PenalizedObjective
from .._ident.kept import embed
from .._model.blocks import Axes
from .._model.shifts import to_user
from .._util.warn import warn
from .corrections import SmallSample
from .covariance import ScoreFactors, coef_covariance, invert_information, normalize_cluster


class InferenceMixin:
    """Standard errors, fit statistics and the summary table of a panel GLM."""

    # Whether McFadden's pseudo R^2 applies: it needs a likelihood of discrete
    # outcomes, whose value does not depend on the units of y (set per estimator).
    _discrete_likelihood: bool = False

    # ------------------------------------------------------------ at fit
    def _cluster_axes(self, dims: tuple[str, ...], shape: tuple[int, ...]) -> tuple[Axes, ...]:
        """Check ``cov_type`` and ``cluster`` against the data's dims; the cluster axes."""
        if self.cov_type != "cluster":
            if self.cluster is not None:
                raise ValueError(
                    f"cluster={self.cluster!r} is only used with cov_type='cluster', "
                    f"got cov_type={self.cov_type!r}."
                )
            return ()
        if self.cluster is None:
            raise ValueError(
                "cov_type='cluster' needs cluster: a panel dimension, a tuple of "
                f"dimensions or a list of those; the dimensions are {list(dims)}."
            )
        return normalize_cluster(self.cluster, dims, shape)

    def _set_inference(
        self,
        objective: PenalizedObjective,
        result: Any,
        problem: PanelProblem,
        stats: FitStatistics,
    ) -> None:
        """Covariance of the coefficients and fit statistics at the solution."""
        design = objective.design
        if objective.alpha == 0:
            # With no L2 penalty the smooth objective is -loglik / sum(w) (the
            # L1 part of an elastic net has no curvature): its Hessian at the
            # solution, already computed by the solver, is the information.
            info = problem.sum_w * result.hess
        else:
            info = objective.information(result.coef)
        if self.cov_type == "nonrobust" and not objective.family.canonical:
            # statsmodels' GLM: the model-based covariance from the expected
            # information, the sandwiches' bread from the observed one.
            info = self._expected_information(objective, result.coef, problem)
        scores = None
        if self.cov_type != "nonrobust":
            scores = ScoreFactors(
                design,
                objective.family,
                problem,
                result.coef,
                outer=lambda: objective.score_outer(result.coef),
                slab_sums=getattr(objective.engine, "slab_sums", None),
            )
        cov = coef_covariance(
            design,
            problem,
            invert_information(info),
            scores,
            cov_type=self.cov_type,
            clusters=self._cluster_axes(self._spec.dims, problem.shape),
            correction=SmallSample(
                self.small_sample,
                design.n_coef,
                design.n_coef,
                dispersion=objective.family.dispersion != "fixed",
            ),
            scale=self.scale_,
            dims=self._spec.dims,
        )
        order = self._order
        # The fit's design may lack coefficients it could not identify: NaN.
        c = embed(self._kept, cov.cov)[np.ix_(order, order)]
        if self._shift_map is not None:  # from the solver's centred columns to the user's
            c = to_user(self._shift_map, c)
        self._cov = 0.5 * (c + c.T)  # exact symmetry, lost to rounding in the sandwich
        self._cov_description = cov.description
        self._set_fit_statistics(problem, design.n_coef, stats)

    def _expected_information(
        self, objective: PenalizedObjective, coef: np.ndarray, problem: PanelProblem
    ) -> np.ndarray:
        """The Fisher information at ``coef``: a pass of the family's expected curvature."""
        fisher = PenalizedObjective(
            objective.design,
            objective.family.expected(),
            problem,
            0.0,
            objective.pen,
            dtype=np.dtype(self.dtype),
        )
        try:
            return fisher.information(coef)
        finally:
            fisher.release()

    def _set_fit_statistics(
        self, problem: PanelProblem, n_coef: int, stats: FitStatistics
    ) -> None:
        # The null model is the intercept alone, with the same offset, trials
        # and weights, whether or not the model has an intercept (statsmodels).
        self.null_deviance_ = stats.null_deviance
        # AIC and BIC as statsmodels' GLM: k counts the mean parameters only
        # (not the Gaussian scale) and n is the total weight.
        self.aic_ = -2.0 * self.loglik_ + 2.0 * n_coef
        self.bic_ = -2.0 * self.loglik_ + np.log(problem.sum_w) * n_coef
        if self._discrete_likelihood:
            self.pseudo_r2_ = 1.0 - self.loglik_ / stats.null_loglik

    # ------------------------------------------------------------ access
    def _all_names(self) -> list[str]:
        return list(self._spec.names)

    def _warn_if_penalized(self) -> str | None:
        if self.alpha == 0:
            return None
        note = (
            f"alpha={self.alpha!r} > 0: the coefficients are penalized, so standard errors, "
            "z, p-values and confidence intervals computed as for maximum likelihood are "
            "not valid."
        )
        warn(note, UserWarning)
        return note

    @property
    def cov_params_(self) -> pd.DataFrame:
        """Covariance of the coefficients, labelled ``"Intercept"`` first when fitted."""
        check_is_fitted(self, "coef_")
        self._warn_if_penalized()
        names = self._all_names()
        return pd.DataFrame(self._cov.copy(), index=names, columns=names)

    @property
    def bse_(self) -> pd.Series:
        """Standard errors, labelled ``"Intercept"`` first when fitted."""
        check_is_fitted(self, "coef_")
        self._warn_if_penalized()
        return pd.Series(self._standard_errors(), index=self._all_names(), name="std_err")

    def _standard_errors(self) -> np.ndarray:
        var = np.diag(self._cov)
        if np.any(var < 0):
            # A multiway (inclusion-exclusion) covariance need not be positive
            # semi-definite; a negative variance has no standard error.
            bad = [n for n, v in zip(self._all_names(), var, strict=True) if v < 0]
            shown = f"{bad[:5]}{' and others' if len(bad) > 5 else ''}"
            warn(
                f"The {self._cov_description} covariance has negative variances for "
                f"{len(bad)} coefficient(s), e.g. {shown}; their standard errors are NaN.",
                RuntimeWarning,
            )
        return np.sqrt(np.where(var >= 0, var, np.nan))

    def summary(self, ci_level: float = 0.95) -> pd.DataFrame:
        """Coefficient table: estimates, standard errors, z, p-values, confidence intervals.

        Inference is asymptotic normal (z, as statsmodels' GLM by default).
        The table's ``attrs`` record the covariance type and, when the fit is
        penalized, a ``"note"`` that the standard errors are not valid.

        Parameters
        ----------
        ci_level : float, default=0.95
            Coverage of the confidence intervals, in (0, 1).

        Returns
        -------
        DataFrame
            Indexed by coefficient name (``"Intercept"`` first when fitted),
            with columns ``coef``, ``std_err``, ``z``, ``p_value``,
            ``ci_low`` and ``ci_high``.

        Warns
        -----
        UserWarning
            If ``alpha > 0``.

        Examples
        --------
        >>> import numpy as np
        >>> from panelglm import PanelPoissonRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(500, 1))
        >>> y = rng.poisson(np.exp(0.5 + 0.3 * X[:, 0]))
        >>> table = PanelPoissonRegressor(cov_type="robust").fit(X, y).summary()
        >>> list(table.columns)
        ['coef', 'std_err', 'z', 'p_value', 'ci_low', 'ci_high']
        >>> table.index.tolist()
        ['Intercept', 'x0']
        >>> bool(table.loc["x0", "ci_low"] < 0.3 < table.loc["x0", "ci_high"])
        True
        """
        check_is_fitted(self, "coef_")
        if not 0.0 < ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}.")
        note = self._warn_if_penalized()
        coef = np.r_[self.intercept_, self.coef_] if self._spec.has_intercept else self.coef_
        se = self._standard_errors()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = coef / se
        half = norm.ppf(0.5 + ci_level / 2.0) * se
        table = pd.DataFrame(
            {
                "coef": coef,
                "std_err": se,
                "z": z,
                "p_value": 2.0 * norm.sf(np.abs(z)),
                "ci_low": coef - half,
                "ci_high": coef + half,
            },
            index=self._all_names(),
        )
        table.attrs["cov_type"] = self._cov_description
        table.attrs["ci_level"] = ci_level
        if note is not None:
            table.attrs["note"] = note
        return table
