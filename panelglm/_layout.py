"""From long-format rows to the panel grid, one column at a time.

A :class:`Grid` records, for the rows of a long frame, which cell of the
``n_1 x ... x n_D`` panel each row is. Columns are then laid out at the level
they vary along (:func:`detect_axes`, :func:`lay_out`) without ever building
a full ``N``-sized array per column.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd


def show_value(value: object) -> str:
    """``repr`` of a level or value as the user wrote it (``3``, not ``np.int64(3)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fmt_levels(dims: tuple[str, ...], levels: tuple) -> str:
    return ", ".join(f"{d}={show_value(v)}" for d, v in zip(dims, levels, strict=True))


@dataclass(frozen=True)
class Grid:
    """Where each row of a long frame sits on the panel grid.

    Attributes
    ----------
    dims : tuple of str
        Names of the panel dimensions, in axis order.
    levels : tuple of pandas.Index
        Sorted levels of each dimension.
    codes : tuple of ndarray of int
        For each dimension, the level position of every row.
    """

    dims: tuple[str, ...]
    levels: tuple[pd.Index, ...]
    codes: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of levels of each dimension."""
        return tuple(len(lv) for lv in self.levels)

    @property
    def n_rows(self) -> int:
        """Number of rows of the frame the grid was built from."""
        return len(self.codes[0]) if self.codes else 0

    def flat_index(self, axes: tuple[int, ...]) -> np.ndarray:
        """Flat (C order) index of each row's level combination over ``axes``."""
        if not axes:
            return np.zeros(self.n_rows, dtype=np.intp)
        return np.ravel_multi_index(
            tuple(self.codes[a] for a in axes), tuple(self.shape[a] for a in axes)
        )

    def cells(self) -> np.ndarray:
        """Flat cell index of every row."""
        return self.flat_index(tuple(range(len(self.dims))))

    def describe_cell(self, flat: int, axes: tuple[int, ...] | None = None) -> str:
        """Human-readable ``dim=level`` list for a flat index over ``axes``."""
        axes = tuple(range(len(self.dims))) if axes is None else axes
        pos = np.unravel_index(flat, tuple(self.shape[a] for a in axes))
        return _fmt_levels(
            tuple(self.dims[a] for a in axes),
            tuple(self.levels[a][p] for a, p in zip(axes, pos, strict=True)),
        )


def build_grid(
    frame: pd.DataFrame, dims: list[str] | tuple[str, ...], balanced: bool = True
) -> Grid:
    """Factorize the dimension columns of ``frame`` and check it is a full panel.

    Parameters
    ----------
    frame : DataFrame
        Long-format data, one row per cell, rows in any order.
    dims : sequence of str
        Columns that identify a cell.
    balanced : bool, default=True
        Whether every cell of the full grid must have a row. If False, cells
        without a row are allowed (they get weight zero in a fit).

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        If a dimension column is missing or has missing values, if a cell
        appears twice, or (when ``balanced``) if a cell of the full grid has
        no row.
    """
    dims = tuple(dims)
    if len(frame) == 0:
        raise ValueError("The data has no rows.")
    missing = [d for d in dims if d not in frame.columns]
    if missing:
        raise ValueError(f"Dimension column(s) {missing} not found in the data.")
    levels, codes = [], []
    for d in dims:
        col = frame[d]
        if col.isna().any():
            raise ValueError(f"Dimension column {d!r} has missing values.")
        code, uniq = pd.factorize(col, sort=True)
        levels.append(pd.Index(uniq, name=d))
        codes.append(code.astype(np.intp, copy=False))
    grid = Grid(dims=dims, levels=tuple(levels), codes=tuple(codes))
    counts = np.bincount(grid.cells(), minlength=int(np.prod(grid.shape)))
    dup = np.flatnonzero(counts > 1)
    if dup.size:
        raise ValueError(
            f"Duplicate cells: {dup.size} level combination(s) of {list(dims)} appear more "
            f"than once, e.g. ({grid.describe_cell(int(dup[0]))}) appears "
            f"{int(counts[dup[0]])} times."
        )
    empty = np.flatnonzero(counts == 0)
    if empty.size and balanced:
        raise ValueError(
            f"Missing cells: the panel over {list(dims)} has {counts.size} cells but "
            f"{empty.size} have no row, e.g. ({grid.describe_cell(int(empty[0]))}). "
            "Pass balanced=False to PanelDesign to fit an unbalanced panel."
        )
    return grid


def _depends_only_on(values: np.ndarray, grid: Grid, axes: tuple[int, ...]) -> bool:
    """Whether rows with the same levels along ``axes`` always have the same value."""
    key = grid.flat_index(axes)
    last = np.empty(int(np.prod([grid.shape[a] for a in axes])), dtype=values.dtype)
    last[key] = values  # per level combination, the value of its last row
    return np.array_equal(last[key], values)


def _varies_along(values: np.ndarray, grid: Grid, axis: int) -> bool:
    return not _depends_only_on(values, grid, tuple(a for a in range(len(grid.dims)) if a != axis))


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
    """
    axes = tuple(a for a in range(len(grid.dims)) if _varies_along(values, grid, a))
    n_cells = int(np.prod(grid.shape, dtype=np.float64))
    if grid.n_rows == n_cells or _depends_only_on(values, grid, axes):
        return axes
    rest = [a for a in range(len(grid.dims)) if a not in axes]
    for k in range(1, len(rest) + 1):
        for extra in combinations(rest, k):
            candidate = tuple(sorted(axes + extra))
            if _depends_only_on(values, grid, candidate):
                return candidate
    raise AssertionError("unreachable: a column always depends only on all axes")


def lay_out(
    values: np.ndarray, grid: Grid, axes: tuple[int, ...], name: str, fill: float = 0
) -> np.ndarray:
    """Place a column's row values on the grid over ``axes``.

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

    Returns
    -------
    ndarray of shape ``tuple(grid.shape[a] for a in axes)``

    Raises
    ------
    ValueError
        If the column varies along an axis not in ``axes``.
    """
    sub_shape = tuple(grid.shape[a] for a in axes)
    key = grid.flat_index(axes)
    # In an unbalanced panel some level combinations have no row; they get
    # ``fill``, a harmless finite value, since only weight-zero cells use it.
    out = np.full(int(np.prod(sub_shape)), fill, dtype=values.dtype)
    out[key] = values
    bad = np.flatnonzero(out[key] != values)
    if bad.size:
        varying = [grid.dims[a] for a in range(len(grid.dims)) if a not in axes]
        raise ValueError(
            f"Column {name!r} was fitted as varying only along {[grid.dims[a] for a in axes]} "
            f"but varies along {varying} here, e.g. at row {int(bad[0])}."
        )
    return out.reshape(sub_shape)
