"""PanelData: a long frame seen as a panel, with its columns laid out on demand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._util.lazy import is_lazy
from .columns import ColumnSpec, lay_out, numeric_values
from .geometry import PanelGeometry
from .layout import Grid
from .rows import PanelRows


class PanelData(PanelGeometry):
    """A long-format frame laid out as a panel, as :class:`PanelDesign` returns it.

    Columns are placed on the grid only when a model asks for them, at the
    level they vary along, so unused columns cost nothing.

    Parameters
    ----------
    grid : Grid
        Dimensions, levels and the cell of every row.
    frame : DataFrame
        The rows; never modified.
    spec : dict of str to ColumnSpec
        Layout of every usable column.
    covariates : sequence of str
        Columns that enter a model by default.
    fixed_effects : sequence of tuple of str
        Fixed effects, each a tuple of dimension names.
    tables : TableColumns or DatasetColumns, optional
        Columns of dimension tables (see :class:`PanelDesign`), laid out from
        the tables' own rows, or the variables of an xarray Dataset.
    skipped : dict of str to Exception, optional
        Columns that are not covariates and could not be laid out when
        :class:`PanelDesign` was fitted, with the reason; asking for one
        (e.g. as an offset) raises that reason.
    absorb : sequence of tuple of str, optional
        Absorbed fixed effects, each a tuple of dimension names.
    labels : Labels, optional
        For a panel read from an xarray Dataset, its coordinates: targets
        and weights given as DataArrays are read by them, and predictions
        come back as a DataArray over them.

    Attributes
    ----------
    dims : tuple of str
        Names of the panel dimensions.
    levels : tuple of pandas.Index
        Sorted levels of each dimension.
    shape : tuple of int
        Number of levels of each dimension.
    index : pandas.Index
        The index of the rows, in the caller's order.

    Examples
    --------
    >>> import pandas as pd
    >>> from panelglm import PanelDesign
    >>> df = pd.DataFrame({
    ...     "firm": ["b", "b", "a", "a"], "year": [2001, 2000, 2001, 2000],
    ...     "size": [5.0, 5.0, 3.0, 3.0], "rate": [0.2, 0.1, 0.2, 0.1],
    ... })
    >>> data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    >>> data.dims, data.shape
    (('firm', 'year'), (2, 2))

    Each column is stored once per level of the dimensions it varies along:

    >>> data.numeric("size")
    (array([3., 5.]), (0,))
    >>> data.numeric("rate")
    (array([0.1, 0.2]), (1,))

    Values on the full grid are read back in the caller's row order:

    >>> data.from_grid(data.to_grid(df["size"] * 10))
    array([50., 50., 30., 30.])
    """

    def __init__(
        self,
        grid: Grid,
        frame: pd.DataFrame,
        spec: dict[str, ColumnSpec],
        covariates: list[str] | tuple[str, ...],
        fixed_effects: list[tuple[str, ...]] | tuple[tuple[str, ...], ...] = (),
        tables: Any = None,
        skipped: dict[str, Exception] | None = None,
        absorb: list[tuple[str, ...]] | tuple[tuple[str, ...], ...] = (),
        labels: Any = None,
    ) -> None:
        self.grid = grid
        # The coordinates of a panel read from an xarray Dataset (None for a
        # frame): predictions then come back as a DataArray.
        self.labels = labels
        self._frame = frame
        self.spec = dict(spec)
        self.covariates = tuple(covariates)
        self.fixed_effects = tuple(tuple(fe) for fe in fixed_effects)
        self.absorb = tuple(tuple(fe) for fe in absorb)
        self._tables = tables if tables is not None else ()
        self._skipped = dict(skipped or {})
        self._cache: dict[str, np.ndarray] = {}
        self._stats: dict[str, tuple[float, float, float]] = {}

    @classmethod
    def from_array(cls, X: np.ndarray, names: list[str] | None = None) -> PanelData:
        """A cross-section (one dimension, ``row``) from a 2-D numeric array.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Covariates, one row per observation.
        names : list of str, optional
            Column names; ``x0, x1, ...`` by default.

        Returns
        -------
        PanelData
        """
        n, p = X.shape
        names = [f"x{i}" for i in range(p)] if names is None else list(names)
        grid = Grid(
            dims=("row",),
            levels=(pd.RangeIndex(n, name="row"),),
            codes=(np.arange(n, dtype=np.intp),),
        )
        frame = pd.DataFrame(X, columns=names, copy=False)
        spec = {c: ColumnSpec(c, (0,)) for c in names}
        return cls(grid, frame, spec, names)

    # ---------------------------------------- geometry (see PanelGeometry)
    @property
    def index(self) -> pd.Index:
        """Row index of the frame, in the caller's order."""
        return self._frame.index

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        dims = " x ".join(f"{d}={n}" for d, n in zip(self.dims, self.shape, strict=True))
        return f"PanelData({dims}; {len(self.covariates)} covariates)"

    def _replaced(self, **changes: Any) -> PanelData:
        """A copy with some constructor arguments changed, and nothing laid out yet."""
        args = dict(grid=self.grid, frame=self._frame, spec=self.spec, tables=self._tables)
        args.update(covariates=self.covariates, fixed_effects=self.fixed_effects)
        args.update(skipped=self._skipped, absorb=self.absorb, labels=self.labels)
        return PanelData(**{**args, **changes})

    @property
    def rows(self) -> Any:
        """The panel as a sequence of rows, for scikit-learn's cross-validation.

        ``cross_val_score(est, data.rows, y, cv=PanelKFold("customer"))``:
        see :class:`~panelglm.PanelRows`.
        """
        return PanelRows(self)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        # scikit-learn turns what it cannot index by rows into an array; say what to do.
        raise TypeError(
            "A PanelData is not an array: its shape is the grid's, not rows by columns. "
            "To cross-validate on it, pass its rows: cross_val_score(estimator, data.rows, y, "
            "cv=PanelKFold(dim)); or pass the long DataFrame with PanelDesign in a pipeline."
        )

    # ------------------------------------------------------------- columns
    def has_column(self, name: str) -> bool:
        """Whether ``name`` is a usable column of this data.

        Parameters
        ----------
        name : str
            Column name.

        Returns
        -------
        bool
        """
        return name in self.spec and (name in self._frame.columns or name in self._tables)

    def _require(self, name: str, role: str) -> ColumnSpec:
        if name in self._skipped:
            reason = self._skipped[name]
            text = str(reason) if repr(name) in str(reason) else f"Column {name!r}: {reason}"
            raise type(reason)(
                f"{text} PanelDesign left the column out when fitted, as it is not one of "
                f"its covariates, so it cannot be used as {role}."
            )
        if name in self.dims:
            raise ValueError(
                f"Column {name!r} named as {role} is a panel dimension, which identifies "
                "cells and enters a model only as fixed effects; to use its values as "
                f"{role}, add a copy of the column under another name."
            )
        if name not in self.spec:
            raise ValueError(
                f"Unknown column {name!r} named as {role}; known columns: {sorted(self.spec)}."
            )
        if name not in self._frame.columns and name not in self._tables:
            raise ValueError(f"Column {name!r} ({role}) is missing from the data.")
        return self.spec[name]

    def numeric(
        self, name: str, role: str = "covariate", fill: float = 0.0, cache: bool = True
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """A numeric column laid out over the axes it varies along.

        Parameters
        ----------
        name : str
            Column name.
        role : str
            What the column is used as, for error messages.
        fill : float, default=0.0
            Value at level combinations without a row (unbalanced panels).
        cache : bool, default=True
            Whether to keep a frame column's layout for the next call. A
            caller that copies it into a block of its own (several cell-level
            columns side by side) passes False, so that the panel does not
            hold a second copy. Table columns (as small as their tables) are
            always kept.

        Returns
        -------
        values : ndarray
            Shape ``tuple(shape[a] for a in axes)``.
        axes : tuple of int
        """
        spec = self._require(name, role)
        if spec.is_categorical:
            raise TypeError(
                f"Column {name!r} ({role}) is categorical; a numeric column is needed."
            )
        key = name if fill == 0 else f"\0fill{fill!r}:{name}"
        if key not in self._cache and name in self._tables:
            # Tables have a row for every level combination of their key.
            self._cache[key] = self._tables.read(spec, self.shape, fill=fill)
        if key in self._cache:
            return self._cache[key], spec.axes
        laid = lay_out(numeric_values(self._frame[name], name), self.grid, spec.axes, name, fill)
        if cache:
            self._cache[key] = laid
        return laid, spec.axes

    def observed(self, name: str) -> np.ndarray:
        """A numeric column's values where there are data, in no particular order.

        Its rows for a column of the frame, its table's levels for a table
        column: never the fill of an unbalanced panel's missing cells, so
        statistics of the column (its mean, its range) are the data's.

        Parameters
        ----------
        name : str
            Column name.

        Returns
        -------
        ndarray
        """
        if name in self._tables:
            return self._tables.observed(name)
        return numeric_values(self._frame[name], name)

    def column_stats(self, name: str) -> tuple[float, float, float]:
        """A numeric column's smallest, largest and mean observed value (NaN if none).

        Worked out once per panel: every fit on it (a grid search's many)
        asks for them, and a frame column's are a pass over all its rows.

        Parameters
        ----------
        name : str
            Column name.

        Returns
        -------
        tuple of float
        """
        if name not in self._stats and is_lazy(self._lazy_values(name)):
            self._stats[name] = self._tables.lazy_summary(name)[1:]
        if name not in self._stats:
            spec = self._require(name, "covariate")
            if self.is_balanced and len(spec.axes) < len(self.dims):
                # Every level combination of its axes has the same number of
                # rows: the statistics of its layout (kept for the fit) are
                # those of its rows, without a pass over them.
                values = self.numeric(name)[0]
            else:
                values = self.observed(name)
            if values.size == 0:
                self._stats[name] = (np.nan, np.nan, np.nan)
            else:
                self._stats[name] = (
                    float(np.min(values)),
                    float(np.max(values)),
                    float(np.mean(values, dtype=np.float64)),
                )
        return self._stats[name]

    def _lazy_values(self, name: str) -> Any:
        """A Dataset's Dask-backed variable (``None`` for any other column)."""
        tables = self._tables
        if not hasattr(tables, "lazy_summary") or name not in tables:
            return None
        return tables.raw(name)

    def category_codes(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        """Positions of a categorical column's values among its fitted categories.

        Parameters
        ----------
        name : str
            Name of a categorical column.

        Returns
        -------
        codes : ndarray of int
            Shape ``tuple(shape[a] for a in axes)``.
        axes : tuple of int

        Raises
        ------
        ValueError
            If a value is not one of the categories seen when fitting.
        """
        spec = self._require(name, "covariate")
        key = "\0codes:" + name
        if key not in self._cache and name in self._tables:
            self._cache[key] = self._tables.read(spec, self.shape, codes=True)
        if key not in self._cache:
            codes = spec.codes(self._frame[name])
            self._cache[key] = lay_out(codes, self.grid, spec.axes, name)
        return self._cache[key], spec.axes
