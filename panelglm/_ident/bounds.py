"""A bound that settles the screen for separation after a solve without a pass over the cells.

After the solve, :func:`~panelglm._ident.certificate.separating_cells` asks
whether the next Newton step ``d = -H^-1 g`` would move some cell at a
boundary of ``y`` toward it by more than
:data:`~panelglm._ident.certificate.STEP_TRIGGER`: a pass over every cell for
``X d``. At a converged solution the step is tiny, and a bound on every
cell's ``|x_c' d|`` from numbers already at hand answers the question in the
common case.

For any cell ``c`` of curvature ``t_c > 0`` the Hessian ``H = X' T X / W``
(``W`` the total weight) is at least ``t_c x_c x_c' / W``, so
``x_c' H^-1 x_c <= W / t_c`` (the cell's leverage is at most one), and by
Cauchy-Schwarz::

    (x_c' d)^2 <= (x_c' H^-1 x_c) (d' H d) <= (W / t_c) * (-g' d).

With ``t_min`` a lower bound of the curvature over the cells of positive
weight, ``sqrt(W (-g' d) / t_min)`` bounds ``|x_c' d|`` on every one of
them. The curvature of a canonical link depends on the linear predictor
(and the trials and weights) only, and is smallest at one end of the
predictor's range; that range is bounded block by block from the
coefficients, the blocks' values (exactly for blocks smaller than the grid)
and, for cell-level columns, their extremes, which the panel keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .._engine.problem import PanelProblem
from .._model.blocks import DenseBlock
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._util.lazy import compute, is_lazy, where

# Links whose canonical curvature (the variance function at the mean) is
# monotone or unimodal in the linear predictor: its minimum over a range is
# at one of its ends (Poisson: mu; binomial: m p (1 - p); Gaussian: 1).
_ENDPOINT_LINKS = ("log", "logit", "identity")


def predictor_range(
    design: FactoredDesign,
    beta: np.ndarray,
    offset: tuple[np.ndarray, tuple[int, ...]] | None,
    column_range: Mapping[str, tuple[float, float]],
) -> tuple[float, float]:
    """Bounds of the linear predictor ``X beta + offset`` over every cell.

    Parameters
    ----------
    design : FactoredDesign
        The design.
    beta : ndarray
        Its coefficients.
    offset : (ndarray, axes) or None
        The offset as :class:`~panelglm._engine.problem.PanelProblem` holds it.
    column_range : mapping of str to (float, float)
        Smallest and largest value of a column of a cell-level dense block,
        by name; such a block's part is bounded column by column from them
        (a column without an entry is read).

    Returns
    -------
    lo, hi : float
        NaN if a part is not finite.
    """
    lo = hi = 0.0
    every = tuple(range(design.ndim))
    for blk, sl in zip(design.blocks, design.slices(), strict=True):
        b = beta[sl]
        if isinstance(blk, DenseBlock) and blk.axes == every and blk.axes:
            for q, name in enumerate(blk.names):
                if name in column_range:
                    c_lo, c_hi = column_range[name]
                else:
                    col = blk.values[..., q]
                    c_lo, c_hi = float(np.min(col)), float(np.max(col))
                ends = (b[q] * c_lo, b[q] * c_hi)
                lo, hi = lo + min(ends), hi + max(ends)
            continue
        if isinstance(blk, DenseBlock):
            part = blk.values @ b
        else:  # one level per cell; code -1 (no column) adds nothing
            part = np.append(b, 0.0)[blk.codes]
        if part.size:
            lo, hi = lo + float(np.min(part)), hi + float(np.max(part))
    if offset is not None and offset[0].size:
        lo, hi = lo + float(np.min(offset[0])), hi + float(np.max(offset[0]))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.nan, np.nan
    return lo, hi


def curvature_floor(family: Family, problem: PanelProblem, lo: float, hi: float) -> float:
    """A lower bound of ``-w h`` over the cells of positive weight, given ``lo <= eta <= hi``.

    0.0 where none is known: a link that is not canonical (its curvature
    depends on ``y``) or not among those whose curvature is smallest at an
    end of the range, or trials that are not all positive.
    """
    if not family.canonical or family.link not in _ENDPOINT_LINKS or not np.isfinite(lo + hi):
        return 0.0
    m = problem.m
    # The curvature of these families grows with the trials (m p (1 - p)).
    m_min = float(m) if np.ndim(m) == 0 else float(np.min(m))
    if not m_min > 0:
        return 0.0
    ends = np.array([lo, hi])
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        h = np.broadcast_to(family.grad_hess(np.zeros(2), ends, m_min)[1], ends.shape)
    t = float(np.min(-h))
    w = problem.w
    if w is None:
        w_min = 1.0
    elif is_lazy(w):  # a Dask-backed panel's weights: one reduction
        w_min = float(compute(where(w > 0, w, np.inf).min())[0])
    else:
        w_min = float(np.min(w, where=w > 0, initial=np.inf))
    floor = t * w_min
    return floor if np.isfinite(floor) and floor > 0 else 0.0


def step_bound(grad: np.ndarray, step: np.ndarray, total_weight: float, floor: float) -> float:
    """An upper bound of ``|x_c' step|`` over the cells of curvature at least ``floor``.

    ``step`` is the Newton step ``-H^-1 grad`` of the objective whose Hessian
    is ``X' T X / total_weight`` (plus a penalty's, which only lowers the
    bound); ``inf`` when no bound is known.
    """
    if not floor > 0:
        return np.inf
    decrement = abs(float(grad @ step))  # -g'd = g' H^-1 g, the squared Newton decrement
    bound = np.sqrt(decrement * total_weight / floor)
    return float(bound) if np.isfinite(bound) else np.inf


def settled_without_pass(
    grad: np.ndarray,
    step: np.ndarray,
    total_weight: float,
    floor: Callable[[], float],
    trigger: float,
) -> bool:
    """Whether no cell's ``|x_c' step|`` can exceed half of ``trigger`` (see the module)."""
    # The margin of two covers the rounding of the Hessian, the step and the
    # range's sums, which are all far below it in double precision.
    return step_bound(grad, step, total_weight, floor()) <= 0.5 * trigger
