"""A column's axes and its layout on the panel grid.

:func:`detect_axes` finds the dimensions a column varies along; :func:`lay_out`
stores it once per level combination of those. On a full grid both work chunk
by chunk through :meth:`Grid.gather`, so nothing of size ``N`` is made; on an
unbalanced grid (``PanelDesign(balanced=False)``) they work on the rows, and the
level combinations without a row get a fill value.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .layout import show_value

if TYPE_CHECKING:
    from .layout import Grid


def _first_along(arr: np.ndarray, axis: int) -> np.ndarray:
    return arr[(slice(None),) * axis + (slice(0, 1),)]


def _depends_only_on(values: np.ndarray, grid: Grid, axes: tuple[int, ...]) -> bool:
    """Whether rows with the same levels along ``axes`` always have the same value."""
    key = grid.flat_index(axes)
    last = np.empty(int(np.prod([grid.shape[a] for a in axes])), dtype=values.dtype)
    last[key] = values  # per level combination, the value of its last row
    return np.array_equal(last[key], values)


def _unbalanced_axes(values: np.ndarray, grid: Grid) -> tuple[int, ...]:
    """:func:`detect_axes` on rows that do not fill the grid (row by row, not by chunk)."""
    every = range(len(grid.dims))
    others = [tuple(b for b in every if b != a) for a in every]
    axes = tuple(a for a in every if not _depends_only_on(values, grid, others[a]))
    if _depends_only_on(values, grid, axes):
        return axes
    rest = [a for a in every if a not in axes]
    for k in range(1, len(rest) + 1):
        for extra in combinations(rest, k):
            candidate = tuple(sorted(axes + extra))
            if _depends_only_on(values, grid, candidate):
                return candidate
    raise AssertionError("unreachable: a column always depends only on all axes")


def _varies_along(values: np.ndarray, grid: Grid, axis: int) -> bool:
    ref = grid.gather(values, 0, 1) if axis == 0 else None
    for s, e in grid.chunks():
        chunk = grid.gather(values, s, e)
        first = _first_along(chunk, axis) if ref is None else ref
        if not np.array_equal(chunk, np.broadcast_to(first, chunk.shape)):
            return True
    return False


def detect_axes(values: np.ndarray, grid: Grid) -> tuple[int, ...]:
    """Axes along which a column varies; it is constant along all the others.

    Parameters
    ----------
    values : ndarray
        One value per row (numbers, or integer codes of a categorical).
    grid : Grid
        The rows' cells.

    Returns
    -------
    tuple of int
        Sorted axes. On a full grid, a column constant along two axes
        separately is constant along both jointly, so one test per axis
        suffices. With missing cells it need not be (if every (d0, d1) pair
        has a row at one d2 level only, a column varying along d2 looks
        constant along each axis); then the smallest set of axes (the first
        in axis order among equals) that the values depend on is returned.
        An axis with a single level is always included: whether the column
        varies along it cannot be seen, so it is stored along it (at no cost,
        the axis has length one) and new data may vary along it.
    """
    single = {a for a, n in enumerate(grid.shape) if n == 1}
    if not grid.is_balanced:
        return tuple(sorted(single.union(_unbalanced_axes(values, grid))))
    return tuple(a for a in range(len(grid.dims)) if a in single or _varies_along(values, grid, a))


def _beyond(
    values: np.ndarray, grid: Grid, axes: tuple[int, ...], name: str, row: int, stated: str
) -> ValueError:
    """The error for a column that varies along an axis not in ``axes``.

    It names the axes it does vary along (not every other axis: a price
    fitted by week may vary by product but not by customer) and a row where
    it does.
    """
    rest = [a for a in range(len(grid.dims)) if a not in axes]
    if grid.is_balanced:
        extra = [a for a in rest if _varies_along(values, grid, a)]
    else:
        every = range(len(grid.dims))
        extra = [
            a
            for a in rest
            if not _depends_only_on(values, grid, tuple(b for b in every if b != a))
        ]
    # With missing cells no single axis may be to blame; then name them all.
    here = sorted(set(axes).union(extra or rest))
    cell = ", ".join(
        f"{grid.dims[a]}={show_value(grid.levels[a][grid.codes[a][row]])}"
        for a in range(len(grid.dims))
    )
    return ValueError(
        f"Column {name!r} {stated} varying only along {[grid.dims[a] for a in axes]} but "
        f"varies along {[grid.dims[a] for a in (extra or rest)]} here, e.g. at row {row} "
        f"({cell}): this data has it at the level of {[grid.dims[a] for a in here]}."
    )


def lay_out(
    values: np.ndarray,
    grid: Grid,
    axes: tuple[int, ...],
    name: str,
    fill: float = 0,
    stated: str = "was fitted as",
    checked: bool = False,
) -> np.ndarray:
    """Place a column's row values on the grid over ``axes``.

    A column over every axis in C-ordered rows comes back as a read-only view
    of ``values``; otherwise one value per level combination of ``axes`` is
    read, and every other row is checked against it, one chunk at a time.

    Parameters
    ----------
    values : ndarray
        One value per row.
    grid : Grid
        The rows' cells.
    axes : tuple of int
        The axes the column is stored along.
    name : str
        Column name, for error messages.
    fill : float, default=0
        Value of the level combinations that no row has (unbalanced panels).
    stated : str, default="was fitted as"
        Where ``axes`` come from, for the error message.
    checked : bool, default=False
        Whether ``values`` are known to vary along ``axes`` only (they were
        just detected from them): then the rows are not checked again.

    Returns
    -------
    ndarray of shape ``tuple(grid.shape[a] for a in axes)``

    Raises
    ------
    ValueError
        If the column varies along an axis not in ``axes``.
    """
    ndim = len(grid.dims)
    if tuple(axes) == tuple(range(ndim)):
        return grid.to_grid(values, fill)
    if not grid.is_balanced:
        return _lay_out_rows(values, grid, axes, name, fill, stated, checked)
    shape = grid.shape
    sub_shape = tuple(shape[a] for a in axes)
    # The cell at position 0 of every axis not in `axes` represents its level combination.
    strides = np.cumprod((1, *shape[::-1]))[:-1][::-1]
    flat = np.zeros(sub_shape, dtype=np.intp)
    for k, a in enumerate(axes):
        ramp = np.arange(shape[a], dtype=np.intp) * strides[a]
        flat += ramp.reshape([-1 if j == k else 1 for j in range(len(axes))])
    order = grid.row_of_cell
    out = values[flat if order is None else order[flat]]
    full_view = out.reshape([shape[a] if a in axes else 1 for a in range(ndim)])
    for s, e in () if checked else grid.chunks():
        chunk = grid.gather(values, s, e)
        expect = full_view[s:e] if 0 in axes else full_view
        bad = chunk != expect
        if bad.any():
            cell = s * int(np.prod(shape[1:])) + int(np.flatnonzero(bad)[0])
            row = cell if order is None else int(order[cell])
            raise _beyond(values, grid, axes, name, row, stated)
    return out


def _lay_out_rows(
    values: np.ndarray,
    grid: Grid,
    axes: tuple[int, ...],
    name: str,
    fill: float,
    stated: str,
    checked: bool = False,
) -> np.ndarray:
    """:func:`lay_out` for rows that do not fill the grid."""
    sub_shape = tuple(grid.shape[a] for a in axes)
    key = grid.flat_index(axes)
    # Some level combinations have no row; they get ``fill``, a harmless
    # finite value, since only weight-zero cells use it.
    out = np.full(int(np.prod(sub_shape)), fill, dtype=values.dtype)
    out[key] = values
    bad = np.empty(0) if checked else np.flatnonzero(out[key] != values)
    if bad.size:
        raise _beyond(values, grid, axes, name, int(bad[0]), stated)
    return out.reshape(sub_shape)


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is laid out: the axes it varies along, and its categories.

    Attributes
    ----------
    name : str
        Column name.
    axes : tuple of int
        Sorted panel axes the column varies along.
    categories : pandas.Index or None
        Sorted levels of a categorical column; ``None`` for a numeric one.
    """

    name: str
    axes: tuple[int, ...]
    categories: pd.Index | None = None

    @property
    def is_categorical(self) -> bool:
        """Whether the column enters as treatment-coded dummies."""
        return self.categories is not None

    def codes(self, series: pd.Series) -> np.ndarray:
        """Positions of a categorical column's values among the fitted categories.

        Raises
        ------
        ValueError
            If a value is missing or was not seen when fitting.
        """
        if series.isna().any():
            raise ValueError(f"Column {self.name!r} has missing values.")
        values = series.to_numpy()
        codes = self.categories.get_indexer(values)
        if np.any(codes < 0):
            unseen = pd.unique(values[codes < 0])
            raise ValueError(
                f"Column {self.name!r} has level(s) {list(unseen)[:10]} not seen when fitting."
            )
        return codes


def is_categorical_dtype(series: pd.Series) -> bool:
    """Whether a column is coded as dummies rather than used as a number."""
    dt = series.dtype
    return (
        isinstance(dt, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dt)
        or pd.api.types.is_object_dtype(dt)
        or pd.api.types.is_string_dtype(dt)
    )


def numeric_values(series: pd.Series, name: str) -> np.ndarray:
    """A column as finite float64 (or float32, if stored so) values, or an error naming it."""
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise TypeError(f"Column {name!r} has dtype {series.dtype}; a numeric column is needed.")
    if pd.api.types.is_complex_dtype(series.dtype):
        # Casting to float would drop the imaginary part with only a warning.
        raise TypeError(
            f"Column {name!r} holds complex numbers (dtype {series.dtype}); a real numeric "
            "column is needed."
        )
    # float32 columns stay float32: the caller chose half the memory.
    dtype = np.float32 if series.dtype == np.float32 else np.float64
    if isinstance(series.dtype, np.dtype) and series.dtype.kind == "f":
        values = series.to_numpy(dtype=dtype)
        # A NaN or an infinity makes the sum NaN or infinite: one pass without
        # temporaries clears the usual column (an overflowing sum of finite
        # values only sends it to the exact checks below).
        if np.isfinite(np.add.reduce(values, dtype=np.float64)):
            return values
    if series.isna().any():
        raise ValueError(f"Column {name!r} has missing values (NaN).")
    values = series.to_numpy(dtype=dtype)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Column {name!r} has infinite values.")
    return values


def _varies(arr: np.ndarray, k: int) -> bool:
    return not np.array_equal(arr, np.broadcast_to(arr.take([0], axis=k), arr.shape))


def varying_axes(arr: np.ndarray, axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axes (of those ``arr`` is laid out over) along which it varies."""
    return tuple(a for k, a in enumerate(axes) if _varies(arr, k))


def narrow(
    arr: np.ndarray, own: tuple[int, ...], axes: tuple[int, ...]
) -> tuple[np.ndarray, list[int]]:
    """``arr`` (over ``own``) at the axes of ``axes`` it has; and those it drops but varies along.

    A column fitted at a lower level than new data has it must be constant
    along the axes dropped: the caller raises, naming them, if any is not.
    """
    extra = [a for k, a in enumerate(own) if a not in axes and _varies(arr, k)]
    return arr[tuple(slice(None) if a in axes else 0 for a in own)], extra


def widen(
    arr: np.ndarray, inner: tuple[int, ...], axes: tuple[int, ...], shape: tuple[int, ...]
) -> np.ndarray:
    """``arr`` over ``inner`` repeated over ``axes`` (a superset) of a grid of ``shape``.

    For a model that reads a column at a higher level than the column has
    (fitted from a frame where it varied there, or stated so).
    """
    if inner == axes:
        return arr
    arr = arr.reshape([shape[a] if a in inner else 1 for a in axes])
    return np.ascontiguousarray(np.broadcast_to(arr, [shape[a] for a in axes]))
