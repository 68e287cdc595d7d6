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

from .._util.lazy import compute, is_lazy
from .columns import ColumnSpec
from .dataset_columns import DatasetColumns, Labels, is_dataarray
from .grid_build import check_grid_size
from .layout import Grid, RampCodes, code_dtype, show_value


def _axes(var: Any, name: Any, dims: tuple[str, ...]) -> tuple[int, ...]:
    extra = [d for d in var.dims if d not in dims]
    if extra:
        raise ValueError(
            f"Variable {name!r} has dimension(s) {extra}, which are not panel dimensions "
            f"{list(dims)}: a variable varies along panel dimensions only."
        )
    return tuple(sorted(dims.index(d) for d in var.dims))


def cell_rows(data: Any, values: Any, what: str) -> Any:
    """``values`` as one value per row when ``data`` was read from a Dataset.

    A DataArray over the panel, or the name of one of its cell-level
    variables, becomes an array in the rows' order. Anything else is returned
    as it is when ``data`` is not a Dataset's (an array in the rows' order);
    with a Dataset's it has no coordinates to match cells by, and is refused.
    """
    labels = getattr(data, "labels", None)
    if labels is None or values is None:
        return values
    if isinstance(values, str):
        columns = data._tables
        if values not in columns or len(columns.axes_of(values)) != len(labels.dims):
            raise ValueError(
                f"{what} names {values!r}, which is not a variable of the Dataset over every "
                f"panel dimension {list(labels.dims)}."
            )
        flat = columns.raw(values).reshape(-1)
        return flat if labels.observed is None else flat[labels.observed]
    rows = labels.rows_of(values, what)
    if is_lazy(rows):
        return rows  # checked by one reduction (validation.lazy_values)
    if labels.observed is None and rows.dtype.kind == "f" and np.isnan(rows).any():
        count = int(np.isnan(rows).sum())
        if what != "The target y":
            raise ValueError(f"{what} is NaN at {count} cell(s).")
        raise ValueError(
            f"{what} is NaN at {count} cell(s). Cells without data are left out when the "
            "layout sees the target: PanelDesign(balanced=False).fit_transform(ds, y), or a "
            "pipeline, which passes y to it."
        )
    return rows


def without_missing_target(data: Any, y: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
    """A Dataset's panel, its target and weights without the cells where the target is NaN.

    For scoring on the data a model was fitted on: its layout has every
    cell, and the cells without data are NaN in ``y``.
    """
    labels = getattr(data, "labels", None)
    if labels is None or not is_dataarray(y):
        return data, y, sample_weight
    rows = labels.rows_of(y, "The target y")
    keep = ~np.isnan(np.asarray(rows, dtype=np.float64))
    if keep.all():
        return data, y, sample_weight
    w = cell_rows(data, sample_weight, "sample_weight")
    sub = data.rows[np.flatnonzero(keep), ...].data
    return sub, rows[keep], None if w is None else np.asarray(w)[keep]


def _sorted_levels(ds: Any, d: str) -> tuple[pd.Index, np.ndarray]:
    """A dimension's coordinates as given, and the positions that sort them."""
    coords = ds.indexes[d] if d in ds.indexes else pd.RangeIndex(ds.sizes[d])
    coords = pd.Index(coords, name=d)
    if coords.has_duplicates:
        dup = coords[coords.duplicated()][0]
        raise ValueError(f"Dimension {d!r} has the coordinate {show_value(dup)} more than once.")
    if coords.is_monotonic_increasing:
        return coords, np.arange(len(coords))
    return coords, np.asarray(coords.argsort(kind="stable"))


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


def _target_name(ds: Any, y: Any, labels: Labels) -> Any:
    """The variable that ``y`` is, if any (it is then not a covariate)."""
    if isinstance(y, str):
        if y not in ds.data_vars:
            raise ValueError(f"The target {y!r} is not a data variable of the Dataset.")
        return y
    if y is not None and not is_dataarray(y):
        raise TypeError(
            "The target y of an xarray Dataset must be a DataArray over the panel or the "
            f"name of a variable of the Dataset, got {type(y).__name__}: an array has no "
            "coordinates to match cells by."
        )
    if y is None or y.name not in ds.data_vars:
        return None
    # ds["sales"] is the variable itself (a new DataArray at each access), in
    # any dimension or coordinate order; a DataArray that merely kept its name
    # leaves the variable a covariate.
    var = ds[y.name]
    if set(y.dims) != set(var.dims) or set(var.dims) != set(labels.dims):
        return None
    ours = labels.cells_of(y, "The target y")
    theirs = labels.cells_of(var, repr(y.name))
    same = ours.dtype.kind in "fiub" and theirs.dtype.kind in "fiub"
    if same and (is_lazy(ours) or is_lazy(theirs)):
        # The same Dask array (one key) is the variable; else compared by one reduction.
        if getattr(ours, "name", None) != getattr(theirs, "name", None):
            equal = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
            same = bool(compute(equal.all())[0])
        return y.name if same else None
    return y.name if same and np.array_equal(ours, theirs, equal_nan=True) else None


def _kept_levels(
    labels: Labels, y: Any, balanced: bool, max_sparse_bytes: int | None
) -> tuple[Labels, np.ndarray | None]:
    """The levels with data and the cells that are rows, from the target's NaN cells.

    As from a long frame of the rows with data: a level without any is not a
    level of the panel (not a fixed effect's, nor a categorical's reference).
    """
    flat = labels.cells_of(y, "The target y")
    shape = tuple(len(t) for t in labels.take)
    ndim = len(shape)
    lazy = is_lazy(flat)
    gaps = np.isnan(flat if lazy else np.asarray(flat, dtype=np.float64))
    has = (~gaps).reshape(shape)
    if lazy:
        # Only the count and each axis's levels with data reach the client.
        n_gaps, *present = compute(
            gaps.sum(),
            *(has.any(axis=tuple(b for b in range(ndim) if b != a)) for a in range(ndim)),
        )
    else:
        n_gaps = int(gaps.sum())
    if not n_gaps:
        return labels, None
    if balanced:
        raise ValueError(
            f"The target y is NaN at {int(n_gaps)} cell(s): cells without data. Pass "
            "balanced=False to PanelDesign to fit the cells that have data."
        )
    if lazy:
        keep = [np.flatnonzero(p) for p in present]
        take = tuple(t[k] for t, k in zip(labels.take, keep, strict=True))
        present = has
        for a, k in enumerate(keep):  # one axis at a time: Dask indexes one list at once
            if k.size < shape[a]:
                present = present[(slice(None),) * a + (k,)]
        return Labels(labels.dims, labels.coords, take, None, present=present), None
    keep = [
        np.flatnonzero(has.any(axis=tuple(b for b in range(ndim) if b != a))) for a in range(ndim)
    ]
    observed = has[np.ix_(*keep)].reshape(-1)
    take = tuple(t[k] for t, k in zip(labels.take, keep, strict=True))
    check_grid_size(
        int(observed.sum()), tuple(len(k) for k in keep), labels.dims, max_sparse_bytes
    )
    return Labels(labels.dims, labels.coords, take, observed), observed


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
        The layouts fitted: new data is read with them (and only the
        variables they name).

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
    given, orders = zip(*(_sorted_levels(ds, d) for d in dims), strict=True)
    labels = Labels(dims, tuple(given), tuple(orders))
    target = _target_name(ds, y, labels)
    observed = None
    if y is not None:
        labels, observed = _kept_levels(
            labels, ds[y] if isinstance(y, str) else y, balanced, max_sparse_bytes
        )
    levels = tuple(c[t] for c, t in zip(labels.coords, labels.take, strict=True))
    shape = tuple(len(lv) for lv in levels)
    if observed is None:
        codes: Any = RampCodes(shape)
    else:
        where = np.unravel_index(np.flatnonzero(observed), shape)
        codes = tuple(c.astype(code_dtype(max(shape))) for c in where)
    grid = Grid(dims=dims, levels=levels, codes=codes)
    names = list(ds.data_vars)
    if spec is None:  # new data may hold variables of its own; the fit's may not
        for name in names:
            _axes(ds[name], name, dims)
    columns = DatasetColumns(ds, labels)
    axes = {n: columns.axes_of(n) for n in columns.names()}
    candidates = [n for n in axes if n != target and axes[n]]
    if covariates is not None:
        if target in covariates:
            raise ValueError(f"Covariate {target!r} is the target y.")
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
