"""From long-format rows to the panel grid, one column at a time.

A :class:`Grid` records, for the rows of a long frame, which cell of the
``n_1 x ... x n_D`` panel each row is. Columns are then laid out at the level
they vary along (:func:`detect_axes`, :func:`lay_out`) without ever building
a full ``N``-sized array per column.

Memory matters here: a panel of 1e8 cells must not cost an ``int64`` array per
dimension. Level codes use the smallest integer type that holds them, and rows
that already come in the grid's C order (the usual case for data written out
by a program) need no permutation at all: a cell-level column is then laid
out as a view of the caller's array.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np
import pandas as pd

# Cells per chunk when a pass over all N cells is split along the first axis:
# 2**16 float64 values are 512 KiB: a chunk and its few rows stay in the caches,
# and the per-call overhead of numpy is still small against the work.
CHUNK_CELLS = 1 << 16


def show_value(value: object) -> str:
    """``repr`` of a level or value as the user wrote it (``3``, not ``np.int64(3)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fmt_levels(dims: tuple[str, ...], levels: tuple) -> str:
    return ", ".join(f"{d}={show_value(v)}" for d, v in zip(dims, levels, strict=True))


def code_dtype(n: int) -> np.dtype:
    """The smallest signed integer type that holds ``0 .. n`` (and ``-1``)."""
    for dt in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


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
        For each dimension, the level position of every row (smallest int type).
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

    @property
    def n_cells(self) -> int:
        """Number of cells of the full grid."""
        return int(np.prod(self.shape))

    @property
    def is_balanced(self) -> bool:
        """Whether every cell of the grid has a row."""
        return self.n_rows == self.n_cells

    @cached_property
    def row_of_cell(self) -> np.ndarray | None:
        """Each cell's row, C order (``-1``: none); ``None`` if row ``c`` is cell ``c``."""
        if in_c_order(self.codes, self.shape):
            return None
        return _permutation(self.cells(), self.n_cells)

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

    # ------------------------------------------------- rows <-> cells
    def chunks(self, cells: int = CHUNK_CELLS) -> list[tuple[int, int]]:
        """Ranges of the first axis holding about ``cells`` cells each."""
        n0, rest = self.shape[0], int(np.prod(self.shape[1:]))
        step = max(1, cells // max(rest, 1))
        return [(s, min(s + step, n0)) for s in range(0, n0, step)]

    def gather(self, values: np.ndarray, start: int, stop: int, fill: float = 0) -> np.ndarray:
        """Row values of the cells whose first-axis position is in ``[start, stop)``.

        Cells without a row (unbalanced panels) get ``fill``.
        """
        rest = int(np.prod(self.shape[1:]))
        sl = slice(start * rest, stop * rest)
        order = self.row_of_cell
        if order is None:
            out = values[sl]
        else:
            idx = order[sl]
            out = values[idx]
            if not self.is_balanced:
                out[idx < 0] = fill
        return out.reshape((stop - start, *self.shape[1:]))

    def to_grid(self, values: np.ndarray, fill: float = 0) -> np.ndarray:
        """One value per row placed on the full grid (a view when rows are in C order).

        Cells without a row (unbalanced panels) get ``fill``.
        """
        order = self.row_of_cell
        if order is None:
            return values.reshape(self.shape)
        if self.is_balanced:
            return values[order].reshape(self.shape)
        out = np.full(self.n_cells, fill, dtype=np.result_type(values.dtype, type(fill)))
        out[self.cells()] = values
        return out.reshape(self.shape)

    def from_grid(self, arr: np.ndarray) -> np.ndarray:
        """A full-grid array read back in the rows' order."""
        flat = np.broadcast_to(arr, self.shape).reshape(-1)
        order = self.row_of_cell
        if order is None:
            return flat
        if not self.is_balanced:
            return flat[self.cells()]
        out = np.empty(self.n_rows, dtype=flat.dtype)
        out[order] = flat
        return out


def in_c_order(codes: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> bool:
    """Whether row ``c`` is cell ``c`` of the grid, for every cell, checked slab by slab."""
    n_cells = int(np.prod(shape))
    if not codes or len(codes[0]) != n_cells:
        return False
    rest = int(np.prod(shape[1:]))
    ramps = [np.arange(n, dtype=c.dtype) for n, c in zip(shape, codes, strict=True)]
    step = max(1, CHUNK_CELLS // max(rest, 1))
    for s in range(0, shape[0], step):
        e = min(s + step, shape[0])
        sub = (e - s, *shape[1:])
        for a, c in enumerate(codes):
            expect = ramps[a][s:e] if a == 0 else ramps[a]
            view = expect.reshape([-1 if b == a else 1 for b in range(len(shape))])
            if not np.array_equal(c[s * rest : e * rest].reshape(sub), np.broadcast_to(view, sub)):
                return False
    return True


def _permutation(cells: np.ndarray, n_cells: int) -> np.ndarray:
    dtype = np.int32 if n_cells < 2**31 else np.int64
    # -1 marks a cell without a row (unbalanced panels).
    order = np.empty(n_cells, dtype) if len(cells) == n_cells else np.full(n_cells, -1, dtype)
    order[cells] = np.arange(len(cells), dtype=order.dtype)
    return order


def _factorize(col: pd.Series, name: str) -> tuple[np.ndarray, pd.Index]:
    """Codes (smallest int type) and sorted levels of a dimension column."""
    dt = col.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iu" and len(col):
        # Integer dimensions (the common, large case): a presence table over
        # the value range replaces hashing, and no int64 array of N is made.
        values = col.to_numpy()
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 4 * len(values) + 1024:
            present = np.zeros(hi - lo + 1, dtype=bool)
            for s in range(0, len(values), CHUNK_CELLS):
                present[values[s : s + CHUNK_CELLS].astype(np.intp) - lo] = True
            uniq = np.flatnonzero(present) + lo
            lut = (np.cumsum(present) - 1).astype(code_dtype(len(uniq)))
            codes = np.empty(len(values), dtype=lut.dtype)
            for s in range(0, len(values), CHUNK_CELLS):
                codes[s : s + CHUNK_CELLS] = lut[values[s : s + CHUNK_CELLS].astype(np.intp) - lo]
            return codes, pd.Index(uniq.astype(dt), name=name)
    if col.isna().any():
        raise ValueError(f"Dimension column {name!r} has missing values.")
    code, uniq = pd.factorize(col, sort=True)
    return code.astype(code_dtype(len(uniq)), copy=False), pd.Index(uniq, name=name)


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
        code, lv = _factorize(frame[d], d)
        levels.append(lv)
        codes.append(code)
    grid = Grid(dims=dims, levels=tuple(levels), codes=tuple(codes))
    if in_c_order(grid.codes, grid.shape):
        grid.__dict__["row_of_cell"] = None  # prime the cached property
        return grid
    cells = grid.cells()
    counts = np.bincount(cells, minlength=int(np.prod(grid.shape)))
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
    del counts, empty
    grid.__dict__["row_of_cell"] = _permutation(cells, grid.n_cells)
    return grid


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
    """
    if not grid.is_balanced:
        return _unbalanced_axes(values, grid)
    return tuple(a for a in range(len(grid.dims)) if _varies_along(values, grid, a))


def lay_out(
    values: np.ndarray, grid: Grid, axes: tuple[int, ...], name: str, fill: float = 0
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
        return _lay_out_rows(values, grid, axes, name, fill)
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
    for s, e in grid.chunks():
        chunk = grid.gather(values, s, e)
        expect = full_view[s:e] if 0 in axes else full_view
        bad = chunk != expect
        if bad.any():
            cell = s * int(np.prod(shape[1:])) + int(np.flatnonzero(bad)[0])
            row = cell if order is None else int(order[cell])
            varying = [grid.dims[a] for a in range(ndim) if a not in axes]
            raise ValueError(
                f"Column {name!r} was fitted as varying only along "
                f"{[grid.dims[a] for a in axes]} but varies along {varying} here, "
                f"e.g. at row {row}."
            )
    return out


def _lay_out_rows(
    values: np.ndarray, grid: Grid, axes: tuple[int, ...], name: str, fill: float
) -> np.ndarray:
    """:func:`lay_out` for rows that do not fill the grid."""
    sub_shape = tuple(grid.shape[a] for a in axes)
    key = grid.flat_index(axes)
    # Some level combinations have no row; they get ``fill``, a harmless
    # finite value, since only weight-zero cells use it.
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
