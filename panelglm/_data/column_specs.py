"""How PanelDesign learns the layout of its columns: of the long frame, or of a table.

A fit's work on columns is here: the covariates a caller named are checked,
and each candidate column is laid out along the axes it varies along (or, when
it is optional and cannot be, skipped with the reason). The transformer's
module only decides which columns are candidates and keeps the result, so that
it stays about the estimator's interface.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from .columns import ColumnSpec, detect_axes, is_categorical_dtype, lay_out, numeric_values
from .layout import Grid
from .stated import STATED
from .tables import TableColumns
from .validation import check_dtype


def check_named_covariates(
    covariates: Sequence[str], dims: tuple[str, ...], target: str | None, candidates: list[str]
) -> None:
    """Check the covariates a caller named: columns of the data, not dimensions or the target.

    Parameters
    ----------
    covariates : sequence of str
        The covariates named (``PanelDesign``'s ``covariates``).
    dims : tuple of str
        The panel dimensions.
    target : str or None
        The column of the frame that is the target, if any.
    candidates : list of str
        The columns that can be laid out (of the frame and of the tables).

    Raises
    ------
    ValueError
        Naming the first covariate at fault, or the unknown ones.
    """
    for c in covariates:
        if c in dims:
            raise ValueError(
                f"Covariate {c!r} is a panel dimension, which identifies cells and "
                f"enters a model only as fixed effects (fixed_effects=[{c!r}]); to "
                "use its values as a covariate, add a copy of the column under "
                "another name."
            )
        if c == target:
            raise ValueError(f"Covariate {c!r} is the target y.")
    unknown = [c for c in covariates if c not in candidates]
    if unknown:
        raise ValueError(f"Unknown covariate column(s) {unknown}: not in the data.")


def column_specs(
    X: pd.DataFrame,
    grid: Grid,
    tables: TableColumns,
    frames: dict | None,
    candidates: list[str],
    stated: dict[str, tuple[int, ...]],
    required: Collection[str] | None,
) -> tuple[dict[str, ColumnSpec], dict[str, Exception], dict[str, np.ndarray]]:
    """The layout of every candidate column, or why an optional one has none.

    Parameters
    ----------
    X : DataFrame
        The long frame.
    grid : Grid
        The panel's grid of ``X``'s rows.
    tables : TableColumns
        The tables' columns, joined to the grid.
    frames : dict or None
        The tables as given (``PanelDesign``'s ``tables``).
    candidates : list of str
        The columns to lay out, of the frame and of the tables.
    stated : dict of str to tuple of int
        The axes of the columns whose level is stated.
    required : collection of str or None
        The columns that must be laid out (None: all of them).

    Returns
    -------
    spec : dict of str to ColumnSpec
        The layout of each column laid out.
    skipped : dict of str to Exception
        Each optional column that could not be laid out, with the reason.
    laid : dict of str to ndarray
        The columns laid out below the cell level on the way (see :func:`frame_spec`).
    """
    spec: dict[str, ColumnSpec] = {}
    skipped: dict[str, Exception] = {}
    laid: dict[str, np.ndarray] = {}
    for name in candidates:
        try:
            if name in tables:
                spec[name] = table_spec(name, tables, frames, stated.get(name))
            else:
                spec[name] = frame_spec(X[name], name, grid, stated.get(name), laid)
        except (TypeError, ValueError) as exc:
            # Named covariates make the other columns optional: one that
            # cannot be laid out (a date, a column with gaps) must not
            # stop the fit unless someone names it, e.g. as the offset.
            if required is None or name in required:
                raise
            # A fresh exception: the caught one's traceback would keep X alive.
            skipped[name] = type(exc)(*exc.args)
    return spec, skipped, laid


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
