"""Proximal Newton for an L1-penalized smooth objective (the elastic net).

The problem is ``minimize F(b) + sum_j l1_j |b_j|`` with ``F`` smooth and
convex (the penalized objective of :mod:`panelglm._engine.objective`, which carries
the L2 part). Each iteration replaces ``F`` by its Newton model
``F(b) + g'd + d'Hd / 2``, minimizes model plus L1 term by cyclic coordinate
descent on the ``P x P`` Hessian (the N-sized work is only in ``g`` and ``H``),
and searches along the step on the full non-smooth objective, as glmnet and
glum's IRLS-CD do (Lee, Sun & Saunders, "Proximal Newton-type methods",
SIAM J. Optim. 2014). Coordinate descent soft-thresholds, so a coefficient
the lasso removes is exactly zero.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .newton import NewtonResult, SmoothObjective, newton_solve

# Coordinate descent stops when no coordinate moves by more than this (in
# units of the coefficients, relative to their size). It only has to find the
# support and the signs: the active-set solve below then gives the model's
# minimizer to rounding error.
CD_TOL = 1e-12
# Sweeps over the active coordinates between two full sweeps. Coordinate
# descent converges linearly, slowly for correlated columns; the active-set
# solve is what finishes, so a few dozen sweeps to settle the support suffice.
ACTIVE_SWEEPS = 50
# Full sweeps per quadratic model; each is followed by active sweeps and an
# attempt at the exact active-set solve, which succeeds once the support is right.
MAX_ROUNDS = 200


def _soft(u: float, t: float) -> float:
    """Soft thresholding: the minimizer of ``(z - u)^2 / 2 + t |z|``."""
    if u > t:
        return u - t
    if u < -t:
        return u + t
    return 0.0


def _sweep(coords, z, r, hess, diag, l1) -> float:
    """One cycle of exact coordinate minimizations; the largest relative move.

    ``r`` is the gradient of the quadratic model at ``z`` and is kept current.
    """
    biggest = 0.0
    for j in coords:
        d_j = diag[j]
        if d_j <= 0.0:  # a column with no curvature (all zero) cannot move
            continue
        old = z[j]
        new = _soft(old - r[j] / d_j, l1[j] / d_j)
        if new != old:
            z[j] = new
            r += (new - old) * hess[j]
            biggest = max(biggest, abs(new - old) / max(1.0, abs(new)))
    return biggest


def _active_solve(grad, hess, coef, l1, z) -> np.ndarray | None:
    """The model's exact minimizer on the support and signs of ``z``, if they are right.

    With the zero coordinates held at zero and the others' signs fixed, the
    model is a smooth quadratic whose minimizer solves one linear system. It
    is the answer if no sign flips and every zero coordinate satisfies the
    optimality condition ``|model gradient| <= l1``.
    """
    active = (z != 0.0) | (l1 == 0.0)
    a = np.flatnonzero(active)
    d = z - coef
    d[~active] = -coef[~active]
    sign = np.sign(z[a])
    if a.size:
        rhs = -(grad[a] + l1[a] * sign) - hess[np.ix_(a, ~active)] @ d[~active]
        try:
            d[a] = scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess[np.ix_(a, a)]), rhs)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            return None
    out = coef + d
    out[~active] = 0.0
    penalized = l1[a] > 0
    if np.any(np.sign(out[a][penalized]) != sign[penalized]):
        return None
    model_grad = grad + hess @ d
    slack = 1e-9 * np.maximum(l1, np.abs(grad))  # rounding in the model gradient
    if np.any(np.abs(model_grad[~active]) > l1[~active] + slack[~active]):
        return None
    return out


def minimize_l1_quadratic(
    grad: np.ndarray, hess: np.ndarray, coef: np.ndarray, l1: np.ndarray
) -> np.ndarray:
    """Minimize ``grad'(z - coef) + (z - coef)'hess(z - coef) / 2 + sum(l1 |z|)``.

    Parameters
    ----------
    grad : ndarray of shape (P,)
        Gradient of the smooth part at ``coef``.
    hess : ndarray of shape (P, P)
        Its Hessian (symmetric, positive semi-definite).
    coef : ndarray of shape (P,)
        The expansion point, where coordinate descent starts.
    l1 : ndarray of shape (P,)
        Non-negative L1 weight of each coefficient (zero: not penalized).

    Returns
    -------
    ndarray of shape (P,)
        The minimizer; coefficients set to zero are exactly ``0.0``.
    """
    z = coef.copy()
    r = grad.copy()  # gradient of the model at z
    diag = np.diag(hess).copy()
    everything = range(len(z))
    for _ in range(MAX_ROUNDS):
        moved = _sweep(everything, z, r, hess, diag, l1)
        if moved <= CD_TOL:
            return z
        active = np.flatnonzero((z != 0.0) | (l1 == 0.0))
        for _ in range(ACTIVE_SWEEPS):
            if _sweep(active, z, r, hess, diag, l1) <= CD_TOL:
                break
        exact = _active_solve(grad, hess, coef, l1, z)
        if exact is not None:
            return exact
    return z


def prox_newton_solve(
    objective: SmoothObjective,
    l1: np.ndarray,
    coef0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    verbose: int = 0,
) -> NewtonResult:
    """Minimize ``objective(coef) + sum(l1 * |coef|)`` by proximal Newton.

    Parameters
    ----------
    objective : SmoothObjective
        The smooth convex part (loss and L2 penalty).
    l1 : ndarray of shape (n_coef,)
        L1 weight of every coefficient (zero for the intercept).
    coef0 : ndarray
        Starting point.
    tol : float
        As in :func:`~panelglm._solve.newton.newton_solve`, which this is with the
        L1 term as its penalty and coordinate descent as its model solver.
    max_iter : int
        Maximum number of Newton iterations.
    verbose : int
        Print one line per iteration if positive.

    Returns
    -------
    NewtonResult
        ``loss`` is the full objective (with the L1 term); ``grad`` and
        ``hess`` are those of the smooth part.

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached or the line search cannot decrease the
        objective before convergence.
    """
    l1 = np.asarray(l1, dtype=np.float64)
    return newton_solve(
        objective,
        coef0,
        tol=tol,
        max_iter=max_iter,
        verbose=verbose,
        penalty=lambda b: float(l1 @ np.abs(b)),
        minimize_model=lambda g, h, b: minimize_l1_quadratic(g, h, b, l1),
        name="Proximal Newton",
    )
