"""The geometry of a panel's grid, and values moved between the panel's rows and cells.

:class:`~panelglm._data.panel.PanelData` builds on :class:`PanelGeometry` for
what depends on its :class:`~panelglm._data.layout.Grid` alone (and on the
labels of a panel read from an xarray Dataset), not on its columns. It is kept
apart so that the panel's module holds what is the panel's own: its columns
and how they are laid out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._util.lazy import carry, is_lazy
from .layout import Grid


class PanelGeometry:
    """The dimensions, levels and shape of a panel's grid, and its rows placed on it.

    A base of :class:`~panelglm.PanelData`, which documents these members;
    it reads the panel's ``grid`` and ``labels`` only.
    """

    grid: Grid
    # The coordinates of a panel read from an xarray Dataset (None for a frame).
    labels: Any

    # ------------------------------------------------------------ geometry
    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the panel dimensions."""
        return self.grid.dims

    @property
    def levels(self) -> tuple[pd.Index, ...]:
        """Sorted levels of each dimension."""
        return self.grid.levels

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of levels of each dimension."""
        return self.grid.shape

    @property
    def n_rows(self) -> int:
        """Number of rows (observed cells)."""
        return self.grid.n_rows

    @property
    def n_cells(self) -> int:
        """Number of cells of the full grid (``n_rows`` when balanced)."""
        return self.grid.n_cells

    @property
    def in_grid_order(self) -> bool:
        """Whether the rows are the grid's cells in C order (columns lay out as views)."""
        return self.is_balanced and self.grid.row_of_cell is None

    @property
    def is_balanced(self) -> bool:
        """Whether every cell of the grid has a row."""
        return self.grid.is_balanced

    # ------------------------------------------------------- row <-> grid
    def to_grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Place one value per row (in row order) on the full grid.

        A read-only view of ``values`` when the rows are in the grid's C order.

        Parameters
        ----------
        values : array-like of shape (n_rows,)
            One value per row, in the rows' order.
        fill : float, default=0.0
            Value of the cells without a row (unbalanced panels).

        Returns
        -------
        ndarray of shape ``shape``
        """
        if is_lazy(values):  # a Dataset's Dask-backed cells: every cell a row, in C order
            return carry(lambda v: v.reshape(self.shape), values)
        return self.grid.to_grid(np.asarray(values), fill)

    @property
    def present(self) -> Any:
        """A Dask-backed target's cells with data (lazy), or ``None``: all cells are rows."""
        labels = getattr(self, "labels", None)
        return None if labels is None else labels.present

    def from_grid(self, arr: np.ndarray) -> np.ndarray:
        """Read a full-grid array back in the rows' order.

        Parameters
        ----------
        arr : ndarray
            An array over the full grid, or one that broadcasts to it.

        Returns
        -------
        ndarray of shape (n_rows,)
            A Dask array (lazy) when ``arr`` is one: every cell is then a row.
        """
        if is_lazy(arr):
            import dask.array as da

            return da.broadcast_to(arr, self.shape).reshape(-1)
        return self.grid.from_grid(arr)
