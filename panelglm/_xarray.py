"""xarray Datasets as panels: each variable already at the level of its dimensions.

A Dataset is a panel laid out: its dimensions are the panel's, each data
variable's dimensions are the level it varies along (nothing is detected from
values), and the coordinates are the levels. :func:`dataset_layout` reads one
into what :class:`~panelglm.PanelDesign` makes of a long frame: a grid (from
the coordinates, sorted as a frame's levels are, so coefficient names match),
the columns' layouts, and :class:`DatasetColumns`, which serves every variable
over its axes. :class:`Labels` keeps the caller's coordinates, to read targets
and weights given as DataArrays and to give predictions back as one.

xarray is the caller's: nothing here imports it until a DataArray is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._columns import ColumnSpec, is_categorical_dtype
from ._layout import Grid, RampCodes, check_grid_size, code_dtype, show_value


def _is_xarray(obj: Any, kind: str) -> bool:
    cls = type(obj)
    return cls.__name__ == kind and cls.__module__.split(".")[0] == "xarray"


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is an ``xarray.Dataset`` (without importing xarray)."""
    return _is_xarray(obj, "Dataset")


def is_dataarray(obj: Any) -> bool:
    """Whether ``obj`` is an ``xarray.DataArray`` (without importing xarray)."""
    return _is_xarray(obj, "DataArray")


def _axes(var: Any, name: Any, dims: tuple[str, ...]) -> tuple[int, ...]:
    extra = [d for d in var.dims if d not in dims]
    if extra:
        raise ValueError(
            f"Variable {name!r} has dimension(s) {extra}, which are not panel dimensions "
            f"{list(dims)}: a variable varies along panel dimensions only."
        )
    return tuple(sorted(dims.index(d) for d in var.dims))


@dataclass(frozen=True)
class Labels:
    """The caller's coordinates of a panel read from a Dataset.

    Attributes
    ----------
    dims : tuple of str
        The panel dimensions, in axis order.
    coords : tuple of pandas.Index
        Each dimension's coordinates in the caller's order.
    order : tuple of (ndarray or None)
        Per dimension, the positions that sort its coordinates (``None`` when
        they are sorted already): the grid's levels are sorted.
    observed : ndarray of bool or None
        The cells (C order of the sorted grid) that are rows; ``None``: all.
    """

    dims: tuple[str, ...]
    coords: tuple[pd.Index, ...]
    order: tuple[np.ndarray | None, ...]
    observed: np.ndarray | None = None

    def sorted_values(self, var: Any, name: Any) -> np.ndarray:
        """A variable's values over its own dimensions, in panel order, levels sorted."""
        own = [d for d in self.dims if d in var.dims]
        arr = np.asarray(var.transpose(*own).values)
        for k, d in enumerate(own):
            order = self.order[self.dims.index(d)]
            if order is not None:
                arr = np.take(arr, order, axis=k)
        return arr

    def rows_of(self, values: Any, what: str) -> np.ndarray:
        """A DataArray over every panel dimension as one value per row."""
        if set(values.dims) != set(self.dims):
            raise ValueError(
                f"{what} is a DataArray over {list(values.dims)}; it must span the panel "
                f"dimensions {list(self.dims)}, one value per cell."
            )
        for d, coords in zip(self.dims, self.coords, strict=True):
            given = values.indexes.get(d)
            if given is not None and not given.equals(coords):
                raise ValueError(
                    f"{what} has other coordinates along {d!r} than the data; align them "
                    "first (xarray.align)."
                )
        flat = self.sorted_values(values, what).reshape(-1)
        return flat if self.observed is None else flat[self.observed]

    def to_dataarray(self, grid: Grid, rows: np.ndarray, name: str) -> Any:
        """Values of the rows as a DataArray over the panel, in the caller's coordinates.

        Cells without a row are NaN.
        """
        import xarray

        full = np.full(grid.n_cells, np.nan)
        full[grid.cells()] = rows
        arr = full.reshape(grid.shape)
        for k, order in enumerate(self.order):
            if order is not None:
                arr = np.take(arr, np.argsort(order), axis=k)
        coords = {d: c for d, c in zip(self.dims, self.coords, strict=True)}
        return xarray.DataArray(arr, coords=coords, dims=self.dims, name=name)


class DatasetColumns:
    """A Dataset's variables, each served over the axes a model reads it at.

    The same interface as the columns of dimension tables
    (:class:`~panelglm._tables.TableColumns`), so a :class:`PanelData` reads
    either alike.

    Parameters
    ----------
    values : dict
        Each variable's values over its own axes (levels sorted).
    axes : dict
        Each variable's axes.
    observed : ndarray of bool or None
        The grid's cells that are rows (``None``: all); a cell-level
        variable's value elsewhere is never read.
    levels : tuple of pandas.Index
        The grid's levels.
    """

    def __init__(
        self,
        values: dict[Any, np.ndarray],
        axes: dict[Any, tuple[int, ...]],
        observed: np.ndarray | None,
        levels: tuple[pd.Index, ...],
    ) -> None:
        self._values, self._axes, self._observed = values, axes, observed
        self._levels = levels
        self._shape = tuple(len(lv) for lv in levels)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def names(self) -> list[Any]:
        """Every variable."""
        return list(self._values)

    def raw(self, name: Any) -> np.ndarray:
        """A variable's values over its own axes, as given (levels sorted)."""
        return self._values[name]

    def _present(self, name: Any) -> np.ndarray:
        """The values that are data: at rows for a cell-level variable, else all."""
        arr = self._values[name]
        if self._observed is not None and len(self._axes[name]) == len(self._shape):
            return arr.reshape(-1)[self._observed]
        return arr.reshape(-1)

    def fit_spec(self, name: Any) -> ColumnSpec:
        """The variable's layout: its own axes, and its sorted categories if categorical."""
        values = self._present(name)
        series = pd.Series(values, copy=False)
        if is_categorical_dtype(series):
            if series.isna().any():
                raise ValueError(f"Variable {name!r} has missing values.")
            return ColumnSpec(name, self._axes[name], pd.Index(pd.unique(values)).sort_values())
        self.observed(name)  # raises, naming it, if not numeric and finite
        return ColumnSpec(name, self._axes[name])

    def observed(self, name: Any) -> np.ndarray:
        """A numeric variable's values where there are data."""
        values = self._present(name)
        if values.dtype.kind not in "fiu" or values.dtype.kind == "b":
            raise TypeError(
                f"Variable {name!r} has dtype {values.dtype}; a numeric one is needed."
            )
        values = values.astype(
            np.float32 if values.dtype == np.float32 else np.float64, copy=False
        )
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"Variable {name!r} has {int(bad.sum())} missing or infinite value(s) "
                "where the panel has data."
            )
        return values

    def read(self, spec: ColumnSpec, shape: tuple[int, ...], codes: bool = False) -> np.ndarray:
        """A variable (its category codes if ``codes``) over ``spec.axes``."""
        own = self._axes[spec.name]
        if codes:
            flat = self._values[spec.name].reshape(-1)
            arr = spec.categories.get_indexer(flat)
            if np.any(arr < 0):
                unseen = pd.unique(flat[arr < 0])
                raise ValueError(
                    f"Variable {spec.name!r} has level(s) {list(unseen)[:10]} not seen when "
                    "fitting."
                )
            arr = arr.reshape(self._values[spec.name].shape)
        else:
            arr = self._filled(spec.name)
        inner = tuple(a for a in spec.axes if a in own)
        dropped = [a for a in own if a not in spec.axes]
        for a in dropped:  # fitted as constant along these: they must be so here
            k = own.index(a)
            first = np.take(arr, [0], axis=k)
            if not np.array_equal(arr, np.broadcast_to(first, arr.shape)):
                raise ValueError(
                    f"Variable {spec.name!r} was fitted as constant along dimension {a} "
                    "but varies along it here."
                )
        arr = arr[tuple(slice(None) if a in spec.axes else 0 for a in own)]
        if inner == spec.axes:
            return arr
        arr = arr.reshape([shape[a] if a in inner else 1 for a in spec.axes])
        return np.ascontiguousarray(np.broadcast_to(arr, [shape[a] for a in spec.axes]))

    def _filled(self, name: Any) -> np.ndarray:
        """Numeric values over their own axes, 0 at cells without a row."""
        arr = self._values[name]
        if self._observed is not None and len(self._axes[name]) == len(self._shape):
            out = np.zeros(arr.shape, dtype=np.float64)
            out.reshape(-1)[self._observed] = self.observed(name)
            return out
        self.observed(name)
        return arr if arr.dtype in (np.float64, np.float32) else arr.astype(np.float64)

    def rejoin(self, grid: Grid) -> DatasetColumns:
        """The variables at another grid's levels (those of a subset of the rows)."""
        pos = [old.get_indexer(new) for old, new in zip(self._levels, grid.levels, strict=True)]
        values = {}
        for name, arr in self._values.items():
            for k, a in enumerate(self._axes[name]):
                arr = np.take(arr, pos[a], axis=k)
            values[name] = arr
        observed = None if grid.is_balanced else _observed_cells(grid)
        return DatasetColumns(values, self._axes, observed, grid.levels)


def cell_rows(data: Any, values: Any, what: str) -> Any:
    """``values`` as one value per row when ``data`` was read from a Dataset.

    A DataArray over the panel, or the name of one of its cell-level
    variables, becomes an array in the rows' order; anything else (an array
    already in that order) is returned as it is.
    """
    labels = getattr(data, "labels", None)
    if labels is None or not (is_dataarray(values) or isinstance(values, str)):
        return values
    if is_dataarray(values):
        rows = labels.rows_of(values, what)
        if labels.observed is None and rows.dtype.kind == "f" and np.isnan(rows).any():
            raise ValueError(
                f"{what} is NaN at {int(np.isnan(rows).sum())} cell(s). Cells without data "
                "are left out when the layout sees the target: PanelDesign(balanced=False)"
                ".fit_transform(ds, y), or a pipeline, which passes y to it."
            )
        return rows
    columns = data._tables
    if values not in columns or len(columns._axes[values]) != len(labels.dims):
        raise ValueError(
            f"{what} names {values!r}, which is not a variable of the Dataset over every "
            f"panel dimension {list(labels.dims)}."
        )
    flat = columns.raw(values).reshape(-1)
    return flat if labels.observed is None else flat[labels.observed]


def _observed_cells(grid: Grid) -> np.ndarray:
    mask = np.zeros(grid.n_cells, dtype=bool)
    mask[grid.cells()] = True
    return mask


def _sorted_levels(ds: Any, d: str) -> tuple[pd.Index, pd.Index, np.ndarray | None]:
    """A dimension's coordinates as given and sorted, and the positions that sort them."""
    coords = ds.indexes[d] if d in ds.indexes else pd.RangeIndex(ds.sizes[d])
    coords = pd.Index(coords, name=d)
    if coords.has_duplicates:
        dup = coords[coords.duplicated()][0]
        raise ValueError(f"Dimension {d!r} has the coordinate {show_value(dup)} more than once.")
    if coords.is_monotonic_increasing:
        return coords, coords, None
    order = np.asarray(coords.argsort(kind="stable"))
    return coords, coords[order], order


@dataclass
class DatasetLayout:
    """What a PanelDesign learns from a Dataset, and the pieces of its PanelData."""

    grid: Grid
    columns: DatasetColumns
    labels: Labels
    spec: dict[Any, ColumnSpec]
    covariates: list[Any]
    skipped: dict[Any, Exception]
    names: list[Any]
    target: Any


def dataset_layout(
    ds: Any,
    dims: Any,
    covariates: Any,
    y: Any,
    balanced: bool,
    max_sparse_bytes: int | None,
    spec: dict | None = None,
) -> DatasetLayout:
    """Read a Dataset as a panel (``spec``: a fitted layout, for new data).

    Parameters
    ----------
    ds : xarray.Dataset
        The panel.
    dims : sequence of str or None
        The panel dimensions (``None``: the Dataset's).
    covariates : sequence or None
        The variables that enter a model by default (``None``: every data
        variable with dimensions, but the target).
    y : DataArray, str or None
        The target: its NaN cells are cells without data (``balanced=False``).
    balanced : bool
        Whether every cell must have data.
    max_sparse_bytes : int or None
        See :class:`~panelglm.PanelDesign`.
    spec : dict, optional
        The layouts fitted: new data is read with them.

    Returns
    -------
    DatasetLayout
    """
    dims = tuple(ds.sizes) if dims is None else tuple(dims)
    missing = [d for d in dims if d not in ds.sizes]
    if missing or not dims or len(set(dims)) != len(dims):
        raise ValueError(
            f"dims {list(dims)} must be distinct dimensions of the Dataset, whose dimensions "
            f"are {list(ds.sizes)}; {missing} are not."
        )
    given, levels, orders = zip(*(_sorted_levels(ds, d) for d in dims), strict=True)
    shape = tuple(len(lv) for lv in levels)
    labels = Labels(dims, tuple(given), tuple(orders))
    target = y if isinstance(y, str) else None
    if target is None and is_dataarray(y) and y.name in ds.data_vars:
        # ds["sales"] is the variable itself (a new DataArray at each access);
        # a DataArray that merely kept its name leaves the variable a covariate.
        if y.equals(ds[y.name]):
            target = y.name
    if isinstance(y, str) and y not in ds.data_vars:
        raise ValueError(f"The target {y!r} is not a data variable of the Dataset.")
    observed = None
    if y is not None:
        flat = labels.rows_of(ds[y] if isinstance(y, str) else y, "The target y")
        gaps = np.isnan(np.asarray(flat, dtype=np.float64))
        if gaps.any():
            if balanced:
                raise ValueError(
                    f"The target y is NaN at {int(gaps.sum())} cell(s): cells without data. "
                    "Pass balanced=False to fit the cells that have data."
                )
            observed = ~gaps
    n_rows = int(observed.sum()) if observed is not None else int(np.prod(shape))
    if observed is not None:
        check_grid_size(n_rows, shape, dims, max_sparse_bytes)
    labels = Labels(dims, tuple(given), tuple(orders), observed)
    if observed is None:
        codes: Any = RampCodes(shape)
    else:
        where = np.unravel_index(np.flatnonzero(observed), shape)
        codes = tuple(c.astype(code_dtype(max(shape))) for c in where)
    grid = Grid(dims=dims, levels=tuple(levels), codes=codes)
    if observed is None:
        grid.__dict__["row_of_cell"] = None  # rows are the cells, in C order
    names = [n for n in ds.data_vars]
    values, axes = {}, {}
    for name in names:
        var = ds[name]
        axes[name] = _axes(var, name, dims)
        values[name] = labels.sorted_values(var, name)
    columns = DatasetColumns(values, axes, observed, tuple(levels))
    candidates = [n for n in names if n != target and axes[n]]
    if covariates is not None:
        unknown = [c for c in covariates if c not in candidates]
        if unknown:
            raise ValueError(
                f"Unknown covariate(s) {unknown}: not data variables with dimensions "
                f"(the data variables are {names})."
            )
    fitted: dict[Any, ColumnSpec] = {}
    skipped: dict[Any, Exception] = {}
    for name in candidates if spec is None else ():
        try:
            fitted[name] = columns.fit_spec(name)
        except (TypeError, ValueError) as exc:
            if covariates is None or name in covariates:
                raise
            skipped[name] = type(exc)(*exc.args)
    return DatasetLayout(
        grid=grid,
        columns=columns,
        labels=labels,
        spec=fitted if spec is None else spec,
        covariates=list(covariates) if covariates is not None else candidates,
        skipped=skipped,
        names=names,
        target=target,
    )
