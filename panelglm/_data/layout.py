"""From long-format rows to the panel grid, one column at a time.

A :class:`Grid` records, for the rows of a long frame, which cell of the
``n_1 x ... x n_D`` panel each row is. Columns are then laid out at the level
they vary along (:func:`~panelglm._data.columns.detect_axes`,
:func:`~panelglm._data.columns.lay_out`) without ever building a full ``N``-sized
array per column.

Memory matters here: a panel of 1e8 cells must not cost an ``int64`` array per
dimension. Level codes use the smallest integer type that holds them, and rows
that already come in the grid's C order (the usual case for data written out
by a program) need no permutation at all: a cell-level column is then laid
out as a view of the caller's array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

# Cells per chunk when a pass over all N cells is split along the first axis:
# 2**16 float64 values are 512 KiB: a chunk and its few rows stay in the caches,
# and the per-call overhead of numpy is still small against the work.
CHUNK_CELLS = 1 << 16

# An unbalanced panel with fewer than this share of its cells observed spends
# most of its memory and time on empty cells (a SparsePanelWarning says so);
# beyond MAX_SPARSE_GRID_BYTES per float64 array over the grid it is refused.
MIN_DENSITY = 0.10
MAX_SPARSE_GRID_BYTES = 1 << 30


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


class RampCodes(Sequence):
    """The level codes of rows that are every cell of a grid in C order, made on first use.

    Many fits never read them (the rows are the cells), and they take one
    small integer per cell and dimension.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.n_rows = math.prod(shape)
        self._made: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return len(self.shape)

    def __getitem__(self, a: Any) -> Any:
        if self._made is None:
            dtype = code_dtype(max(self.shape))
            self._made = tuple(c.reshape(-1) for c in np.indices(self.shape, dtype=dtype))
        return self._made[a]


@dataclass(frozen=True)
class Grid:
    """Where each row of a long frame sits on the panel grid.

    Attributes
    ----------
    dims : tuple of str
        Names of the panel dimensions, in axis order.
    levels : tuple of pandas.Index
        Sorted levels of each dimension.
    codes : tuple of ndarray of int, or RampCodes
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
        if isinstance(self.codes, RampCodes):
            return self.codes.n_rows
        return len(self.codes[0]) if self.codes else 0

    @property
    def n_cells(self) -> int:
        """Number of cells of the full grid."""
        return math.prod(self.shape)  # Python ints: no silent overflow of int64

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
            # A fresh array, as scikit-learn's predictions are: never a
            # read-only broadcast view, nor a view of the caller's input.
            return flat.copy()
        if not self.is_balanced:
            return flat[self.cells()]
        out = np.empty(self.n_rows, dtype=flat.dtype)
        out[order] = flat
        return out


def in_c_order(codes: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> bool:
    """Whether row ``c`` is cell ``c`` of the grid, for every cell, checked slab by slab."""
    if isinstance(codes, RampCodes):
        return codes.shape == tuple(shape)
    if not codes or len(codes[0]) != math.prod(shape):
        return False
    ramps = [np.arange(n, dtype=c.dtype) for n, c in zip(shape, codes, strict=True)]
    return follows_c_order(list(codes), ramps, shape)


def follows_c_order(
    values: list[np.ndarray], levels: list[np.ndarray], shape: tuple[int, ...]
) -> bool:
    """Whether each row column is its levels repeated in C order over ``shape``.

    Checked slab by slab of the first axis, so nothing of the grid's size is made.
    """
    rest = int(np.prod(shape[1:]))
    step = max(1, CHUNK_CELLS // max(rest, 1))
    for s in range(0, shape[0], step):
        e = min(s + step, shape[0])
        sub = (e - s, *shape[1:])
        for a, (v, lv) in enumerate(zip(values, levels, strict=True)):
            expect = lv[s:e] if a == 0 else lv
            view = expect.reshape([-1 if b == a else 1 for b in range(len(shape))])
            if not np.array_equal(v[s * rest : e * rest].reshape(sub), np.broadcast_to(view, sub)):
                return False
    return True


def _permutation(cells: np.ndarray, n_cells: int) -> np.ndarray:
    dtype = np.int32 if n_cells < 2**31 else np.int64
    # -1 marks a cell without a row (unbalanced panels).
    order = np.empty(n_cells, dtype) if len(cells) == n_cells else np.full(n_cells, -1, dtype)
    order[cells] = np.arange(len(cells), dtype=order.dtype)
    return order
