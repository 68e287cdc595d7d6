"""Fit only what the data identify: separation and collinearity around the solve.

Without a penalty, the maximum likelihood estimate exists and is unique only if
no coefficient direction is collinear (the Gram matrix is singular along it)
and none separates (pushes some cells to the boundary of ``y`` at no cost
elsewhere). :class:`Identifier` runs the Newton solve inside both guards:

1. levels of fixed effects whose ``y`` all sit at a boundary: their cells are
   dropped (weight zero) with a :class:`~panelglm.exceptions.SeparationWarning`;
2. collinear coefficients: dropped (reported as NaN) with a
   :class:`~panelglm.exceptions.CollinearityWarning`, or an error;
3. Newton on the remaining coefficients (a design without the dropped columns);
4. separation by any other direction, certified exactly: those cells are
   dropped, the covariates involved named, and steps 2-4 repeated.

With ``alpha > 0`` the penalty keeps the optimum finite (and, with an L2 part,
unique), so nothing is dropped and a ridge fit equals scikit-learn's on the
full data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._data.panel import PanelData
from .._engine.objective import PanelProblem
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._model.terms import ModelSpec
from .._solve.newton import NewtonResult
from .._util.lazy import compute, is_lazy, where
from .._util.warn import warn
from ..exceptions import CollinearityWarning, SeparationWarning
from .certificate import separating_cells
from .collinearity import (
    describe_dropped,
    independent_columns,
    priority_order,
)
from .kept import restrict_design
from .reuse import PassReuse
from .separation import (
    SeparatedLevels,
    UnobservedLevels,
    check_not_all_boundary,
    separated_levels,
    unobserved_levels,
)

# Separation found after a solve means another solve; each round removes at
# least one cell, but a panel needing more than a few rounds is pathological.
MAX_ROUNDS = 5


@dataclass(frozen=True)
class SeparationWording:
    """How a model's separation warning names the boundary and the predictions there.

    The exponential model is a Poisson fit of its event indicators: its
    boundary is a level with every duration censored, and its prediction
    there an infinite expected duration, not a mean of 0.
    """

    low: str = "y all 0"
    high: str = "y all at the trials"
    limit: str = "the limit (0, or the trials)"
    rows: str = "y at its boundary"
    all_low: str | None = None  # the error when every row is at the lower boundary


def _count(rows: np.ndarray) -> int:
    """Rows set in a boolean array (a Dask one by a reduction)."""
    return int(compute(rows.sum())[0]) if is_lazy(rows) else int(np.count_nonzero(rows))


class Identifier(PassReuse):
    """Decides which coefficients and cells a fit uses, and runs the solve.

    Parameters
    ----------
    spec : ModelSpec
        The model's terms.
    order : ndarray of int
        ``coef_user = coef_internal[order]``.
    design : FactoredDesign
        The design, in internal coefficient order.
    data : PanelData
        The rows.
    family : Family
        The GLM family.
    alpha : float
        Ridge penalty; nothing is dropped when it is positive.
    fit_intercept : bool
        Whether the intercept (never penalized) is fitted.
    collinear : {"drop", "raise"}
        What to do with collinear coefficients.

    Attributes
    ----------
    kept : ndarray of bool
        Estimated coefficients, internal order.
    levels : list of SeparatedLevels
        Levels dropped as separated.
    separated : ndarray of bool or None
        Cells dropped as separated (on the grid).
    unobserved : list of UnobservedLevels
        Levels without any row of positive weight (not estimated).
    """

    def __init__(
        self,
        spec: ModelSpec,
        order: np.ndarray,
        design: FactoredDesign,
        data: PanelData,
        family: Family,
        *,
        alpha: float,
        fit_intercept: bool,
        collinear: str,
        wording: SeparationWording = SeparationWording(),
    ) -> None:
        self.spec, self.design, self.data, self.family = spec, design, data, family
        self.wording = wording
        self.fit_intercept = fit_intercept
        self.collinear = collinear
        self.active = alpha == 0
        user_kinds = [t.kind for t in spec.terms for _ in t.names]
        n = design.n_coef
        self.names = [""] * n
        self.kinds = [""] * n
        user_names = spec.names  # a property that builds the list: read once
        for u, i in enumerate(order):
            self.names[i] = user_names[u]
            self.kinds[i] = user_kinds[u]
        user_position = np.empty(n, dtype=np.intp)
        user_position[order] = np.arange(n)
        self.priority = priority_order(self.kinds, user_position)
        self._center = spec.has_intercept
        self.kept = np.ones(n, dtype=bool)
        self.levels: list[SeparatedLevels] = []
        self.unobserved: list[UnobservedLevels] = []
        self.separated: np.ndarray | None = None
        self._reported = np.zeros(n, dtype=bool)
        self._ranges: dict[str, tuple[float, float]] | None = None

    # ----------------------------------------------------------- screening
    def _drop_cells(self, problem: PanelProblem, cells: np.ndarray, culprit: str) -> None:
        # New weights (lazily on a Dask-backed panel); the caller's are never written.
        w = where(cells, 0.0, 1.0 if problem.w is None else problem.w)
        if not np.any(w > 0):
            raise ValueError(
                f"Complete separation: {culprit} fit(s) y perfectly on every row, so the "
                "maximum likelihood estimate does not exist (the coefficients would go to "
                "infinity) and no row is left to fit."
            )
        problem.w = w
        self.separated = cells if self.separated is None else self.separated | cells
        self._check_not_all_boundary(problem)

    def _collinearity(
        self, problem: PanelProblem, quiet: bool = False, hess: np.ndarray | None = None
    ) -> list[str]:
        """Set ``kept``; warn about (or reject) newly collinear coefficients.

        With ``quiet``, the new ones are returned for the caller's message
        instead (they are a consequence of dropping separated cells). For
        ``hess`` see :meth:`_gram`.
        """
        gram, self._gram_diag = self._gram(problem, hess)
        kept = independent_columns(gram, self.priority)
        # Only covariates are the user's to hear about. Redundant fixed-effect
        # columns (nested effects, a reference level without rows, panels in
        # disconnected pieces) and indicator columns without any observed cell
        # change the parametrization, not the fit; as in fixest they are
        # dropped quietly (NaN, listed in collinear_names_).
        covariate = np.isin(self.kinds, ["numeric", "categorical"])
        empty = (self._gram_diag == 0) & (np.asarray(self.kinds) == "categorical")
        new = ~kept & covariate & ~empty & ~self._reported
        self.kept = kept
        self._reported |= new
        names = [self.names[i] for i in np.flatnonzero(new)]
        if not names or quiet:
            return names
        what = describe_dropped(names)
        earlier = ("the intercept, " if self.fit_intercept else "") + "fixed effects or earlier"
        if self.collinear == "raise":
            raise ValueError(
                f"Collinearity: {what} are linear combinations of {earlier} covariates on "
                "the observed rows, so the model cannot identify them. Remove them, or pass "
                "collinear='drop' to drop them."
            )
        warn(
            f"Collinearity: {what} are linear combinations of {earlier} covariates on the "
            "observed rows; they were dropped and are reported as NaN in coef_ (see "
            "collinear_names_).",
            CollinearityWarning,
        )
        return names

    def _restricted_design(self) -> FactoredDesign:
        return restrict_design(self.design, self.kept)

    @staticmethod
    def _unidentified(names: list[str]) -> str:
        if not names:
            return ""
        shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        return f" Without them the rows left cannot identify {shown}, reported as NaN."

    def screen(
        self, problem: PanelProblem, make_objective: Callable | None = None
    ) -> tuple | None:
        """Drop separated fixed-effect levels, then collinear coefficients.

        ``problem``'s weights are replaced when cells are dropped. With
        ``make_objective`` (as in :meth:`fit`) the collinearity screen may
        read Newton's first Hessian; :meth:`_start`'s result is returned for
        :meth:`fit` to reuse (None if nothing was made).
        """
        if self.fit_intercept or self.active:
            self._check_not_all_boundary(problem)
        if not self.active:
            return None
        self.unobserved = unobserved_levels(self.spec, self.data, problem)
        boundary = (self.wording.low, self.wording.high)
        levels, cells, messages = separated_levels(
            self.spec, self.data, self.family, problem, boundary
        )
        # Collinearity in the data as given is the user's to hear about; what
        # only the dropping of separated cells makes unidentifiable is told
        # with the separation. Where no cells are dropped the problem is the
        # solve's, and Newton's first Hessian may serve as the Gram matrix.
        start = None
        if cells is None and make_objective is not None:
            start = self._start(problem, make_objective)
        self._collinearity(
            problem, hess=None if start is None or start[2] is None else start[2][2]
        )
        if cells is None:
            return start
        self.levels = levels
        self._drop_cells(problem, cells, "the levels of " + "; ".join(messages))
        unidentified = self._collinearity(problem, quiet=True)
        n_rows = _count(self.data.from_grid(cells))
        warn(
            "Separation: " + "; ".join(messages) + f". Their {n_rows} row(s) were dropped: the "
            "maximum likelihood estimate of their effect is infinite and they do not inform "
            f"the other coefficients; predictions there are {self.wording.limit}."
            + self._unidentified(unidentified),
            SeparationWarning,
        )
        return None

    # --------------------------------------------------------------- solve
    def _covariate_separation(
        self, objective: Any, problem: PanelProblem, result: NewtonResult
    ) -> bool:
        idx = np.flatnonzero(self.kept)
        kept_priority = np.argsort(np.argsort(self.priority)[idx])
        cells, gamma, suspicious = separating_cells(
            objective.design,
            self.family,
            problem,
            result.grad,
            result.hess,
            kept_priority,
            objective if hasattr(objective, "chunk_sums") else None,
            self._curvature_floor(objective, problem, result.coef),
        )
        involved = self._involved(gamma) if gamma is not None else []
        if suspicious:
            warn(
                "Possible separation: at the solution Newton still pushes some cells with "
                f"{self.wording.rows} further toward it, but no exact certificate was found; "
                "coefficients may be diverging and the result may be inaccurate.",
                ConvergenceWarning,
            )
        if cells is None:
            return False
        names = (
            "a combination of " + ", ".join(repr(n) for n in involved)
            if len(involved) > 1
            else (repr(involved[0]) if involved else "a combination of fixed effects")
        )
        self._drop_cells(problem, cells, names)
        unidentified = self._collinearity(problem, quiet=True)
        n_rows = _count(self.data.from_grid(cells))
        warn(
            f"Separation: {names} separate(s) the data: {n_rows} row(s) with {self.wording.rows} "
            "are fitted perfectly only as the coefficient(s) go to infinity. Those rows were "
            "dropped and the model refitted." + self._unidentified(unidentified),
            SeparationWarning,
        )
        return True

    def _check_not_all_boundary(self, problem: PanelProblem) -> None:
        try:
            check_not_all_boundary(self.family, problem)
        except ValueError as exc:
            if self.wording.all_low is None:
                raise
            raise ValueError(self.wording.all_low) from exc

    def _involved(self, gamma: np.ndarray) -> list[str]:
        """Names of the covariates that the separating direction (kept coordinates) uses."""
        idx = np.flatnonzero(self.kept)
        size = np.abs(gamma) * np.sqrt(np.maximum(self._gram_diag[idx], 0.0))
        big = idx[size > 1e-6 * size.max()]
        return [self.names[i] for i in big if self.kinds[i] in ("numeric", "categorical")]

    def fit(
        self,
        problem: PanelProblem,
        make_objective: Callable[[FactoredDesign], tuple[Any, np.ndarray]],
        solve: Callable[[Any, np.ndarray], NewtonResult],
    ) -> tuple[Any, NewtonResult]:
        """Screen, solve, and re-solve while separation is found.

        Parameters
        ----------
        problem : PanelProblem
            The fit's arrays; its weights change when cells are dropped.
        make_objective : callable
            ``make_objective(design)`` returns ``(objective, coef0)`` for the
            current ``problem`` on ``design``.
        solve : callable
            ``solve(objective, coef0)`` runs the solver (Newton, or proximal
            Newton for an L1 penalty) and returns its result.

        Returns
        -------
        objective : PenalizedObjective
            The objective of the last solve, on the design restricted to the
            kept coefficients (:func:`~panelglm._ident.kept.restrict_design`).
        result : NewtonResult
            The solution over the kept coefficients; :func:`~panelglm._ident.kept.expand`
            and :func:`~panelglm._ident.kept.embed` place its vectors and matrices among
            all of them.
        """
        start = self.screen(problem, make_objective)
        n_iter = 0
        for round_ in range(MAX_ROUNDS + 1):
            if round_ == 0 and start is not None:
                objective, coef0 = self._first_objective(start, make_objective)
            else:
                design = restrict_design(self.design, self.kept)
                objective, coef0 = make_objective(design)
            result = solve(objective, coef0)
            n_iter += result.n_iter
            if (
                round_ == MAX_ROUNDS
                or not self.active
                or not self._covariate_separation(objective, problem, result)
            ):
                break
        return objective, dataclasses.replace(result, n_iter=n_iter)
