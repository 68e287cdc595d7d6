"""A PanelData indexed by rows, as scikit-learn's cross-validation indexes ``X``.

scikit-learn counts the samples of ``X`` by ``X.shape[0]`` and takes a fold's
rows with ``X[rows, ...]``. A :class:`~panelglm.PanelData`'s ``shape`` is its
grid's, so it cannot be that ``X`` itself; :class:`PanelRows` (``data.rows``)
is. A subset of its rows is the panel of those rows, laid out with the
parent's column layouts, so a model fitted on one fold reads another with
the same coefficients in the same places.
"""

from __future__ import annotations

# The panel is typed Any here: PanelData builds on this module (its ``rows``),
# so this one does not import it.
from typing import Any

import numpy as np

from .dataset_columns import DatasetColumns
from .layout import Grid, code_dtype
from .tables import TableColumns


def take_rows(data: Any, rows: np.ndarray) -> Any:
    """The panel of some of ``data``'s rows, in the order given.

    Each dimension keeps the levels these rows have; the columns keep the
    parent's layouts (axes, categories), covariates and fixed effects.

    Parameters
    ----------
    data : PanelData
        The whole panel.
    rows : ndarray of int
        Positions of the rows, each at most once.

    Returns
    -------
    PanelData

    Raises
    ------
    ValueError
        If no row is given, or a row is given twice (a cell of a panel has
        one row).
    """
    if rows.size == 0:
        raise ValueError("A panel of no rows: give at least one row.")
    if np.unique(rows).size != rows.size:
        raise ValueError(
            "A row is given more than once; a panel has one row per cell, so its rows "
            "can be subset but not resampled with replacement."
        )
    levels, codes = [], []
    for lv, code in zip(data.grid.levels, data.grid.codes, strict=True):
        sub = code[rows]
        used = np.unique(sub)
        levels.append(lv[used])
        codes.append(np.searchsorted(used, sub).astype(code_dtype(used.size)))
    grid = Grid(dims=data.dims, levels=tuple(levels), codes=tuple(codes))
    tables = data._tables
    if isinstance(tables, TableColumns | DatasetColumns):
        tables = tables.rejoin(grid)
    # The rows of a fold are no Dataset's cells: their predictions are arrays.
    return data._replaced(grid=grid, frame=data._frame.iloc[rows], tables=tables, labels=None)


class PanelRows:
    """A :class:`PanelData` seen as its rows, for scikit-learn's cross-validation.

    ``data.rows`` is what ``cross_val_score``, ``cross_validate`` and
    ``GridSearchCV`` take as ``X`` when the data is a :class:`PanelData`:
    it has ``len`` and ``shape`` ``(n_rows, n_covariates)`` and gives a
    fold's rows as the panel of those rows (see :func:`take_rows`). The
    estimators and the splitters of :mod:`panelglm.model_selection` take it
    wherever they take a :class:`PanelData`.

    Parameters
    ----------
    data : PanelData
        The panel.

    Attributes
    ----------
    data : PanelData
        The panel of these rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from panelglm import PanelDesign
    >>> df = pd.DataFrame({"firm": [0, 0, 1, 1, 2, 2], "year": [1, 2] * 3,
    ...                    "size": [3.0, 3.0, 5.0, 5.0, 4.0, 4.0]})
    >>> rows = PanelDesign(dims=["firm", "year"]).fit_transform(df).rows
    >>> rows
    PanelRows(6 rows of PanelData(firm=3 x year=2; 1 covariates))
    >>> rows[[2, 3, 4], ...].data.numeric("size")
    (array([5., 4.]), (0,))
    """

    def __init__(self, data: Any) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_covariates)``, as scikit-learn reads the shape of ``X``."""
        return (self.data.n_rows, len(self.data.covariates))

    def __len__(self) -> int:
        return self.data.n_rows

    def __getitem__(self, key: Any) -> PanelRows:
        # scikit-learn indexes arrays as X[rows, ...].
        if isinstance(key, tuple):
            if len(key) != 2 or key[1] is not Ellipsis:
                raise IndexError("A PanelRows is indexed by rows only: rows[i] or rows[i, ...].")
            key = key[0]
        rows = np.arange(len(self))[key]
        if rows.ndim != 1:
            raise IndexError("A PanelRows is indexed by a slice or an array of rows.")
        return PanelRows(take_rows(self.data, rows))

    def __repr__(self) -> str:
        return f"PanelRows({len(self)} rows of {self.data!r})"


def as_panel_data(X: Any) -> Any:
    """``X``'s panel if it is a :class:`PanelRows`, else ``X`` itself."""
    return X.data if isinstance(X, PanelRows) else X
