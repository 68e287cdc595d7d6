"""Input checks whose errors name the column, dimension, level or row at fault.

Every check reads the caller's data and never writes to it. Errors are
``TypeError`` for a value of the wrong kind and ``ValueError`` for a value
out of range, as in scikit-learn.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

from .._util.lazy import as_float64, compute, is_lazy, masked
from .._util.warn import warn
from ..exceptions import SparsePanelWarning
from .layout import MIN_DENSITY, show_value
from .xarray import cell_rows


def _kind(value: Any) -> str:
    """Coarse kind of a Python value, for telling mixed object columns apart."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, Number):
        return "number"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def check_hashable(values: np.ndarray, what: str) -> None:
    """Reject values of an object column that can be neither a number nor a level.

    Levels are found by hashing, so an array or a list in a cell would fail
    deep inside pandas with a message that does not say which column.

    Parameters
    ----------
    values : ndarray of object
        The column's values.
    what : str
        The column, for the message ("Column 'x'").

    Raises
    ------
    TypeError
        Naming the column and the first such value.
    """
    # Types first (a C-level pass). Only a type without a hash (arrays, lists)
    # or a tuple (hashable only if its items are) needs its values looked at.
    odd = tuple(
        t
        for t in set(map(type, values))
        if not issubclass(t, (str, Number, np.bool_))
        and (t.__hash__ is None or issubclass(t, tuple))
    )
    if not odd:
        return
    for v in values:
        if isinstance(v, odd):
            try:
                hash(v)
            except TypeError:
                raise TypeError(
                    f"{what} holds {type(v).__name__} values, such as "
                    f"{v!r}, which are neither numbers nor categories (they are not "
                    "hashable); a column needs one number or one category per row, e.g. "
                    "spread the values over columns of their own."
                ) from None


def check_dtype(series: pd.Series, name: str, role: str = "column") -> None:
    """Reject object columns whose values are of mixed kinds or are numbers.

    An object column of strings (or of any one non-numeric kind) is a
    categorical column. One that mixes kinds, such as ``[1, "a"]``, has no
    consistent meaning (``1`` and ``"1"`` would even get the same coefficient
    name), and one that holds only numbers was most likely meant to be
    numeric; both are rejected so the user decides.

    Parameters
    ----------
    series : Series
        The column.
    name : str
        Its name, for the message.
    role : str
        What it is used as ("dimension", "column").

    Raises
    ------
    TypeError
        For a mixed or numeric object column, or one holding values that are
        not hashable (arrays, lists).
    """
    if not pd.api.types.is_object_dtype(series.dtype):
        return
    values = series.dropna().to_numpy()
    check_hashable(values, f"{role.capitalize()} {name!r}")
    kinds = sorted({_kind(v) for v in values})
    if len(kinds) > 1:
        examples = {k: next(v for v in values if _kind(v) == k) for k in kinds}
        raise TypeError(
            f"{role.capitalize()} {name!r} mixes values of different types "
            f"({', '.join(f'{k} such as {v!r}' for k, v in examples.items())}); "
            "convert it to one type, e.g. with .astype(str) or pd.to_numeric."
        )
    if kinds == ["number"]:
        raise TypeError(
            f"{role.capitalize()} {name!r} holds numbers in an object column; convert it "
            "with pd.to_numeric to use it as a number, or .astype('category') to use it "
            "as categories."
        )


def check_unique_columns(frame: pd.DataFrame, what: str = "The data") -> None:
    """Reject a frame with two columns of the same name.

    ``frame[name]`` is then a DataFrame, not a column, and nothing says which
    of the copies is meant.

    Parameters
    ----------
    frame : DataFrame
        The frame.
    what : str
        What it is, for the message ("The data", "The table for 'firm'").

    Raises
    ------
    ValueError
        Naming the duplicated columns.
    """
    dup = frame.columns[frame.columns.duplicated()].unique()
    if len(dup):
        raise ValueError(
            f"{what} has duplicated column name(s) {', '.join(show_value(c) for c in dup)}; each "
            "column needs a distinct name (rename the copies, or drop them with "
            "df.loc[:, ~df.columns.duplicated()])."
        )


def warn_if_sparse(n_rows: int, shape: tuple[int, ...], dims: tuple[str, ...]) -> None:
    """Warn when an unbalanced panel's full grid is much larger than its data."""
    n_cells = int(np.prod(shape, dtype=np.float64))
    density = n_rows / n_cells
    if density < MIN_DENSITY:
        warn(
            f"The panel over {list(dims)} has {n_cells} cells but only {n_rows} rows "
            f"({density:.1%} observed); every array of the fit has one value per cell "
            f"({n_cells * 8 / 2**20:.1f} MiB each), so memory and time grow with the full "
            "grid, not with the data.",
            SparsePanelWarning,
        )


def describe_row(data: Any, i: int) -> str:
    """``row i (index label; dim=level, ...)`` for row ``i`` of a PanelData."""
    grid = data.grid
    cell = ", ".join(
        f"{d}={show_value(grid.levels[a][grid.codes[a][i]])}" for a, d in enumerate(grid.dims)
    )
    return f"row {i} (index {show_value(data.index[i])}: {cell})"


def check_target(y: Any, data: Any) -> np.ndarray:
    """The target as finite float64 values, one per row.

    Parameters
    ----------
    y : array-like of shape (n_rows,) or (n_rows, 1)
        The target, in the rows' order; for data read from an xarray Dataset
        also a DataArray over the panel or the name of a cell-level variable.
    data : PanelData
        The rows, for the length and for locating bad values.

    Returns
    -------
    ndarray of shape (n_rows,)

    Raises
    ------
    TypeError
        If ``y`` is not numeric, or is complex.
    ValueError
        If ``y`` has the wrong shape or a missing or infinite value.
    """
    y = cell_rows(data, y, "The target y")
    n = data.n_rows
    if is_lazy(y):
        return lazy_values(y, data, "The target y")
    if isinstance(y, pd.DataFrame) and y.shape[1] == 1:
        y = y.iloc[:, 0]
    if isinstance(y, pd.Series) and (
        not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_object_dtype(y.dtype)
    ):
        if not pd.api.types.is_bool_dtype(y.dtype):
            raise TypeError(f"The target y has dtype {y.dtype}; a numeric target is needed.")
    try:
        dtype = y.dtype if hasattr(y, "dtype") else np.asarray(y).dtype
    except (TypeError, ValueError):
        dtype = None  # not an array at all: the conversion below says why
    if pd.api.types.is_complex_dtype(dtype):
        # Casting to float would drop the imaginary part with only a warning.
        raise TypeError(f"The target y holds complex numbers (dtype {dtype}); y must be real.")
    try:
        if isinstance(y, pd.Series | pd.DataFrame):
            arr = y.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"The target y must be numeric: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(
            f"y must be one-dimensional with {n} values (one per row), got shape {np.shape(arr)}."
        )
    # A NaN or an infinity makes the sum NaN or infinite: one pass without
    # temporaries clears the usual target (an overflowing sum of finite
    # values only sends it to the search, which then finds nothing).
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(np.add.reduce(arr, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(arr)) if not finite else np.empty(0, np.intp)
    if bad.size:
        what = "missing (NaN)" if np.isnan(arr[bad[0]]) else "infinite"
        raise ValueError(
            f"The target y has {bad.size} missing or infinite value(s); the first, at "
            f"{describe_row(data, int(bad[0]))}, is {what}."
        )
    return arr


def lazy_values(values: Any, data: Any, what: str) -> Any:
    """A Dask-backed per-cell array checked as :func:`check_target` checks one in memory.

    Its dtype is checked at once and its values by one reduction; cells
    without data (NaN in a Dataset's target) hold 0, as they do in memory.
    It stays lazy: the passes' tasks read it.
    """
    if values.dtype.kind not in "fiub":
        raise TypeError(f"{what} has dtype {values.dtype}; a numeric one is needed.")
    values = as_float64(values.reshape(-1))
    if values.shape != (data.n_rows,):
        raise ValueError(f"{what} must have {data.n_rows} values, got {values.shape[0]}.")
    present = data.present
    bad = ~np.isfinite(values)
    if present is not None:
        present = present.reshape(-1)
        bad &= present
        values = masked(values, present, 0.0)
    (n_bad,) = compute(bad.sum())
    if n_bad:
        raise ValueError(f"{what} has {int(n_bad)} missing or infinite value(s).")
    return values


def check_response(family: Any, y: np.ndarray, m: np.ndarray | float, data: Any) -> None:
    """Raise the family's objection to ``y``, naming the first row at fault.

    Parameters
    ----------
    family : Family
        Its ``check_y`` says what is wrong, if anything.
    y : ndarray of shape (n_rows,)
        The target, per row.
    m : ndarray of shape (n_rows,) or float
        Binomial trials, per row.
    data : PanelData
        The rows.

    Raises
    ------
    ValueError
        If the family rejects ``y``.
    """
    m = np.broadcast_to(m, y.shape)
    reason = family.check_y(y, m)
    if reason is None:
        return
    # ``check_y`` judges whole arrays; a prefix that fails keeps failing as it
    # grows, so bisecting on the prefix length finds the first bad row in
    # O(log n) checks whatever the family's rule is.
    lo, hi = 0, len(y)  # y[:lo] passes, y[:hi] fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if family.check_y(y[:mid], m[:mid]) is None:
            lo = mid
        else:
            hi = mid
    i = hi - 1
    extra = f" (trials {show_value(m[i])})" if np.any(m != 1) else ""
    raise ValueError(
        f"The target y {reason}; e.g. {describe_row(data, i)} has y={show_value(y[i])}{extra}."
    )


def first_bad_row(data: Any, ok_rows: np.ndarray) -> str:
    """Description of the first row where ``ok_rows`` is False ("" if none)."""
    bad = np.flatnonzero(~ok_rows)
    return f"; e.g. at {describe_row(data, int(bad[0]))}" if bad.size else ""


# The dense Newton system (and the collinearity screen's Gram) of this many
# bytes or more is refused before anything of that size is allocated: a few
# such matrices live at once, and their factorisation is cubic in the size.
MAX_DENSE_HESSIAN_BYTES = 2**31


def check_dense_size(terms: Any) -> None:
    """Refuse a model whose dense ``P x P`` Hessian would exceed the budget.

    Parameters
    ----------
    terms : sequence of Term
        The model's terms (fixed effects and categorical columns among them).

    Raises
    ------
    ValueError
        Giving the coefficients, the bytes of one ``P x P`` matrix and the
        largest terms, and naming ``absorb=``.
    """
    sizes = [(len(t.names), t) for t in terms]
    p = sum(n for n, _ in sizes)
    nbytes = 8 * p * p
    if nbytes < MAX_DENSE_HESSIAN_BYTES:
        return
    big = sorted(sizes, key=lambda nt: -nt[0])[:3]
    shown = ", ".join(f"{t.kind} {list(t.source)} ({n} coefficients)" for n, t in big)
    raise ValueError(
        f"The model has {p} coefficients: its dense Newton system would be a {p} x {p} "
        f"matrix of {nbytes / 2**30:.1f} GiB (several at once), beyond the "
        f"{MAX_DENSE_HESSIAN_BYTES / 2**30:.0f} GiB budget. The largest terms: {shown}. "
        "Fixed effects with many levels belong in absorb=[...] (PanelDesign or the "
        "estimator), which solves them through their structure, in memory linear "
        "in their levels."
    )
