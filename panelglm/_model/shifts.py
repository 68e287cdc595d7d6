"""Shifts of numeric columns: centring, inside the solver, the columns that need it.

A column whose mean dwarfs its range (a Unix timestamp observed over minutes)
is nearly collinear with the intercept, and the Hessian's condition number
grows as the square of that ratio. Subtracting the mean changes nothing in
the model when there is an intercept (it absorbs the constant), so such a
column is shifted when the design is laid out (:func:`column_shift`, stored
in the fitted :class:`~panelglm._model.spec.ModelSpec`) and the solver's intercept
and covariance are mapped back to the columns as given (:func:`shift_map`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import ModelSpec

# A column whose mean exceeds its range this many times (a Unix timestamp
# observed over minutes) is nearly collinear with the intercept: the Hessian's
# condition number grows as (mean / range)^2, 1e13 for such a timestamp.
SHIFT_RATIO = 10.0


def column_shift(values: np.ndarray) -> float:
    """The constant the solver subtracts from a numeric column: its mean, if it dwarfs its range.

    The model is the same (the intercept absorbs the constant, and the
    reported intercept is mapped back), but the Newton system and the
    information matrix are solved in well-conditioned coordinates.

    Parameters
    ----------
    values : ndarray
        The column over the axes it varies along.

    Returns
    -------
    float
        The mean of ``values``, or 0.0 when the column needs no shift.

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm._model.shifts import column_shift
    >>> column_shift(np.array([1.7e9, 1.7e9 + 60.0]))
    1700000030.0
    >>> column_shift(np.array([-1.0, 2.0]))
    0.0
    """
    if values.size == 0:
        return 0.0
    return shift_of(
        float(np.min(values)), float(np.max(values)), float(np.mean(values, dtype=np.float64))
    )


def shift_of(lo: float, hi: float, mean: float) -> float:
    """:func:`column_shift` from a column's extremes and mean."""
    spread = hi - lo
    return mean if 0 < spread and dwarfs(mean, spread) else 0.0


def dwarfs(mean: Any, spread: Any) -> Any:
    """Whether a mean is large enough next to a range to need centring (elementwise)."""
    return np.abs(mean) > SHIFT_RATIO * spread


def to_user(t: np.ndarray, arr: np.ndarray) -> np.ndarray:
    """Coefficients (``t v``) or their covariance (``t C t'``) in the user's columns.

    NaN entries (coefficients not estimated) stay NaN; they do not spread to
    the intercept, whose row of ``t`` is zero where they are.
    """
    filled = np.nan_to_num(arr)
    mapped = t @ filled if arr.ndim == 1 else t @ filled @ t.T
    return np.where(np.isnan(arr), np.nan, mapped)


def shift_map(spec: ModelSpec, kept: np.ndarray) -> np.ndarray | None:
    """The linear map from the solver's coefficients to the user's, or None if identity.

    Only the intercept changes: ``b0 = b0' - sum_j shift_j b_j`` over the
    estimated (``kept``, user order) shifted columns.

    Parameters
    ----------
    spec : ModelSpec
        The fitted terms.
    kept : ndarray of bool
        Which coefficients were estimated, in user order.

    Returns
    -------
    ndarray of shape (P, P) or None
    """
    shifts = np.where(kept, spec.shifts, 0.0)
    if not spec.has_intercept or not shifts.any():
        return None
    t = np.eye(len(shifts))
    t[0, 1:] = -shifts[1:]
    return t


# Beyond these magnitudes a column's squares, summed with weights and means in
# the Newton system, overflow float64 (about 1.8e308) or fall among its
# subnormal numbers (below 2.2e-308), where they keep few or no digits.
MAX_MAGNITUDE = 1e152
MIN_MAGNITUDE = 1e-152


def check_magnitude(name: Any, lo: float, hi: float, shift: float) -> None:
    """Raise if a numeric column, less its shift, is too large or too small to solve with.

    Parameters
    ----------
    name : str
        The column's name, for the message.
    lo, hi : float
        Its smallest and largest observed values (NaN for a column without any).
    shift : float
        What the solver subtracts from it (see :func:`column_shift`).

    Raises
    ------
    ValueError
        If its largest magnitude is above ``MAX_MAGNITUDE`` or, not zero,
        below ``MIN_MAGNITUDE``.
    """
    top = max(abs(hi - shift), abs(lo - shift))
    if not np.isfinite(top) or MIN_MAGNITUDE <= top <= MAX_MAGNITUDE or top == 0.0:
        return
    big = top > MAX_MAGNITUDE
    raise ValueError(
        f"The covariate {name!r} has values of magnitude up to {top:.3g}, "
        f"{'above' if big else 'below'} {MAX_MAGNITUDE if big else MIN_MAGNITUDE:g}: "
        f"the products of such values in the Newton system "
        f"{'overflow' if big else 'underflow'} float64. Rescale the column (e.g. "
        f"{'divide' if big else 'multiply'} it by {top if big else 1 / top:.3g}); its "
        "coefficient scales inversely."
    )
