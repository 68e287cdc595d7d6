"""How PanelDesign learns the layout of one column: of the long frame, or of a table."""

from __future__ import annotations

import pandas as pd

from .columns import ColumnSpec, detect_axes, is_categorical_dtype, lay_out, numeric_values
from .layout import Grid
from .stated import STATED
from .tables import TableColumns
from .validation import check_dtype


def frame_spec(
    col: pd.Series,
    name: str,
    grid: Grid,
    axes: tuple[int, ...] | None = None,
    laid: dict | None = None,
) -> ColumnSpec:
    """The layout of a frame column (along ``axes`` if stated), or why it has none.

    A numeric column stored below the cell level is laid out here, from
    the values just checked, into ``laid``: the panel keeps it, and a fit
    does not read the column's rows again.
    """
    check_dtype(col, name)
    cats = None
    if is_categorical_dtype(col):
        if col.isna().any():
            raise ValueError(f"Column {name!r} has missing values.")
        values, cats = pd.factorize(col, sort=True)
        cats = pd.Index(cats)
    else:
        values = numeric_values(col, name)
    out = None
    if axes is None:
        axes = detect_axes(values, grid)
    else:
        out = lay_out(values, grid, axes, name, stated=STATED)  # raises if it varies elsewhere
    if laid is not None and cats is None and len(axes) < len(grid.dims):
        # The axes were just found from these values: no need to check the rows again.
        if out is None:
            out = lay_out(values, grid, axes, name, checked=True)
        laid[name] = out
    return ColumnSpec(name, axes, cats)


def table_spec(
    name: str, tables: TableColumns, frames: dict, axes: tuple[int, ...] | None = None
) -> ColumnSpec:
    """The layout of a table column (along ``axes`` if stated), or why it has none."""
    col = _table_column(frames, name)
    check_dtype(col, name)
    spec = tables.fit_spec(name, is_categorical_dtype(col))
    if axes is None:
        return spec
    spec = ColumnSpec(name, axes, spec.categories)
    tables.check_level(spec, STATED)
    return spec


def _table_column(frames: dict, name: str) -> pd.Series:
    for table in frames.values():
        if name in table.columns:
            return table[name]
    raise KeyError(name)
