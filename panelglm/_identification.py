"""Fit only what the data identify: separation and collinearity around the solve.

Without a penalty, the maximum likelihood estimate exists and is unique only if
no coefficient direction is collinear (the Gram matrix is singular along it)
and none separates (pushes some cells to the boundary of ``y`` at no cost
elsewhere). :class:`Identifier` runs the Newton solve inside both guards:

1. levels of fixed effects whose ``y`` all sit at a boundary: their cells are
   dropped (weight zero) with a :class:`~panelglm.exceptions.SeparationWarning`;
2. collinear coefficients: dropped (reported as NaN) with a
   :class:`~panelglm.exceptions.CollinearityWarning`, or an error;
3. Newton on the remaining coefficients;
4. separation by any other direction, certified exactly: those cells are
   dropped, the covariates involved named, and steps 2-4 repeated.

With ``alpha > 0`` the ridge penalty makes the optimum finite and unique, so
nothing is dropped and the fit equals scikit-learn's on the full data.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._collinearity import describe_dropped, independent_columns, priority_order
from ._factored import FactoredDesign
from ._families import Family
from ._newton import NewtonResult, newton_solve
from ._objective import PanelProblem
from ._panel import PanelData
from ._separation import (
    SeparatedLevels,
    check_not_all_boundary,
    separated_levels,
    separating_cells,
)
from ._terms import ModelSpec
from .exceptions import CollinearityWarning, SeparationWarning

# Separation found after a solve means another solve; each round removes at
# least one cell, but a panel needing more than a few rounds is pathological.
MAX_ROUNDS = 5


class RestrictedObjective:
    """An objective seen only along the kept coefficients (the others fixed at zero)."""

    def __init__(self, objective: Any, kept: np.ndarray) -> None:
        self.objective = objective
        self.kept = kept
        self._idx = np.flatnonzero(kept)

    def full(self, coef: np.ndarray) -> np.ndarray:
        """The coefficient vector with zeros where not kept."""
        out = np.zeros(self.kept.size)
        out[self._idx] = coef
        return out

    def loss(self, coef: np.ndarray) -> float:
        """Objective value."""
        return self.objective.loss(self.full(coef))

    def loss_grad_hess(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient and Hessian along the kept coefficients."""
        loss, grad, hess = self.objective.loss_grad_hess(self.full(coef))
        return loss, grad[self._idx], hess[np.ix_(self._idx, self._idx)]


class Identifier:
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
    ) -> None:
        self.spec, self.design, self.data, self.family = spec, design, data, family
        self.fit_intercept = fit_intercept
        self.collinear = collinear
        self.active = alpha == 0
        user_kinds = [t.kind for t in spec.terms for _ in t.names]
        n = design.n_coef
        self.names = [""] * n
        self.kinds = [""] * n
        for u, i in enumerate(order):
            self.names[i] = spec.names[u]
            self.kinds[i] = user_kinds[u]
        self.priority = priority_order(self.kinds)
        self.kept = np.ones(n, dtype=bool)
        self.levels: list[SeparatedLevels] = []
        self.separated: np.ndarray | None = None
        self._reported = np.zeros(n, dtype=bool)

    # ----------------------------------------------------------- screening
    def _drop_cells(self, problem: PanelProblem, cells: np.ndarray, culprit: str) -> None:
        w = np.ones(problem.shape) if problem.w is None else problem.w.copy()
        w[cells] = 0.0
        if not np.any(w > 0):
            raise ValueError(
                f"Complete separation: {culprit} fit(s) y perfectly on every row, so the "
                "maximum likelihood estimate does not exist (the coefficients would go to "
                "infinity) and no row is left to fit."
            )
        problem.w = w
        self.separated = cells if self.separated is None else self.separated | cells
        check_not_all_boundary(self.family, problem)

    def _collinearity(self, problem: PanelProblem, quiet: bool = False) -> list[str]:
        """Set ``kept``; warn about (or reject) newly collinear coefficients.

        With ``quiet``, the new ones are returned for the caller's message
        instead (they are a consequence of dropping separated cells).
        """
        w = np.ones(problem.shape) if problem.w is None else problem.w
        gram = self.design.hessian(w)
        self._gram_diag = np.diag(gram).copy()
        kept = independent_columns(gram, self.priority)
        # Indicator columns without any observed cell (a level whose cells
        # were all separated, or absent from an unbalanced panel) are simply
        # not estimable; they are reported as NaN without a warning.
        empty = (self._gram_diag == 0) & np.isin(self.kinds, ["fixed_effect", "categorical"])
        new = ~kept & ~empty & ~self._reported
        self.kept = kept
        self._reported |= new
        names = [self.names[i] for i in np.flatnonzero(new)]
        if not names or quiet:
            return names
        what = describe_dropped(names, [self.kinds[i] for i in np.flatnonzero(new)])
        if self.collinear == "raise":
            raise ValueError(
                f"Collinearity: {what} are linear combinations of the intercept, fixed "
                "effects or earlier covariates on the observed rows, so the model cannot "
                "identify them. Remove them, or pass collinear='drop' to drop them."
            )
        warnings.warn(
            f"Collinearity: {what} are linear combinations of the intercept, fixed "
            "effects or earlier covariates on the observed rows; they were dropped and "
            "are reported as NaN in coef_ (see collinear_names_).",
            CollinearityWarning,
            stacklevel=4,
        )
        return names

    @staticmethod
    def _unidentified(names: list[str]) -> str:
        if not names:
            return ""
        shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        return f" Without them the rows left cannot identify {shown}, reported as NaN."

    def screen(self, problem: PanelProblem) -> None:
        """Drop separated fixed-effect levels, then collinear coefficients.

        Parameters
        ----------
        problem : PanelProblem
            Its weights are replaced when cells are dropped.
        """
        if self.fit_intercept or self.active:
            check_not_all_boundary(self.family, problem)
        if not self.active:
            return
        levels, cells, messages = separated_levels(self.spec, self.data, self.family, problem)
        # Collinearity in the data as given is the user's to hear about; what
        # only the dropping of separated cells makes unidentifiable is told
        # with the separation.
        self._collinearity(problem)
        if cells is None:
            return
        self.levels = levels
        self._drop_cells(problem, cells, "the levels of " + "; ".join(messages))
        unidentified = self._collinearity(problem, quiet=True)
        n_rows = int(np.count_nonzero(self.data.from_grid(cells)))
        warnings.warn(
            "Separation: " + "; ".join(messages) + f". Their {n_rows} row(s) were dropped: the "
            "maximum likelihood estimate of their effect is infinite and they do not inform "
            "the other coefficients; predictions there are the limit (0, or the trials)."
            + self._unidentified(unidentified),
            SeparationWarning,
            stacklevel=3,
        )

    # --------------------------------------------------------------- solve
    def _solve(self, objective: Any, coef0: np.ndarray, **newton: Any) -> NewtonResult:
        if self.kept.all():
            return newton_solve(objective, coef0, **newton)
        restricted = RestrictedObjective(objective, self.kept)
        res = newton_solve(restricted, coef0[self.kept], **newton)
        n = self.kept.size
        hess = np.full((n, n), np.nan)
        hess[np.ix_(self.kept, self.kept)] = res.hess
        grad = np.zeros(n)
        grad[self.kept] = res.grad
        return dataclasses.replace(res, coef=restricted.full(res.coef), grad=grad, hess=hess)

    def _covariate_separation(self, problem: PanelProblem, result: NewtonResult) -> bool:
        idx = np.flatnonzero(self.kept)
        kept_priority = np.argsort(np.argsort(self.priority)[idx], kind="stable")
        cells, gamma, suspicious = separating_cells(
            self.design,
            self.family,
            problem,
            self.kept,
            result.grad[idx],
            result.hess[np.ix_(idx, idx)],
            kept_priority,
        )
        involved = self._involved(gamma) if gamma is not None else []
        if suspicious:
            warnings.warn(
                "Possible separation: at the solution Newton still pushes some cells with y "
                "at its boundary further toward it, but no exact certificate was found; "
                "coefficients may be diverging and the result may be inaccurate.",
                ConvergenceWarning,
                stacklevel=4,
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
        n_rows = int(np.count_nonzero(self.data.from_grid(cells)))
        warnings.warn(
            f"Separation: {names} separate(s) the data: {n_rows} row(s) with y at its boundary "
            "are fitted perfectly only as the coefficient(s) go to infinity. Those rows were "
            "dropped and the model refitted." + self._unidentified(unidentified),
            SeparationWarning,
            stacklevel=4,
        )
        return True

    def _involved(self, gamma: np.ndarray) -> list[str]:
        """Names of the covariates that the separating direction uses."""
        size = np.abs(gamma) * np.sqrt(np.maximum(self._gram_diag, 0.0))
        big = size > 1e-6 * size.max()
        return [
            self.names[i]
            for i in np.flatnonzero(big)
            if self.kinds[i] in ("numeric", "categorical")
        ]

    def fit(
        self,
        problem: PanelProblem,
        make_objective: Callable[[], tuple[Any, np.ndarray]],
        **newton: Any,
    ) -> tuple[Any, NewtonResult]:
        """Screen, solve, and re-solve while separation is found.

        Parameters
        ----------
        problem : PanelProblem
            The fit's arrays; its weights change when cells are dropped.
        make_objective : callable
            Returns ``(objective, coef0)`` for the current ``problem``.
        **newton : dict
            Arguments of :func:`newton_solve`.

        Returns
        -------
        objective : PenalizedObjective
            The objective of the last solve.
        result : NewtonResult
            Over all coefficients; those not kept are zero, their Hessian
            rows and columns NaN.
        """
        self.screen(problem)
        n_iter = 0
        for round_ in range(MAX_ROUNDS + 1):
            objective, coef0 = make_objective()
            result = self._solve(objective, coef0, **newton)
            n_iter += result.n_iter
            if (
                round_ == MAX_ROUNDS
                or not self.active
                or not self._covariate_separation(problem, result)
            ):
                break
        return objective, dataclasses.replace(result, n_iter=n_iter)
