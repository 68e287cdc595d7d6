"""Separation by a direction of the coefficients, certified exactly before cells are dropped.

A covariate that is positive only where ``y = 0`` separates those cells: no
fixed-effect level shows it (:func:`panelglm._ident.separation.separated_levels`).
Newton's last step reveals it: it still moves the separated cells' linear
predictor by about one unit, where a converged fit moves nothing. The
"iterative rectifier" of Correia, Guimaraes & Zylkin (2021) then certifies it
exactly: a direction ``gamma`` with ``X gamma = 0`` off the boundary and
pointing to the boundary on the separated cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg

from .._engine.objective import PanelProblem
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._util.lazy import is_lazy
from .bounds import settled_without_pass
from .collinearity import null_space_basis
from .grid_ops import InMemory, OnSlabs
from .separation import boundary_signs

# At a separated direction each Newton step moves the separated cells' linear
# predictor by about -1 (g / h = -mu / mu for Poisson, -1 / (1 - p) for the
# logit), however close to convergence the objective looks; in a converged fit
# without separation the last step is of order sqrt(tol). Half a unit tells
# the two apart with a wide margin on both sides.
STEP_TRIGGER = 0.5
# Iterations of the rectifier. Started from Newton's own direction it usually
# certifies separation in one or two; the bound only limits the cost (two
# passes over the grid each) of an inconclusive search.
RECTIFIER_MAX_ITER = 50
# Relative size below which an entry of the rectifier's fit counts as zero.
ZERO_TOL = 1e-6


def _pushes_to_boundary(objective: Any, family: Family, step: np.ndarray) -> bool:
    """Whether ``step`` moves some boundary cell's linear predictor toward it by enough."""

    def count(sub: PanelProblem, eta: np.ndarray) -> tuple[float]:
        s = boundary_signs(family, sub)
        eta -= sub.offset_grid()  # X step, the offset of chunk_sums' eta removed
        return (float(np.count_nonzero(s * eta > STEP_TRIGGER)),)

    return objective.chunk_sums(step, count)[0] > 0


def separating_cells(
    design: FactoredDesign,
    family: Family,
    problem: PanelProblem,
    grad: np.ndarray,
    hess: np.ndarray,
    priority: np.ndarray,
    objective: Any = None,
    curvature_floor: Callable[[], float] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """Cells separated by a direction of the coefficients, certified exactly.

    Parameters
    ----------
    design : FactoredDesign
        The design of the solve (collinear columns already removed).
    family : Family
        Poisson or binomial.
    problem : PanelProblem
        Response, trials and weights.
    grad, hess : ndarray
        Gradient and Hessian of the objective at the solution.
    priority : ndarray of int
        Priority order of the coefficients, for the null-space basis.
    objective : PenalizedObjective, optional
        The solve's objective; when given, Newton's last step is screened
        chunk by chunk on it, without an array over all cells.
    curvature_floor : callable, optional
        ``curvature_floor()``: a lower bound of the curvature ``-w h`` over
        the cells of positive weight at the solution, 0.0 if none is known
        (:mod:`panelglm._ident.bounds`); with ``objective``, the screen of
        Newton's last step is settled from it when it can be, without a pass.

    Returns
    -------
    cells : ndarray of bool or None
        Separated cells, if a certificate was found.
    direction : ndarray or None
        The certifying direction ``gamma``: ``X gamma`` is zero on the cells
        off the boundary and points to the boundary on the separated ones.
    suspicious : bool
        Whether Newton's last step pointed to separation that the rectifier
        could not certify within its iteration budget.
    """
    if family.separation is None:
        return None, None, False
    exact = True
    try:
        # As in the solver: Cholesky's accuracy does not suffer from the
        # columns' scales (a timestamp next to an intercept), a generic
        # condition estimate would.
        step = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), grad)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        step, exact = -scipy.linalg.lstsq(hess, grad)[0], False
    if (
        objective is not None
        and curvature_floor is not None
        and exact
        and settled_without_pass(grad, step, objective.total_weight, curvature_floor, STEP_TRIGGER)
    ):
        # No cell's linear predictor moves by half the trigger (the bound of
        # panelglm._ident.bounds): the pass below would find none.
        return None, None, False
    if objective is not None and not _pushes_to_boundary(objective, family, step):
        return None, None, False  # the common case, settled without N-sized arrays
    # On a Dask-backed panel the arrays below are lazy: each reduction is a
    # pass over the slabs, each product with the design a pass of the engine.
    grid = OnSlabs(design) if is_lazy(problem.y) else InMemory(design)
    s = boundary_signs(family, problem)
    if not s.any():
        return None, None, False
    push = s * grid.linear_predictor(step)
    if not np.any(push > STEP_TRIGGER):
        return None, None, False

    w = 1.0 if problem.w is None else problem.w
    interior = (s == 0) & (w > 0)
    # Directions that leave every interior cell unchanged: X_I gamma = 0.
    if interior.any():
        basis = null_space_basis(grid.hessian(np.where(interior, w, 0.0)), priority)
    else:
        basis = np.eye(design.n_coef)
    if basis.shape[1] == 0:
        return None, None, False
    w_b = np.where(s != 0, w, 0.0)
    gram_b = basis.T @ grid.hessian(w_b) @ basis
    try:
        factor = scipy.linalg.cho_factor(gram_b)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None, None, True
    # The iterative rectifier: fit a non-negative target on the boundary cells
    # by least squares within those directions, clip the fit at zero, repeat.
    # A fit that is already non-negative is a certificate of separation.
    u = np.clip(push, 0.0, None) * (s != 0)
    start = float(u.max())
    for _ in range(RECTIFIER_MAX_ITER):
        rhs = basis.T @ grid.gradient(w_b * s * u)
        gamma = basis @ scipy.linalg.cho_solve(factor, rhs)
        xg = grid.linear_predictor(gamma)
        z = np.where(s != 0, s * xg, 0.0)
        zmax = float(np.max(z))
        if zmax <= ZERO_TOL * start:
            return None, None, False  # the target shrank to nothing: no separation
        tiny = ZERO_TOL * zmax
        if float(np.max(np.where(interior, np.abs(xg), 0.0))) > tiny:
            break  # only nearly in the null space: not an exact certificate
        z = np.where(np.abs(z) <= tiny, 0.0, z)
        if float(z.min()) >= 0.0:
            return z > 0, gamma, False
        u = np.maximum(z, 0.0)
    return None, None, True
