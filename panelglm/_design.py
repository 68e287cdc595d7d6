"""PanelDesign: the transformer that turns a long frame into :class:`PanelData`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._columns import detect_axes
from ._layout import Grid, build_grid
from ._panel import ColumnSpec, PanelData, is_categorical_dtype, numeric_values
from ._tables import TableColumns, join_tables, table_keys
from ._validation import check_dtype, warn_if_sparse


def normalize_fixed_effects(
    fixed_effects: Any, dims: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    """Fixed effects as tuples of dimension names, in the order of ``dims``.

    Raises
    ------
    ValueError
        If a fixed effect names something that is not a dimension.
    """
    out = []
    for fe in fixed_effects or ():
        names = (fe,) if isinstance(fe, str) else tuple(fe)
        unknown = [d for d in names if d not in dims]
        if unknown or not names:
            raise ValueError(
                f"Fixed effect {fe!r} must name panel dimensions; "
                f"{unknown} not in dims {list(dims)}."
            )
        out.append(tuple(d for d in dims if d in names))
    return tuple(out)


class PanelDesign(TransformerMixin, BaseEstimator):
    """Lay out a long-format frame as a panel of covariate blocks.

    Each column is stored at the level it varies along: a customer's income
    once per customer, a product's weekly price once per product-week.
    Fitting records that layout (and the levels of categorical columns) so
    that :meth:`transform` lays out new data the same way.

    Parameters
    ----------
    dims : list of str
        Columns that identify a cell of the panel (e.g. customer, product,
        week). Rows may come in any order; each cell must appear exactly once.
    fixed_effects : list of str or tuple of str, default=None
        Dimensions (or tuples of dimensions, whose level combinations count)
        that get one indicator coefficient per level. They are never stored
        as dense dummies.
    covariates : list of str, default=None
        Columns that enter the model. By default every column that is neither
        a dimension nor the target (a ``y`` Series named like a column) and
        that the estimator does not use as offset, trials or event, then every
        non-key column of the tables. Columns that are not covariates stay
        available by name.
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

    Attributes
    ----------
    spec_ : dict of str to ColumnSpec
        The fitted layout of every non-dimension column.
    covariates_ : list of str
        Columns that enter a model by default.
    fixed_effects_ : tuple of tuple of str
        The fixed effects, as tuples of dimension names.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str
        Names of the columns seen during fit.

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
    """

    _parameter_constraints: dict = {
        "dims": [list, tuple],
        "fixed_effects": [list, tuple, None],
        "covariates": [list, tuple, None],
        "tables": [dict, None],
        "balanced": ["boolean"],
    }

    def __init__(self, dims, fixed_effects=None, covariates=None, tables=None, balanced=True):
        self.dims = dims
        self.fixed_effects = fixed_effects
        self.covariates = covariates
        self.tables = tables
        self.balanced = balanced

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, y: Any = None) -> PanelDesign:
        """Learn the layout of every column of ``X``.

        Parameters
        ----------
        X : DataFrame
            Long-format data, one row per cell.
        y : Series, optional
            The target. If it is a Series named like a column of ``X``, that
            column is not a covariate.

        Returns
        -------
        self : PanelDesign
        """
        self._fit(X, y)
        return self

    def _fit(self, X: pd.DataFrame, y: Any) -> PanelData:
        X = self._check_frame(X)
        dims = tuple(self.dims)
        if len(set(dims)) != len(dims) or not dims:
            raise ValueError(f"dims must be distinct column names, got {list(dims)}.")
        table_keys(self.tables, dims)  # bad keys fail before any N-sized work
        grid = self._grid(X, balanced=self.balanced)
        tables = TableColumns(join_tables(self.tables, grid, X.columns))
        target = y.name if isinstance(y, pd.Series) and y.name in X.columns else None
        frame_cols = [c for c in X.columns if c not in dims and c != target]
        candidates = frame_cols + tables.names()
        if self.covariates is not None:
            unknown = [c for c in self.covariates if c not in candidates]
            if unknown:
                raise ValueError(f"Unknown covariate column(s) {unknown}: not in the data.")
        spec = {}
        for name in tables.names():
            col = self._table_column(name)
            check_dtype(col, name)
            spec[name] = tables.fit_spec(name, is_categorical_dtype(col))
        for name in frame_cols:
            col = X[name]
            check_dtype(col, name)
            if is_categorical_dtype(col):
                if col.isna().any():
                    raise ValueError(f"Column {name!r} has missing values.")
                codes, cats = pd.factorize(col, sort=True)
                spec[name] = ColumnSpec(name, detect_axes(codes, grid), pd.Index(cats))
            else:
                spec[name] = ColumnSpec(name, detect_axes(numeric_values(col, name), grid))
        self.spec_ = {c: spec[c] for c in candidates}
        spec = self.spec_
        self.covariates_ = list(self.covariates) if self.covariates is not None else candidates
        self.fixed_effects_ = normalize_fixed_effects(self.fixed_effects, dims)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return PanelData(grid, X, spec, self.covariates_, self.fixed_effects_, tables)

    def _table_column(self, name: str) -> pd.Series:
        for table in self.tables.values():
            if name in table.columns:
                return table[name]
        raise KeyError(name)

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
        X = self._check_frame(X)
        grid = self._grid(X, balanced=False)
        tables = TableColumns(join_tables(self.tables, grid, X.columns))
        return PanelData(grid, X, self.spec_, self.covariates_, self.fixed_effects_, tables)

    @_fit_context(prefer_skip_nested_validation=True)
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
        dims = tuple(self.dims)
        for d in dims:
            if d in X.columns:
                check_dtype(X[d], d, "dimension")
        grid = build_grid(X, dims, balanced=balanced)
        if grid.n_rows < np.prod(grid.shape, dtype=np.float64):
            warn_if_sparse(grid.n_rows, grid.shape, dims)
        return grid

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
        return X
