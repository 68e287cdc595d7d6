"""Building the grid of a long frame: its dimension columns factorized, or read off in C order.

:func:`build_grid` finds each row's cell (``Grid``) and checks the panel:
no cell twice, none missing unless allowed, no grid beyond the memory
budget. Rows that are every cell once in C order, as programs write panels
out, are recognised from their pattern without factorizing any column.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .layout import (
    CHUNK_CELLS,
    MAX_SPARSE_GRID_BYTES,
    MIN_DENSITY,
    Grid,
    RampCodes,
    _permutation,
    code_dtype,
    follows_c_order,
    in_c_order,
)


def _factorize(col: pd.Series, name: str) -> tuple[np.ndarray, pd.Index]:
    """Codes (smallest int type) and sorted levels of a dimension column."""
    dt = col.dtype
    if isinstance(dt, np.dtype) and dt.kind in "iu" and len(col):
        # Integer dimensions (the common, large case): a presence table over
        # the value range replaces hashing, and no int64 array of N is made.
        values = col.to_numpy()
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 4 * len(values) + 1024:
            # Offsets from the minimum, taken in the column's own type when it
            # is unsigned: uint64 ids beyond 2**63 do not fit a signed integer,
            # their offsets do.
            base = dt.type(lo)

            def offsets(v: np.ndarray) -> np.ndarray:
                return (v - base).astype(np.intp) if dt.kind == "u" else v.astype(np.intp) - lo

            present = np.zeros(hi - lo + 1, dtype=bool)
            for s in range(0, len(values), CHUNK_CELLS):
                present[offsets(values[s : s + CHUNK_CELLS])] = True
            uniq = np.flatnonzero(present).astype(dt) + base
            lut = (np.cumsum(present) - 1).astype(code_dtype(len(uniq)))
            codes = np.empty(len(values), dtype=lut.dtype)
            for s in range(0, len(values), CHUNK_CELLS):
                codes[s : s + CHUNK_CELLS] = lut[offsets(values[s : s + CHUNK_CELLS])]
            return codes, pd.Index(uniq, name=name)
    if col.isna().any():
        raise ValueError(f"Dimension column {name!r} has missing values.")
    code, uniq = pd.factorize(col, sort=True)
    return code.astype(code_dtype(len(uniq)), copy=False), pd.Index(uniq, name=name)


def build_grid(
    frame: pd.DataFrame,
    dims: list[str] | tuple[str, ...],
    balanced: bool = True,
    max_sparse_bytes: int | None = MAX_SPARSE_GRID_BYTES,
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
    max_sparse_bytes : int or None, default=MAX_SPARSE_GRID_BYTES
        Largest float64 array over the full grid, in bytes, allowed when
        fewer than ``MIN_DENSITY`` of its cells have a row (see
        :func:`check_grid_size`); None: no limit.

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        If a dimension column is missing or has missing values, if a cell
        appears twice, (when ``balanced``) if a cell of the full grid has no
        row, or (when not) if the grid is beyond ``max_sparse_bytes``.
    """
    dims = tuple(dims)
    if len(frame) == 0:
        raise ValueError("The data has no rows.")
    missing = [d for d in dims if d not in frame.columns]
    if missing:
        raise ValueError(f"Dimension column(s) {missing} not found in the data.")
    grid = _grid_in_c_order(frame, dims)
    if grid is not None:
        return grid
    levels, codes = [], []
    for d in dims:
        code, lv = _factorize(frame[d], d)
        levels.append(lv)
        codes.append(code)
    grid = Grid(dims=dims, levels=tuple(levels), codes=tuple(codes))
    if in_c_order(grid.codes, grid.shape):
        grid.__dict__["row_of_cell"] = None  # prime the cached property
        return grid
    # Everything so far is of the rows' size. The grid may be far larger (ID-like
    # dimensions): its size is checked from the counts alone, before any array of it.
    n_rows, n_cells = grid.n_rows, grid.n_cells
    if not balanced:
        check_grid_size(n_rows, grid.shape, dims, max_sparse_bytes)
    if n_cells > np.iinfo(np.intp).max:
        # Flat cell numbers would overflow; so many cells cannot all have a row.
        raise ValueError(
            f"Missing cells: the panel over {list(dims)} has {n_cells} cells "
            f"({' x '.join(map(str, grid.shape))} levels), too many to lay out, for "
            f"{n_rows} rows."
        )
    cells = grid.cells()
    dup, times, empty = _cell_counts(cells, n_cells)
    if dup.size:
        raise ValueError(
            f"Duplicate cells: {dup.size} level combination(s) of {list(dims)} appear more "
            f"than once, e.g. ({grid.describe_cell(int(dup[0]))}) appears "
            f"{times} times."
        )
    if empty is not None and balanced:
        raise ValueError(
            f"Missing cells: the panel over {list(dims)} has {n_cells} cells but "
            f"{n_cells - n_rows} have no row, e.g. ({grid.describe_cell(empty)}). "
            "Pass balanced=False to PanelDesign to fit an unbalanced panel."
        )
    grid.__dict__["row_of_cell"] = _permutation(cells, n_cells)
    return grid


def _first_descent(values: np.ndarray) -> int:
    """The first position whose value is not above the one before (``len`` if none)."""
    step = CHUNK_CELLS
    for s in range(0, len(values) - 1, step):
        chunk = values[s : s + step + 1]
        bad = np.flatnonzero(chunk[1:] <= chunk[:-1])
        if bad.size:
            return s + int(bad[0]) + 1
    return len(values)


def _grid_in_c_order(frame: pd.DataFrame, dims: tuple[str, ...]) -> Grid | None:
    """The grid of rows that are every cell once in C order, read off the columns; else None.

    Data written out by a program usually come so. Then the last dimension's
    column cycles through its sorted levels, the one before it steps once per
    cycle, and so on: the levels are read from the first rows, one pass per
    column checks the whole pattern, and no column is factorized (which costs
    several passes each).
    """
    values = [frame[d].to_numpy() for d in dims]
    if any(v.dtype.kind not in "iuM" for v in values):
        return None  # floats may hold NaN; strings and categories need factorizing
    n_rows, run = len(frame), 1
    levels: list[np.ndarray] = [np.empty(0)] * len(dims)
    for a in reversed(range(len(dims))):
        # This dimension's levels occur in order every ``run`` rows.
        strided = values[a][::run]
        size = _first_descent(strided)
        if a == 0 and size != len(strided):
            return None  # the first dimension's levels must be sorted too
        levels[a] = strided[:size]
        run *= size
        if n_rows % run:
            return None
    shape = tuple(len(lv) for lv in levels)
    if run != n_rows or not follows_c_order(values, levels, shape):
        return None
    index = tuple(pd.Index(lv, name=d) for lv, d in zip(levels, dims, strict=True))
    return Grid(dims=dims, levels=index, codes=RampCodes(shape))


def _cell_counts(cells: np.ndarray, n_cells: int) -> tuple[np.ndarray, int, int | None]:
    """Cells with more than one row, the first one's count, and a cell without a row.

    A count per cell when the grid is not much larger than the rows; otherwise
    the sorted rows, so that nothing of the grid's size is made.
    """
    n_rows = len(cells)
    if n_cells <= 4 * n_rows + CHUNK_CELLS:
        counts = np.bincount(cells, minlength=n_cells)
        dup = np.flatnonzero(counts > 1)
        times = int(counts[dup[0]]) if dup.size else 0
        empty = np.flatnonzero(counts == 0)
        return dup, times, int(empty[0]) if empty.size else None
    ordered = np.sort(cells)
    again = ordered[1:] == ordered[:-1]
    if again.any():
        dup = np.unique(ordered[1:][again])
        first = ordered.searchsorted(dup[0], "right") - ordered.searchsorted(dup[0], "left")
        return dup, int(first), None
    # Distinct and sorted: the first position that is not its own cell number
    # is a cell without a row (n_rows < n_cells here, so there is one).
    gap = np.flatnonzero(ordered != np.arange(n_rows, dtype=ordered.dtype))
    return ordered[:0], 0, int(gap[0]) if gap.size else n_rows


def check_grid_size(
    n_rows: int, shape: tuple[int, ...], dims: tuple[str, ...], max_bytes: int | None
) -> None:
    """Refuse a sparse grid whose float64 arrays would take more than ``max_bytes`` each.

    A fit holds several arrays with one value per cell of the full grid, so
    a grid much larger than the data (dimensions with about one row per
    level, such as customer and product IDs) costs memory and time out of
    all proportion to the rows. Grids with at least ``MIN_DENSITY`` of their
    cells observed are never refused: their arrays are at most ten times the
    data's columns.

    Parameters
    ----------
    n_rows : int
        Observed cells.
    shape : tuple of int
        Levels of each dimension.
    dims : tuple of str
        Their names, for the message.
    max_bytes : int or None
        The limit; None: none.

    Raises
    ------
    ValueError
        Giving the cells, the rows and the bytes per array.
    """
    n_cells = math.prod(shape)
    if max_bytes is None or n_rows >= MIN_DENSITY * n_cells or 8 * n_cells <= max_bytes:
        return
    raise ValueError(
        f"The panel over {list(dims)} has {n_cells:,} cells "
        f"({' x '.join(f'{n:,}' for n in shape)} levels) but only {n_rows:,} rows "
        f"({n_rows / n_cells:.2g} of the cells observed): every array of a fit has one "
        f"value per cell, {8 * n_cells:,} bytes ({8 * n_cells / 2**30:.3g} GiB) for each "
        f"float64 array, beyond the limit of {max_bytes:,} bytes for panels with fewer "
        f"than {MIN_DENSITY:.0%} of their cells observed. Dimensions with about one row "
        "per level (such as IDs) make such grids: drop one from dims, or, if the memory "
        "is there, raise the limit PanelDesign.max_sparse_grid_bytes (None: no limit)."
    )
