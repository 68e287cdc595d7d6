"""Statistics at the solution (deviance, log-likelihood) without special functions per cell.

Both are the weighted log-likelihood sum ``sum w f`` at the solution (one
chunked pass of the kernels) plus sums over the response alone:
``deviance = 2 (sum w f_saturated(y) - sum w f)`` and
``loglik = sum w f + sum w const(y)``. Those two terms of ``y`` need ``log`` and
``gammaln``, some tens of nanoseconds a cell; for counts (the usual response of
a large panel) each distinct value is evaluated once and weighted by how often
it occurs, which costs three cheap passes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._data.layout import CHUNK_CELLS
from .._util.lazy import compute, is_lazy


def y_sums(
    funcs: list[Callable[[np.ndarray, np.ndarray | float], np.ndarray]],
    y: np.ndarray,
    m: np.ndarray | float,
    w: np.ndarray | None,
    counts: np.ndarray | None = None,
) -> list[float]:
    """``sum w func(y, m)`` for each function of the response (and scalar trials).

    ``counts`` is the response tallied by value
    (:func:`panelglm._engine.tally.tally`), a dot product per function; None
    (``y`` is not small counts, or was not tallied) sums over the cells.
    """
    if counts is not None:
        values = np.arange(len(counts), dtype=np.float64)
        return [float(np.dot(counts, f(values, m))) for f in funcs]
    totals = [0.0] * len(funcs)
    n0 = y.shape[0]
    step = max(1, CHUNK_CELLS // max(y.size // max(n0, 1), 1))
    for s in range(0, n0, step):
        ys = np.asarray(y[s : s + step], dtype=np.float64)
        ms = m[s : s + step] if np.ndim(m) and np.shape(m)[0] == n0 and n0 > 1 else m
        ws = None if w is None else w[s : s + step]
        for k, f in enumerate(funcs):
            vals = np.broadcast_to(f(ys, ms), ys.shape)
            totals[k] += float(np.sum(vals) if ws is None else np.vdot(ws, vals))
    return totals


def _constant_fits_exactly(family: Any, problem: Any) -> bool:
    """Whether the intercept-only model of ``problem`` fits every weighted cell exactly.

    Decided on the data rather than on its deviance, which rounding leaves a
    little above zero when it should be zero (``exp(log 3)`` is not 3). With
    the canonical link a constant fits exactly when ``y`` less the offset
    (identity link), or ``y`` over the mean at a zero intercept (log and
    logit links: the exposure, or half the trials), is one value on every
    cell of positive weight; zeros and full successes included, whose
    intercept is infinite.
    """
    if is_lazy(problem.y):
        return _lazy_constant_fits_exactly(family, problem)
    y = np.asarray(problem.y, dtype=np.float64)
    base = np.broadcast_to(
        family.mean(np.asarray(problem.offset_grid(), dtype=np.float64), problem.m), y.shape
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = y - base if family.link == "identity" else y / base
    if problem.w is not None:
        ratio = ratio[np.broadcast_to(problem.w, y.shape) > 0]
    ratio = ratio.reshape(-1)
    return ratio.size == 0 or bool(np.all(ratio == ratio[0]))


def _lazy_constant_fits_exactly(family: Any, problem: Any) -> bool:
    """:func:`_constant_fits_exactly` of a Dask-backed ``y``, from its ratio's extremes."""
    import dask.array as da

    base = family.mean(da.asarray(problem.offset_grid()).astype(np.float64), problem.m)
    ratio = problem.y - base if family.link == "identity" else problem.y / base
    ratio = da.broadcast_to(ratio, problem.shape)
    keep = True if problem.w is None else da.broadcast_to(problem.w, problem.shape) > 0
    n_nan, lo, hi = compute(
        (da.isnan(ratio) & keep).sum(),
        da.where(keep, ratio, np.inf).min(),
        da.where(keep, ratio, -np.inf).max(),
    )
    return not n_nan and (lo == hi or lo > hi)  # lo > hi: no cell of positive weight


def explained_deviance(
    family: Any, problem: Any, eta: np.ndarray, reference: Any, eta0: np.ndarray | float
) -> float:
    """D^2: the fraction of the deviance of ``reference`` at ``eta0`` that ``eta`` explains.

    ``reference`` is ``problem`` with its reference offset and ``eta0`` its
    intercept-only linear predictor.

    Where the reference's deviance is zero (a constant ``y``, or all zeros)
    scikit-learn's convention for R^2 (``force_finite``) applies: 1.0 for a
    perfect prediction, else 0.0, rather than a division by zero.
    """
    numerator = problem.deviance(family, eta)
    if numerator == 0.0:
        return 1.0
    if _constant_fits_exactly(family, reference):
        return 0.0
    return 1.0 - numerator / reference.deviance(family, eta0)
