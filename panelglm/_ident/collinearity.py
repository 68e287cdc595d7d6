"""Which coefficients the data identify: a rank-revealing pass over ``X' W X``.

The ``P x P`` weighted Gram matrix comes from a chunked pass engine
(:mod:`panelglm._engine.engines`: the Gaussian information at zero, whose curvature is
the cell weight), or the plain factored kernel when the design has no plan, so no
``N x P`` matrix, and with the chunked kernel no array over all cells, is formed. Its columns are
taken in a *priority* order -- intercept, fixed effects, then covariates in the
order the user gave them -- and a column is kept only if it is not (nearly) a
linear combination of the columns kept before it. As in fixest, a covariate
collinear with a fixed effect is the one dropped, and of two collinear
covariates the later one.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._engine.engines import make_engine
from .._engine.kernels import NumpyEngine
from .._engine.plan import make_plan
from .._engine.problem import PanelProblem
from .._model.blocks import DenseBlock
from .._model.factored import FactoredDesign
from .._model.families import GAUSSIAN
from .._model.shifts import dwarfs
from .._util.lazy import is_lazy
from .grid_ops import OnSlabs

# A column is collinear when the share of its (weighted) sum of squares not
# explained by the columns kept before it is below this: its R^2 on them
# exceeds 1 - 1e-10. fixest uses the same tolerance (collin.tol) on the same
# kind of Cholesky pivot.
COLLINEAR_TOL = 1e-10
# Rounding in a Cholesky factorization of the unit-diagonal Gram matrix is
# about P * eps, and eliminating a kept column whose pivot p is small divides
# it by p: after a nearly collinear column is kept, an exactly collinear one
# can show a pivot of eps * P / p. A pivot below this many times that bound
# is rounding, not signal, whatever COLLINEAR_TOL says.
ROUNDING_FACTOR = 10.0

# Columns are screened in blocks: one triangular solve per block brings the
# block up to date with every kept column (BLAS-3), and only the small
# Schur complement of the block is factored column by column in Python.
_BLOCK = 64

# Order in which kinds of terms claim their share of the column space.
_PRIORITY = {"intercept": 0, "fixed_effect": 1, "categorical": 2, "numeric": 2}


def priority_order(kinds: list[str], user_position: np.ndarray) -> np.ndarray:
    """Column positions by kind (intercept, fixed effects, covariates), then user order.

    Parameters
    ----------
    kinds : list of str
        The term kind of each column.
    user_position : ndarray of int
        Each column's position in the order the user sees the coefficients.
    """
    return np.lexsort((user_position, [_PRIORITY[k] for k in kinds]))


def _noise_floor(n: int, smallest_pivot: float) -> float:
    return ROUNDING_FACTOR * n * np.finfo(np.float64).eps / smallest_pivot


def weighted_gram(
    design: FactoredDesign, w: np.ndarray | None, center: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``X' W X`` from the Hessian kernel, with the dense columns centred if asked.

    Centring (valid when the intercept, internal column 0, is in the model and
    comes first in the priority order) leaves every later pivot unchanged in
    exact arithmetic. But a column with a large mean -- a timestamp -- has a
    tiny uncentred pivot (its R^2 on the intercept is near 1), which would
    raise the rounding floor of :func:`independent_columns` for every later
    column; centred, its pivot is about one.

    Parameters
    ----------
    design : FactoredDesign
        The design; its first block is the intercept when ``center``.
    w : ndarray or None
        Cell weights on the grid (``None``: all ones).
    center : bool
        Whether to centre the dense blocks after the first.

    Returns
    -------
    gram : ndarray of shape (P, P)
        The (centred) weighted Gram matrix.
    diag : ndarray of shape (P,)
        The diagonal of the uncentred one, ``sum_c w_c X[c, j]^2``.
    """
    plan = make_plan(design)
    if plan is not None:
        return _chunked_gram(design, w, center)
    w_full = np.ones(design.shape) if w is None else w
    if not center:
        gram = design.hessian(w_full)
        return gram, np.diag(gram).copy()
    # Summed by the same kernel as the Gram matrix, so that their rounding
    # cancels in the intercept's row of the centred matrix.
    sums = design.gradient(w_full)
    sum_w = float(np.sum(w_full))
    centring = _Centring(design, sums, sum_w)
    return centring.finish(centring.design.hessian(w_full))


class _Centring:
    """Centring of the dense columns after the intercept, in the Gram matrix where possible.

    A dense block that is not cell-level is centred by a copy (it is small). A
    cell-level column is centred in the Gram matrix instead, ``C = G - r s' -
    s r' + W r r'`` (``r`` its mean, ``s = X' w``), which is accurate unless
    its mean dwarfs its range (a timestamp); such a block is copied and
    centred as well. ``design`` is the design to take the Gram matrix of;
    :meth:`finish` completes the centring.
    """

    def __init__(self, design: FactoredDesign, sums: np.ndarray, sum_w: float) -> None:
        n = design.n_coef
        means = sums / sum_w
        self.shift = np.zeros(n)  # the mean of every centred column
        self.applied = np.zeros(n)  # the part of it subtracted in a copied block
        self.sums, self.sum_w = sums, sum_w
        blocks = list(design.blocks)
        every = tuple(range(design.ndim))
        for i, (blk, sl) in enumerate(zip(design.blocks, design.slices(), strict=True)):
            if i == 0 or not isinstance(blk, DenseBlock):
                continue
            self.shift[sl] = means[sl]
            if blk.axes == every:
                spread = np.max(blk.values, axis=every) - np.min(blk.values, axis=every)
                if not np.any(dwarfs(means[sl], spread)):
                    continue  # centred in the Gram matrix, without a copy
            blocks[i] = DenseBlock(blk.axes, blk.values - means[sl], blk.names)
            self.applied[sl] = means[sl]
        self.copied = bool(self.applied.any())
        self.design = FactoredDesign(shape=design.shape, blocks=blocks) if self.copied else design

    def finish(self, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The centred Gram matrix from that of :attr:`design`, and the uncentred diagonal."""
        r = self.shift - self.applied
        s_c = self.sums - self.sum_w * self.applied  # X' w of the copied-and-centred design
        gram = gram + self.sum_w * np.outer(r, r) - np.outer(r, s_c) - np.outer(s_c, r)
        return gram, np.diag(gram) + self.sum_w * self.shift**2


def gram_from_hessian(
    design: FactoredDesign,
    hess: np.ndarray,
    center: bool,
    column_range: dict[str, tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`weighted_gram` from a Hessian that is a positive constant times ``X' W X``.

    Newton's Hessian at a start where every cell has the same curvature
    ``c > 0`` (a canonical link, the intercept alone, no offset, one number
    of trials) is ``c X' W X / sum(w)``. Both of :func:`independent_columns`'s
    decisions are the same for any positive multiple of the Gram matrix (it
    scales the matrix to a unit diagonal), and so are the uncentred
    diagonal's uses (zero or not, relative sizes); the centring is linear in
    the matrix. So the Hessian serves as the Gram matrix, without its pass.

    The dense columns after the intercept are centred in the matrix, as
    :class:`_Centring` does for a cell-level column; the intercept's row
    holds their weighted sums. Where a column's weighted mean may dwarf its
    spread (see :func:`~panelglm._model.shifts.dwarfs`), that would lose
    digits, and :class:`_Centring` centres a copy of the block instead: None
    is returned, for the Gram pass to run.

    Parameters
    ----------
    design : FactoredDesign
        The design the Hessian is of; its first block is the intercept when
        ``center``.
    hess : ndarray of shape (P, P)
        The Hessian.
    center : bool
        Whether to centre the dense blocks after the first.
    column_range : dict of str to (float, float)
        Smallest and largest value of numeric columns over the observed
        cells, by name (a block with a column without an entry is read);
        a spread no larger than the block's only makes the check stricter.

    Returns
    -------
    (gram, diag) or None
        As :func:`weighted_gram`, each in the Hessian's units.
    """
    diag = np.diag(hess).copy()
    if not center:
        return hess, diag
    sums, sum_w = hess[:, 0], float(hess[0, 0])
    if not sum_w > 0:
        return None
    means = sums / sum_w
    shift = np.zeros(design.n_coef)
    for i, (blk, sl) in enumerate(zip(design.blocks, design.slices(), strict=True)):
        if i == 0 or not isinstance(blk, DenseBlock):
            continue
        if all(n in column_range for n in blk.names):  # no read of the block's values
            spread = np.array([column_range[n][1] - column_range[n][0] for n in blk.names])
        else:
            axes = tuple(range(blk.values.ndim - 1))
            spread = np.max(blk.values, axis=axes) - np.min(blk.values, axis=axes)
        # A constant column (spread 0) is one, and is left to the Gram pass too.
        if not np.all(np.isfinite(spread)) or np.any(dwarfs(means[sl], spread)):
            return None
        shift[sl] = means[sl]
    gram = hess + sum_w * np.outer(shift, shift) - np.outer(shift, sums) - np.outer(sums, shift)
    return gram, diag


def _gram_engine(design: FactoredDesign, w: np.ndarray | None) -> NumpyEngine:
    # No response: the Gaussian curvature is the weight itself, whatever y is.
    problem = PanelProblem(tuple(design.shape), y=np.zeros(()), m=1.0, w=w)
    return make_engine(design, GAUSSIAN, problem)


def column_sums(design: FactoredDesign) -> np.ndarray:
    """``X' 1`` from the blocks alone, without a pass over the cells.

    Each level combination of a block's axes stands for the same number of cells.
    """
    out = np.empty(design.n_coef)
    n_cells = float(np.prod(design.shape))
    for blk, sl in zip(design.blocks, design.slices(), strict=True):
        copies = n_cells / float(np.prod([design.shape[a] for a in blk.axes]))
        if isinstance(blk, DenseBlock):
            out[sl] = blk.values.reshape(-1, blk.n_cols).sum(axis=0) * copies
        else:
            codes = blk.codes.ravel()
            out[sl] = np.bincount(codes[codes >= 0], minlength=blk.n_cols) * copies
    return out


def _chunked_gram(
    design: FactoredDesign, w: np.ndarray | None, center: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`weighted_gram` from the chunked kernels: one or two passes, no N-sized array."""
    kern = _gram_engine(design, w)

    def weights(row, s, e):
        if w is None:
            row.fill(1.0)
        else:
            np.copyto(row, w[s:e])

    def gram_of(k: NumpyEngine) -> np.ndarray:
        return k.information(np.zeros(n))

    n = design.n_coef
    if not center:
        gram = gram_of(kern)
        return gram, np.diag(gram).copy()
    if w is None:
        sums = column_sums(design)
    elif is_lazy(w):  # X'w by a pass of the Dask tasks
        sums = OnSlabs(design).gradient(w)
    else:
        sums = kern.assembler.row_gradient(kern.rows_pass(weights), 0)
    sum_w = float(np.prod(design.shape) if w is None else w.sum())
    centring = _Centring(design, sums, sum_w)
    kern = _gram_engine(centring.design, w) if centring.copied else kern
    return centring.finish(gram_of(kern))


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
    the kept columns, relative to its own) is below ``tol``, or below the
    rounding that the smallest pivot kept so far lets through. The common
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
    n = order.size
    try:
        pivots = np.diag(scipy.linalg.cholesky(g, lower=True)) ** 2
        if np.min(pivots) > max(tol, _noise_floor(n, np.min(pivots))):
            kept[order] = True
            return kept
    except np.linalg.LinAlgError:
        pass
    fac = np.zeros((n, n))  # Cholesky factor of the kept columns, in kept order
    keep: list[int] = []
    smallest = 1.0  # smallest pivot kept so far (the unit diagonal bounds it)
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
            if pivot <= max(tol, _noise_floor(n, smallest)):
                continue
            smallest = min(smallest, pivot)
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
