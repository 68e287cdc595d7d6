"""PanelDesign: the transformer that turns a long frame into :class:`PanelData`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .._util.lazy import dask_settings
from .column_specs import check_named_covariates, column_specs
from .dataset_columns import is_dataset
from .grid_build import build_grid
from .layout import MAX_SPARSE_GRID_BYTES, Grid
from .panel import PanelData
from .stated import stated_levels
from .tables import TableColumns, join_tables, table_keys
from .target import holds_target, normalize_fixed_effects
from .validation import check_dtype, check_unique_columns, warn_if_sparse
from .xarray import dataset_layout


class PanelDesign(TransformerMixin, BaseEstimator):
    """Lay out a long-format frame as a panel of covariate blocks.

    Each column is stored at the level it varies along: a customer's income
    once per customer, a product's weekly price once per product-week.
    Fitting records that layout (and the levels of categorical columns) so
    that :meth:`transform` lays out new data the same way.

    Parameters
    ----------
    dims : list of str or None
        Columns that identify a cell of the panel (e.g. customer, product,
        week). Rows may come in any order; each cell must appear exactly once.
        With an ``xarray.Dataset`` (see Notes), the panel's dimensions among
        the Dataset's; ``None`` takes them all.
    fixed_effects : list of str or tuple of str, default=None
        Dimensions (or tuples of dimensions, whose level combinations count)
        that get one indicator coefficient per level. They are never stored
        as dense dummies.
    covariates : list of str, default=None
        Columns that enter the model. By default every column that is neither
        a dimension nor the target and that the estimator does not use as
        offset, trials or event, then every non-key column of the tables;
        each must be numeric or categorical and without missing values.

        Given ``covariates``, only those are checked that strictly. The other
        columns stay available by name (e.g. as an estimator's offset, trials
        or event column) when they can be laid out; one that cannot (a date,
        a column with missing values) does not stop :meth:`fit` and is listed
        in ``skipped_columns_``, and naming it later, as an offset for
        instance, raises the error that names it when the estimator is fitted.

        The target is a column of ``X`` only when ``y`` is that column: a
        Series named like it with the same values row by row (missing values
        in the same rows, any numeric dtype or index), as ``df["sales"]``
        is. A ``y`` that merely kept a column's name, such as
        ``(df["x"] > 0).astype(float)``, leaves ``x`` a covariate.
    tables : dict, default=None
        Dimension tables (a star schema), so that covariates that vary along
        only some dimensions need not be repeated on every cell. Each key is a
        dimension name or a tuple of them; each value a DataFrame with those
        key columns, one row per level combination, and the covariates that
        vary at that level. The frame passed to ``fit`` and ``transform`` then
        holds the dimension columns and the cell-level columns only. Tables
        are joined by key without expanding to one row per cell; levels absent
        from the frame are ignored (so a cross-validation fold of the cells
        works with the full tables), a level present in the frame but not in
        its table, or a key that appears twice, is an error. With
        ``balanced=False`` a table keyed on several dimensions needs rows only
        for the level combinations that some cell has.
    balanced : bool, default=True
        Whether :meth:`fit` requires every cell of the full grid (every level
        combination of ``dims``) to have a row. With ``balanced=False`` the
        rows are laid out on the full grid and the cells without a row get
        weight zero, so a model fits exactly the observed rows; memory and
        time are those of the full grid, and a ``SparsePanelWarning`` says
        when fewer than 10 % of its cells are observed. :meth:`transform`
        accepts any subset of cells either way (predictions are made for the
        given rows only).
    absorb : list of str or tuple of str, default=None
        Absorbed fixed effects, each a dimension or a tuple of dimensions
        (whose level combinations count), as Stata's ``absorb()`` and
        fixest's ``| fe``. They are nuisance parameters solved through their
        structure, for any number of levels: not coefficients (not in
        ``coef_`` or the summary) but the estimator's ``fixef_``. See the
        user guide's page on absorbed fixed effects.
    levels : dict, default=None
        The level of some columns, stated rather than detected: each key a
        column (of the frame or of a table), each value the dimension or the
        tuple of dimensions it varies along (``()`` for a constant), e.g.
        ``{"price": ("product", "week")}``. A stated level is used as given,
        so that it does not depend on the rows at hand: a cross-validation
        fold in which prices happen to be equal across products would
        otherwise be laid out by week alone, and a test fold where they
        differ would then be refused. :meth:`fit` checks it: a column that
        varies along a dimension not stated is an error naming the column,
        that dimension and a row where it does. Other columns are detected.

        A grid with fewer than 10 % of its cells observed whose float64
        arrays would take more than ``PanelDesign.max_sparse_grid_bytes``
        bytes each (a class attribute, 2**30 = 1 GiB by default, so 2**27
        cells) is refused, by :meth:`fit` and :meth:`transform` alike, with
        an error giving the cells, rows and bytes, before anything of the
        grid's size is allocated: dimensions with about one row per level
        (IDs) make such grids. Set the attribute to a larger number, or to
        None for no limit, on the class (it then holds for the estimators'
        ``dims=`` as well) or on an instance.

    Attributes
    ----------
    spec_ : dict of str to ColumnSpec
        The fitted layout of every non-dimension column a model may use.
    covariates_ : list of str
        Columns that enter a model by default.
    skipped_columns_ : dict of str to Exception
        With ``covariates`` given, the other columns that could not be laid
        out, each with the error that says why (empty otherwise).
    fixed_effects_ : tuple of tuple of str
        The fixed effects, as tuples of dimension names.
    absorb_ : tuple of tuple of str
        The absorbed fixed effects, as tuples of dimension names.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Names of the columns seen during fit.

    Notes
    -----
    An ``xarray.Dataset`` is a panel laid out already: its dimensions are the
    panel's, each data variable varies along its own dimensions (nothing is
    detected from values) and the coordinates are the levels, sorted as a
    frame's are, so that coefficient names are those of the same data as a
    long frame. Passing ``y`` (a DataArray or a variable's name) to
    :meth:`fit` makes that variable the target, and with ``balanced=False``
    its NaN cells the cells without data. ``tables=`` and ``levels=``
    describe frames and are refused with a Dataset.

    Examples
    --------
    >>> import pandas as pd
    >>> from panelglm import PanelDesign
    >>> df = pd.DataFrame({
    ...     "firm": [0, 0, 1, 1], "year": [1, 2, 1, 2],
    ...     "size": [3.0, 3.0, 5.0, 5.0], "rate": [0.1, 0.2, 0.1, 0.2],
    ... })
    >>> data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    >>> data
    PanelData(firm=2 x year=2; 2 covariates)
    >>> data.numeric("size")[1], data.numeric("rate")[1]
    ((0,), (1,))

    The firm-level column can come from a firm table instead:

    >>> firms = pd.DataFrame({"firm": [0, 1, 2], "size": [3.0, 5.0, 9.0]})
    >>> design = PanelDesign(dims=["firm", "year"], tables={"firm": firms})
    >>> design.fit_transform(df[["firm", "year", "rate"]]).numeric("size")
    (array([3., 5.]), (0,))

    A column may be stated to vary along more dimensions than these rows show:

    >>> stated = PanelDesign(dims=["firm", "year"], levels={"rate": ("firm", "year")})
    >>> stated.fit_transform(df).numeric("rate")[1]
    (0, 1)
    """

    # The memory budget of a sparse grid (see ``balanced``): a setting, not a
    # parameter, so that it also holds for the layout an estimator makes.
    max_sparse_grid_bytes: int | None = MAX_SPARSE_GRID_BYTES

    _parameter_constraints: dict = {
        "dims": [list, tuple, None],
        "fixed_effects": [list, tuple, None],
        "covariates": [list, tuple, None],
        "tables": [dict, None],
        "balanced": ["boolean"],
        "absorb": [list, tuple, None],
        "levels": [dict, None],
    }

    def __init__(
        self,
        dims,
        fixed_effects=None,
        covariates=None,
        tables=None,
        balanced=True,
        absorb=None,
        levels=None,
    ):
        self.dims = dims
        self.fixed_effects = fixed_effects
        self.covariates = covariates
        self.tables = tables
        self.balanced = balanced
        self.absorb = absorb
        self.levels = levels

    @_fit_context(prefer_skip_nested_validation=True)
    @dask_settings
    def fit(self, X: pd.DataFrame, y: Any = None) -> PanelDesign:
        """Learn the layout of every column of ``X``.

        Parameters
        ----------
        X : DataFrame
            Long-format data, one row per cell.
        y : Series, optional
            The target. If it is a Series named like a column of ``X`` and
            holding that column's values, that column is the target and not
            a covariate (see ``covariates``).

        Returns
        -------
        self : PanelDesign
        """
        self._fit(X, y)
        return self

    def _fit(self, X: pd.DataFrame, y: Any) -> PanelData:
        if is_dataset(X):
            return self._fit_dataset(X, y)
        X = self._check_frame(X)
        if self.dims is None:
            self._check_dims(fitted=False)
        dims = tuple(self.dims)
        if len(set(dims)) != len(dims) or not dims:
            raise ValueError(f"dims must be distinct column names, got {list(dims)}.")
        table_keys(self.tables, dims)  # bad keys fail before any N-sized work
        grid = self._grid(X, balanced=self.balanced)
        tables = TableColumns(join_tables(self.tables, grid, X.columns))
        target = holds_target(X, y)
        frame_cols = [c for c in X.columns if c not in dims and c != target]
        candidates = frame_cols + tables.names()
        if self.covariates is not None:
            check_named_covariates(self.covariates, dims, target, candidates)
        covariates = list(self.covariates) if self.covariates is not None else candidates
        stated = stated_levels(self.levels, dims, candidates, target)
        required = covariates if self.covariates is not None else None
        spec, skipped, laid = column_specs(
            X, grid, tables, self.tables, candidates, stated, required
        )
        # Set only now, so a fit that fails leaves the previous fit whole.
        self.__dict__.pop("dims_", None)  # a Dataset's, from an earlier fit
        self.spec_ = {c: spec[c] for c in candidates if c in spec}
        self.covariates_ = covariates
        self.skipped_columns_ = skipped
        self.fixed_effects_ = normalize_fixed_effects(self.fixed_effects, dims)
        self.absorb_ = normalize_fixed_effects(self.absorb, dims)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        data = self._panel_data(grid, X, tables)
        data._cache.update(laid)
        return data

    def _fit_dataset(self, X: Any, y: Any) -> PanelData:
        for name in ("tables", "levels"):
            if getattr(self, name):
                raise ValueError(
                    f"{name}= describes a long frame; a Dataset holds each variable at the "
                    "level of its own dimensions already."
                )
        layout = dataset_layout(
            X, self.dims, self.covariates, y, self.balanced, self.max_sparse_grid_bytes
        )
        dims = layout.grid.dims
        self.spec_ = layout.spec
        self.covariates_ = layout.covariates
        self.skipped_columns_ = layout.skipped
        self.fixed_effects_ = normalize_fixed_effects(self.fixed_effects, dims)
        self.absorb_ = normalize_fixed_effects(self.absorb, dims)
        self.dims_ = dims
        self.n_features_in_ = len(layout.names)
        self.feature_names_in_ = np.asarray(layout.names, dtype=object)
        return self._dataset_panel(layout)

    def _dataset_panel(self, layout: Any) -> PanelData:
        frame = pd.DataFrame(index=pd.RangeIndex(layout.grid.n_rows))
        data = self._panel_data(layout.grid, frame, layout.columns)
        return data._replaced(labels=layout.labels)

    def _panel_data(self, grid: Grid, X: pd.DataFrame, tables: TableColumns) -> PanelData:
        return PanelData(
            grid,
            X,
            self.spec_,
            self.covariates_,
            self.fixed_effects_,
            tables,
            # An estimator pickled before columns could be skipped has none.
            skipped=getattr(self, "skipped_columns_", {}),
            absorb=getattr(self, "absorb_", ()),
        )

    @dask_settings
    def transform(self, X: pd.DataFrame) -> PanelData:
        """Lay out ``X`` as the fitted data was laid out.

        Parameters
        ----------
        X : DataFrame
            Long-format data with the dimension columns and the covariates.
            New levels of a dimension are allowed; whether a model can
            predict for them depends on its fixed effects. Any subset of
            cells may be given, whatever ``balanced`` is.

        Returns
        -------
        PanelData
        """
        check_is_fitted(self, "spec_")
        if is_dataset(X):
            dims = getattr(self, "dims_", None) or self.dims
            return self._dataset_panel(
                dataset_layout(X, dims, None, None, True, None, spec=self.spec_)
            )
        X = self._check_frame(X)
        self._check_dims()
        grid = self._grid(X, balanced=False)
        tables = TableColumns(join_tables(self.tables, grid, X.columns))
        return self._panel_data(grid, X, tables)

    @_fit_context(prefer_skip_nested_validation=True)
    @dask_settings
    def fit_transform(self, X: pd.DataFrame, y: Any = None, **fit_params: Any) -> PanelData:
        """Fit the layout and lay out ``X`` (the grid is built once).

        Parameters
        ----------
        X : DataFrame
            Long-format data.
        y : Series, optional
            The target; see :meth:`fit`.
        **fit_params : dict
            Unused; accepted for scikit-learn compatibility.

        Returns
        -------
        PanelData
        """
        return self._fit(X, y)

    def _grid(self, X: pd.DataFrame, balanced: bool) -> Grid:
        dims = self._frame_dims()
        for d in dims:
            if d in X.columns:
                check_dtype(X[d], d, "dimension")
        grid = build_grid(X, dims, balanced=balanced, max_sparse_bytes=self.max_sparse_grid_bytes)
        if grid.n_rows < np.prod(grid.shape, dtype=np.float64):
            warn_if_sparse(grid.n_rows, grid.shape, dims)
        return grid

    def _frame_dims(self) -> tuple[str, ...]:
        # A design fitted on a Dataset with dims=None lays out frames by its dimensions.
        dims = self.dims if self.dims is not None else getattr(self, "dims_", None)
        return tuple(dims) if dims is not None else ()

    def _check_dims(self, fitted: bool = True) -> None:
        if not fitted or not self._frame_dims():
            raise ValueError(
                "dims=None takes the dimensions of an xarray Dataset; a long DataFrame "
                "needs dims= naming its dimension columns."
            )

    @staticmethod
    def _check_frame(X: Any) -> pd.DataFrame:
        if scipy.sparse.issparse(X):
            raise TypeError(
                "PanelDesign does not accept sparse matrices; it needs a pandas DataFrame "
                "in long format."
            )
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"PanelDesign needs a pandas DataFrame in long format, got {type(X).__name__}."
            )
        check_unique_columns(X)
        return X
