"""Which coefficients the data identify: a rank-revealing pass over ``X' W X``.

The ``P x P`` weighted Gram matrix comes from the factored Hessian kernel (with
the cell weights as ``h``), so no ``N x P`` matrix is formed. Its columns are
taken in a *priority* order -- intercept, fixed effects, then covariates in the
order the user gave them -- and a column is kept only if it is not (nearly) a
linear combination of the columns kept before it. As in fixest, a covariate
collinear with a fixed effect is the one dropped, and of two collinear
covariates the later one.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# A column is collinear when the share of its (weighted, uncentred) sum of
# squares not explained by the columns kept before it is below this: its
# R^2 on them exceeds 1 - 1e-10. fixest uses the same tolerance (collin.tol)
# on the same kind of Cholesky pivot; the Gram's own rounding is ~1e-13.
COLLINEAR_TOL = 1e-10

# Columns are screened in blocks: one triangular solve per block brings the
# block up to date with every kept column (BLAS-3), and only the small
# Schur complement of the block is factored column by column in Python.
_BLOCK = 64

# Order in which kinds of terms claim their share of the column space.
_PRIORITY = {"intercept": 0, "fixed_effect": 1, "categorical": 2, "numeric": 2}


def priority_order(kinds: list[str]) -> np.ndarray:
    """Column positions sorted by kind (intercept, fixed effects, covariates), stably."""
    return np.argsort([_PRIORITY[k] for k in kinds], kind="stable")


def independent_columns(
    gram: np.ndarray, priority: np.ndarray, tol: float = COLLINEAR_TOL
) -> np.ndarray:
    """Greedy selection of linearly independent columns in priority order.

    Parameters
    ----------
    gram : ndarray of shape (P, P)
        Symmetric positive semi-definite matrix ``X' W X``.
    priority : ndarray of int
        The order in which columns are considered.
    tol : float
        Relative residual below which a column counts as collinear with the
        columns kept before it.

    Returns
    -------
    kept : ndarray of bool of shape (P,)
        Columns kept; a column with zero diagonal (all zero where the weight
        is positive) is never kept.

    Notes
    -----
    This is an in-order Cholesky factorization of the Gram matrix scaled to a
    unit diagonal that skips a column whose pivot (its residual variance given
    the kept columns, relative to its own) is below ``tol``. The common
    full-rank case is a single LAPACK Cholesky.
    """
    p = gram.shape[0]
    kept = np.zeros(p, dtype=bool)
    diag = np.diag(gram)
    order = np.asarray([j for j in priority if diag[j] > 0], dtype=np.intp)
    if order.size == 0:
        return kept
    scale = 1.0 / np.sqrt(diag[order])
    g = gram[np.ix_(order, order)] * np.outer(scale, scale)
    try:
        chol = scipy.linalg.cholesky(g, lower=True)
        if np.min(np.diag(chol)) ** 2 > tol:
            kept[order] = True
            return kept
    except np.linalg.LinAlgError:
        pass
    n = order.size
    fac = np.zeros((n, n))  # Cholesky factor of the kept columns, in kept order
    keep: list[int] = []
    for start in range(0, n, _BLOCK):
        idx = np.arange(start, min(start + _BLOCK, n))
        schur = g[np.ix_(idx, idx)].copy()
        k = len(keep)
        if k:
            z = scipy.linalg.solve_triangular(fac[:k, :k], g[np.ix_(keep, idx)], lower=True)
            schur -= z.T @ z
        else:
            z = np.zeros((0, idx.size))
        local = np.zeros((idx.size, idx.size))
        chosen: list[int] = []
        for j in range(idx.size):
            pivot = schur[j, j]
            if pivot <= tol:
                continue
            col = schur[j:, j] / np.sqrt(pivot)
            local[j:, j] = col
            schur[j + 1 :, j + 1 :] -= np.outer(col[1:], col[1:])
            chosen.append(j)
        m = len(chosen)
        fac[k : k + m, :k] = z[:, chosen].T
        fac[k : k + m, k : k + m] = local[np.ix_(chosen, chosen)]
        keep.extend(int(idx[j]) for j in chosen)
    kept[order[keep]] = True
    return kept


def null_space_basis(
    gram: np.ndarray, priority: np.ndarray, tol: float = COLLINEAR_TOL
) -> np.ndarray:
    """A basis of the directions ``v`` with ``X v = 0`` where the weight is positive.

    Parameters
    ----------
    gram : ndarray of shape (P, P)
        ``X' W X`` over the cells of interest.
    priority : ndarray of int
        Column order for :func:`independent_columns`.
    tol : float
        Collinearity tolerance.

    Returns
    -------
    ndarray of shape (P, n_null)
        One column per dependent column ``j``: ``e_j`` minus its regression on
        the independent columns.
    """
    p = gram.shape[0]
    indep = independent_columns(gram, priority, tol)
    dep = np.flatnonzero(~indep)
    basis = np.zeros((p, dep.size))
    if dep.size == 0:
        return basis
    a = np.flatnonzero(indep)
    basis[dep, np.arange(dep.size)] = 1.0
    if a.size:
        coef = scipy.linalg.cho_solve(
            scipy.linalg.cho_factor(gram[np.ix_(a, a)]), gram[np.ix_(a, dep)]
        )
        basis[a] = -coef
    return basis


def describe_dropped(names: list[str], limit: int = 10) -> str:
    """The dropped covariates' names, as a phrase."""
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"the covariate coefficient(s) {shown}{more}"
