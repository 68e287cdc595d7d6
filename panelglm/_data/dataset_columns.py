"""An xarray Dataset read as a panel's columns: its coordinates (Labels) and variables.

xarray is the caller's: nothing here imports it until a DataArray is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._util.lazy import as_float64, compute, is_lazy, masked
from .columns import ColumnSpec, is_categorical_dtype, narrow, widen
from .layout import Grid


def _is_xarray(obj: Any, kind: str) -> bool:
    cls = type(obj)
    return cls.__name__ == kind and cls.__module__.split(".")[0] == "xarray"


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is an ``xarray.Dataset`` (without importing xarray)."""
    return _is_xarray(obj, "Dataset")


def is_dataarray(obj: Any) -> bool:
    """Whether ``obj`` is an ``xarray.DataArray`` (without importing xarray)."""
    return _is_xarray(obj, "DataArray")


@dataclass(frozen=True)
class Labels:
    """The caller's coordinates of a panel read from a Dataset.

    Attributes
    ----------
    dims : tuple of str
        The panel dimensions, in axis order.
    coords : tuple of pandas.Index
        Each dimension's coordinates in the caller's order.
    take : tuple of ndarray
        Per dimension, the caller's positions of the grid's levels: sorted, as
        a frame's levels are, and only those with data.
    observed : ndarray of bool or None
        The grid's cells (C order) that are rows; ``None``: all.
    present : dask array of bool or None
        Where a Dask-backed target has cells without data (NaN), the cells
        with data, over the grid (lazy). The grid keeps every cell as a row,
        those without data of weight zero: which cells they are is known only
        to the tasks that read them.
    """

    dims: tuple[str, ...]
    coords: tuple[pd.Index, ...]
    take: tuple[np.ndarray, ...]
    observed: np.ndarray | None = None
    present: Any = None

    def grid_values(self, var: Any) -> np.ndarray:
        """A variable's values over its own dimensions (in panel order) at the grid's levels."""
        own = [d for d in self.dims if d in var.dims]
        data = var.transpose(*own).data
        # A Dask-backed variable over every dimension stays lazy: its cells are
        # read by the passes' tasks. One over fewer is as small as its levels.
        lazy = is_lazy(data) and len(own) == len(self.dims)
        arr = data if lazy else np.asarray(data)
        for k, d in enumerate(own):
            take = self.take[self.dims.index(d)]
            if len(take) != arr.shape[k] or np.any(take != np.arange(arr.shape[k])):
                arr = arr[(slice(None),) * k + (take,)]
        return arr

    def aligned(self, values: Any, what: str) -> Any:
        """A DataArray over the panel with the data's coordinates (reordered if need be)."""
        if not is_dataarray(values):
            raise TypeError(
                f"{what} for data read from an xarray Dataset must be a DataArray over the "
                f"panel dimensions {list(self.dims)} or the name of a variable of the Dataset, "
                f"got {type(values).__name__}: an array has no coordinates to match cells by."
            )
        if set(values.dims) != set(self.dims):
            raise ValueError(
                f"{what} is a DataArray over {list(values.dims)}; it must span the panel "
                f"dimensions {list(self.dims)}, one value per cell."
            )
        for d, coords in zip(self.dims, self.coords, strict=True):
            given = values.indexes.get(d)
            if given is None or given.equals(coords):
                continue
            if len(given) != len(coords) or not given.sort_values().equals(coords.sort_values()):
                raise ValueError(
                    f"{what} has other coordinates along {d!r} than the data; align them "
                    "first (xarray.align)."
                )
            values = values.reindex({d: coords})
        return values

    def cells_of(self, values: Any, what: str) -> np.ndarray:
        """A DataArray over the panel as one value per cell of the grid (C order)."""
        return self.grid_values(self.aligned(values, what)).reshape(-1)

    def rows_of(self, values: Any, what: str) -> np.ndarray:
        """A DataArray over the panel as one value per row."""
        flat = self.cells_of(values, what)
        return flat if self.observed is None else flat[self.observed]

    def to_dataarray(self, grid: Grid, rows: np.ndarray, name: str) -> Any:
        """Values of the rows as a DataArray over the panel, in the caller's coordinates.

        Cells without a row (and levels without data) are NaN.
        """
        import xarray

        coords = {d: c for d, c in zip(self.dims, self.coords, strict=True)}
        if is_lazy(rows):  # every cell a row, in the grid's order; NaN at levels left out
            levels = {d: c[t] for (d, c), t in zip(coords.items(), self.take, strict=True)}
            out = xarray.DataArray(rows.reshape(grid.shape), coords=levels, dims=self.dims)
            return out.reindex(coords).rename(name)
        full = np.full(grid.n_cells, np.nan)
        full[grid.cells()] = rows
        out = np.full(tuple(len(c) for c in self.coords), np.nan)
        out[np.ix_(*self.take)] = full.reshape(grid.shape)
        coords = {d: c for d, c in zip(self.dims, self.coords, strict=True)}
        return xarray.DataArray(out, coords=coords, dims=self.dims, name=name)


class DatasetColumns:
    """A Dataset's variables, each served over the axes a model reads it at.

    The same interface as the columns of dimension tables
    (:class:`~panelglm._data.tables.TableColumns`), so a :class:`PanelData` reads
    either alike. A variable is read (at the grid's levels, in the panel's
    dimension order) when first asked for, so variables no model uses cost
    nothing.

    Parameters
    ----------
    ds : xarray.Dataset
        The caller's Dataset (never written to).
    labels : Labels
        Its coordinates, the grid's levels among them and the cells with data.
    """

    def __init__(self, ds: Any, labels: Labels) -> None:
        self._ds, self._labels = ds, labels
        dims = labels.dims
        self._axes = {
            name: tuple(sorted(dims.index(d) for d in ds[name].dims))
            for name in ds.data_vars
            if set(ds[name].dims) <= set(dims)
        }
        self._values: dict[Any, np.ndarray] = {}
        self._summaries: dict[Any, tuple[int, float, float, float]] = {}
        self._observed = labels.observed
        self._levels = tuple(c[t] for c, t in zip(labels.coords, labels.take, strict=True))
        self._shape = tuple(len(t) for t in labels.take)

    def __contains__(self, name: object) -> bool:
        return name in self._axes

    def names(self) -> list[Any]:
        """Every variable over panel dimensions."""
        return list(self._axes)

    def raw(self, name: Any) -> np.ndarray:
        """A variable's values over its own axes, at the grid's levels."""
        if name not in self._values:
            self._values[name] = self._labels.grid_values(self._ds[name])
        return self._values[name]

    def axes_of(self, name: Any) -> tuple[int, ...]:
        """A variable's own axes."""
        return self._axes[name]

    def _has_gaps(self, name: Any) -> bool:
        """Whether the variable is cell-level and some cells are not rows (never read)."""
        return self._observed is not None and len(self._axes[name]) == len(self._shape)

    def _present(self, name: Any) -> np.ndarray:
        """The values that are data: at rows for a cell-level variable, else all."""
        if is_lazy(self.raw(name)):
            return self.raw(name)  # cells without data are masked where it is checked
        flat = self.raw(name).reshape(-1)
        return flat[self._observed] if self._has_gaps(name) else flat

    def _placed(self, name: Any, values: np.ndarray, dtype: Any, fill: float = 0.0) -> np.ndarray:
        """Values of :meth:`_present` over the variable's own axes (0 at cells without rows)."""
        shape = self.raw(name).shape
        if not self._has_gaps(name):
            return values.reshape(shape)
        out = np.full(int(np.prod(shape)), fill, dtype=dtype)
        out[self._observed] = values
        return out.reshape(shape)

    def fit_spec(self, name: Any) -> ColumnSpec:
        """The variable's layout: its own axes, and its sorted categories if categorical."""
        values = self._present(name)
        if is_lazy(values):
            if values.dtype.kind not in "fiu":
                raise TypeError(
                    f"Variable {name!r} is a Dask array of dtype {values.dtype}: a variable "
                    "over every panel dimension is read lazily only when numeric. Load it "
                    "(.load()) to use it as a categorical covariate."
                )
            self.observed(name)
            return ColumnSpec(name, self._axes[name])
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
        if is_lazy(values):
            n_bad = self.lazy_summary(name)[0]
        else:
            n_bad = int((~np.isfinite(values)).sum())
        if n_bad:
            raise ValueError(
                f"Variable {name!r} has {int(n_bad)} missing or infinite value(s) "
                "where the panel has data."
            )
        return values

    def read(
        self, spec: ColumnSpec, shape: tuple[int, ...], codes: bool = False, fill: float = 0.0
    ) -> np.ndarray:
        """A variable (its category codes if ``codes``) over ``spec.axes``; ``fill`` at gaps."""
        own = self._axes[spec.name]
        arr = self._codes(spec) if codes else self._filled(spec.name, fill)
        arr, varying = narrow(arr, own, spec.axes)
        if varying:  # fitted as constant along these: they must be so here
            raise ValueError(
                f"Variable {spec.name!r} was fitted as constant along dimension "
                f"{self._levels[varying[0]].name!r} but varies along it here."
            )
        return widen(arr, tuple(a for a in spec.axes if a in own), spec.axes, shape)

    def lazy_summary(self, name: Any) -> tuple[int, float, float, float]:
        """A Dask-backed variable's non-finite count, min, max and mean where there are data.

        One reduction for the four (each is a read of every cell), kept.
        """
        if name not in self._summaries:
            import dask.array as da

            values, present = self.raw(name), self._labels.present
            finite = da.isfinite(values)
            ok = finite if present is None else finite & present
            bad = ~finite if present is None else ~finite & present
            n_bad, lo, hi, total, count = compute(
                bad.sum(),
                da.where(ok, values, np.inf).min(),
                da.where(ok, values, -np.inf).max(),
                da.where(ok, values, 0.0).sum(dtype=np.float64),
                ok.sum(),
            )
            mean = float(total) / int(count) if count else np.nan
            self._summaries[name] = (int(n_bad), float(lo), float(hi), mean)
        return self._summaries[name]

    def _codes(self, spec: ColumnSpec) -> np.ndarray:
        """A categorical variable's codes over its own axes (0 at cells without a row)."""
        present = self._present(spec.name)
        found = spec.categories.get_indexer(present)
        if np.any(found < 0):
            unseen = pd.unique(present[found < 0])
            raise ValueError(
                f"Variable {spec.name!r} has level(s) {list(unseen)[:10]} not seen when fitting."
            )
        return self._placed(spec.name, found, found.dtype)

    def _filled(self, name: Any, fill: float = 0.0) -> np.ndarray:
        """Numeric values over their own axes, ``fill`` at cells without a row."""
        values = self.observed(name)
        if is_lazy(values):
            present = self._labels.present
            values = as_float64(values)
            return values if present is None else masked(values, present, fill)
        return self._placed(name, values, np.float64, fill)

    def rejoin(self, grid: Grid) -> DatasetColumns:
        """The variables at another grid's levels (those of a subset of the rows)."""
        pos = [old.get_indexer(new) for old, new in zip(self._levels, grid.levels, strict=True)]
        take = tuple(t[p] for t, p in zip(self._labels.take, pos, strict=True))
        observed = None if grid.is_balanced else _observed_cells(grid)
        labels = Labels(self._labels.dims, self._labels.coords, take, observed)
        return DatasetColumns(self._ds, labels)


def _observed_cells(grid: Grid) -> np.ndarray:
    mask = np.zeros(grid.n_cells, dtype=bool)
    mask[grid.cells()] = True
    return mask
