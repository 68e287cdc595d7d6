"""Dimension tables: covariates given once per level, joined without expanding.

Panel data usually lives as a star schema: a fact table of cells (customer x
product x week) and dimension tables (one row per customer; one row per
product-week). :class:`PanelDesign` takes the cell frame plus a mapping from a
dimension (or a tuple of dimensions) to such a table. A table's columns are
laid out directly at the level of its key, from the table's own rows: nothing
of size ``N`` is ever made for them. Only the key levels present in the cell
frame are used, so a table may list more levels than a cross-validation fold
of the cells holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .columns import (
    ColumnSpec,
    detect_axes,
    lay_out,
    narrow,
    numeric_values,
    varying_axes,
    widen,
)
from .layout import Grid, show_value
from .validation import check_hashable, check_unique_columns

Axes = tuple[int, ...]


def table_keys(tables: Mapping | None, dims: tuple[str, ...]) -> list[tuple[Any, tuple[str, ...]]]:
    """The tables' keys as tuples of dimension names in ``dims`` order, checked.

    Raises
    ------
    TypeError
        If a table is not a DataFrame.
    ValueError
        If a key names something that is not a dimension, or a key column is
        missing from its table.
    """
    out = []
    for key, table in (tables or {}).items():
        names = (key,) if isinstance(key, str) else tuple(key)
        unknown = [d for d in names if d not in dims]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"Table key {key!r} must name distinct panel dimensions; "
                f"{unknown} not in dims {list(dims)}."
            )
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"The table for {key!r} must be a DataFrame, got {type(table)}.")
        check_unique_columns(table, f"The table for {key!r}")
        absent = [d for d in names if d not in table.columns]
        if absent:
            raise ValueError(f"The table for {key!r} has no key column(s) {absent}.")
        out.append((key, tuple(d for d in dims if d in names)))
    return out


@dataclass(frozen=True)
class JoinedTable:
    """A dimension table matched to the levels of a grid.

    Attributes
    ----------
    key : tuple of str
        Key dimensions, in axis order.
    axes : tuple of int
        Their axes.
    frame : DataFrame
        The caller's table (never modified).
    rows : ndarray of int
        Shape ``tuple(shape[a] for a in axes)``: the table row of every level
        combination of the key (``-1``: none, possible in an unbalanced panel
        for a combination that no cell has).
    levels : tuple of pandas.Index
        The grid's levels of the key dimensions.
    """

    key: tuple[str, ...]
    axes: Axes
    frame: pd.DataFrame
    rows: np.ndarray
    levels: tuple[pd.Index, ...] = ()

    @property
    def has_gaps(self) -> bool:
        """Whether some level combination of the key has no row."""
        return bool(np.any(self.rows < 0))

    def sub_grid(self) -> Grid:
        """The combinations that have a row, as the rows of a grid over the key."""
        ok = np.flatnonzero(self.rows.ravel() >= 0)
        codes = np.unravel_index(ok, self.rows.shape)
        return Grid(dims=self.key, levels=self.levels, codes=tuple(codes))

    def present(self, values: np.ndarray) -> np.ndarray:
        """``values`` (over every combination) at the combinations that have a row."""
        return values.ravel()[self.rows.ravel() >= 0]

    @property
    def value_columns(self) -> list[str]:
        """The table's covariates: every column that is not a key."""
        return [c for c in self.frame.columns if c not in self.key]

    def column(self, name: str) -> pd.Series:
        """The column's values at every key level combination (C order)."""
        # A combination without a row borrows row 0; see ``present``.
        return self.frame[name].iloc[np.maximum(self.rows.ravel(), 0)]


def join_table(label: Any, key: tuple[str, ...], table: pd.DataFrame, grid: Grid) -> JoinedTable:
    """Match a table's key to the grid's levels.

    Raises
    ------
    ValueError
        If a key has missing values, a key combination appears twice, or a
        level combination present in the cells has no row in the table.
    """
    axes = tuple(grid.dims.index(d) for d in key)
    for d in key:
        if pd.api.types.is_object_dtype(table[d].dtype):
            check_hashable(
                table[d].dropna().to_numpy(), f"Key column {d!r} of the table {label!r}"
            )
        if table[d].isna().any():
            raise ValueError(f"The table for {label!r} has missing values in key column {d!r}.")
    dup = table.duplicated(subset=list(key), keep=False).to_numpy()
    if dup.any():
        first = table.loc[dup, list(key)].iloc[0]
        raise ValueError(
            f"The table for {label!r} has {int(dup.sum())} rows with a duplicated key, e.g. "
            f"({', '.join(f'{d}={show_value(first[d])}' for d in key)})."
        )
    sub_shape = tuple(grid.shape[a] for a in axes)
    pos = [grid.levels[a].get_indexer(table[d].to_numpy()) for d, a in zip(key, axes, strict=True)]
    keep = np.logical_and.reduce([p >= 0 for p in pos])  # levels absent from the cells drop out
    rows = np.full(int(np.prod(sub_shape)), -1, dtype=np.intp)
    rows[np.ravel_multi_index([p[keep] for p in pos], sub_shape)] = np.flatnonzero(keep)
    absent = rows < 0
    if absent.any() and not grid.is_balanced:
        # An unbalanced panel need not have every combination of the key's levels.
        seen = np.zeros(rows.size, dtype=bool)
        seen[grid.flat_index(axes)] = True
        absent &= seen
    missing = np.flatnonzero(absent)
    if missing.size:
        raise ValueError(
            f"The table for {label!r} has no row for {missing.size} level combination(s) of "
            f"{list(key)} present in the data, e.g. ({grid.describe_cell(int(missing[0]), axes)})."
        )
    levels = tuple(grid.levels[a] for a in axes)
    return JoinedTable(key, axes, table, rows.reshape(sub_shape), levels)


def join_tables(tables: Mapping | None, grid: Grid, frame_columns: Any) -> list[JoinedTable]:
    """Join every table; no covariate may come from two places.

    Raises
    ------
    ValueError
        If a table column is also a column of the cell frame or of another table.
    """
    joined, seen = [], {c: "the data" for c in frame_columns}
    for label, key in table_keys(tables, grid.dims):
        jt = join_table(label, key, tables[label], grid)
        for c in jt.value_columns:
            if c in seen:
                raise ValueError(
                    f"Column {c!r} of the table for {label!r} is also in {seen[c]}; "
                    "each covariate must come from one place."
                )
            seen[c] = f"the table for {label!r}"
        joined.append(jt)
    return joined


def _narrow(arr: np.ndarray, key_axes: Axes, axes: Axes, name: str, key: tuple) -> np.ndarray:
    """``arr`` over ``key_axes`` reduced to ``axes``, checking it is constant elsewhere."""
    arr, varying = narrow(arr, key_axes, axes)
    extra = [key[key_axes.index(a)] for a in varying]
    if extra:
        raise ValueError(
            f"Column {name!r} (table on {list(key)}) was fitted as constant along {extra} "
            "but varies along it here."
        )
    return arr


class TableColumns:
    """The columns of joined tables, laid out on request at their fitted axes.

    Parameters
    ----------
    joined : list of JoinedTable
        Tables matched to the grid.
    """

    def __init__(self, joined: list[JoinedTable]) -> None:
        self._by_name = {c: jt for jt in joined for c in jt.value_columns}

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        """Every table covariate, table by table."""
        return list(self._by_name)

    def rejoin(self, grid: Grid) -> TableColumns:
        """The same tables joined to another grid (that of a subset of the rows)."""
        tables = {id(jt): jt for jt in self._by_name.values()}.values()
        return TableColumns([join_table(jt.key, jt.key, jt.frame, grid) for jt in tables])

    def read(
        self, spec: ColumnSpec, shape: tuple[int, ...], codes: bool = False, fill: float = 0.0
    ) -> np.ndarray:
        """A column (its category codes if ``codes``) over ``spec.axes`` of a grid of ``shape``.

        ``fill`` is unused: a table has a row for every level combination.

        ``spec.axes`` may reach beyond the table's key: for a model fitted on
        the column from the frame, or a level stated so. The column is
        constant along those axes, so it is repeated along them.
        """
        key = self._by_name[spec.name].axes
        inner = tuple(a for a in spec.axes if a in key)
        read = self.category_codes if codes else self.numeric
        return widen(read(ColumnSpec(spec.name, inner, spec.categories)), inner, spec.axes, shape)

    def fit_spec(self, name: str, categorical: bool) -> ColumnSpec:
        """Learn a column's axes (and categories) from the joined rows."""
        jt = self._by_name[name]
        col = jt.column(name)
        if categorical:
            if col.isna().any():
                raise ValueError(f"Column {name!r} has missing values.")
            codes, cats = pd.factorize(col, sort=True)
            arr, cats = codes.reshape(jt.rows.shape), pd.Index(cats)
        else:
            arr, cats = numeric_values(col, name).reshape(jt.rows.shape), None
        if jt.has_gaps:
            local = detect_axes(jt.present(arr), jt.sub_grid())
            return ColumnSpec(name, tuple(jt.axes[k] for k in local), cats)
        # A key axis with a single level counts as varying, as in detect_axes:
        # with one level it cannot be seen not to, and new data may have more.
        single = {a for k, a in enumerate(jt.axes) if arr.shape[k] == 1}
        axes = tuple(a for a in jt.axes if a in single or a in varying_axes(arr, jt.axes))
        return ColumnSpec(name, axes, cats)

    def check_level(self, spec: ColumnSpec, stated: str) -> None:
        """Raise if the column varies along an axis of its key not in ``spec.axes``."""
        jt = self._by_name[spec.name]
        col = jt.column(spec.name)
        values = spec.codes(col) if spec.is_categorical else numeric_values(col, spec.name)
        local = tuple(k for k, a in enumerate(jt.axes) if a in spec.axes)
        # The rows checked are the key's level combinations (with a row in the table).
        lay_out(jt.present(values), jt.sub_grid(), local, spec.name, stated=stated)

    @staticmethod
    def _gaps_lay_out(jt: JoinedTable, arr: np.ndarray, spec: ColumnSpec) -> np.ndarray:
        """A column of a table with gaps laid out over ``spec.axes`` (0 at the gaps)."""
        local = tuple(jt.axes.index(a) for a in spec.axes)
        return lay_out(jt.present(arr), jt.sub_grid(), local, spec.name)

    def observed(self, name: str) -> np.ndarray:
        """A numeric table column's values at the key combinations that have a row."""
        jt = self._by_name[name]
        arr = numeric_values(jt.column(name), name)
        return jt.present(arr) if jt.has_gaps else arr

    def numeric(self, spec: ColumnSpec) -> np.ndarray:
        """A numeric table column over ``spec.axes``."""
        jt = self._by_name[spec.name]
        arr = numeric_values(jt.column(spec.name), spec.name).reshape(jt.rows.shape)
        if jt.has_gaps:
            return self._gaps_lay_out(jt, arr, spec)
        return _narrow(arr, jt.axes, spec.axes, spec.name, jt.key)

    def category_codes(self, spec: ColumnSpec) -> np.ndarray:
        """Positions of a categorical table column's values among its fitted categories."""
        jt = self._by_name[spec.name]
        codes = spec.codes(jt.column(spec.name))
        if jt.has_gaps:
            return self._gaps_lay_out(jt, codes.reshape(jt.rows.shape), spec)
        return _narrow(codes.reshape(jt.rows.shape), jt.axes, spec.axes, spec.name, jt.key)
