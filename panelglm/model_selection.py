"""Cross-validation splitters that hold out whole levels of one panel dimension.

Splitting a balanced panel by whole levels of one dimension leaves two balanced
panels: the rows of the held-out customers (or weeks) with every combination
of the other dimensions' levels, and the rest. That is what
:class:`PanelKFold` and :class:`PanelTimeSeriesSplit` do. They read the
dimension from ``X`` itself (a long-format DataFrame or a :class:`PanelData`),
so no ``groups=`` is needed, and they plug into ``GridSearchCV`` and
``cross_val_score`` as any scikit-learn splitter does.

scikit-learn's tools split ``X`` by rows, which a :class:`PanelData` itself
does not support (its ``shape`` is the grid's, not rows by columns): give
them its rows, ``data.rows`` (a :class:`~panelglm.PanelRows`, whose folds are
panels laid out as ``data`` is), or the long DataFrame, with
:class:`PanelDesign` in a pipeline
(``make_pipeline(PanelDesign(dims), PanelPoissonRegressor())``) or the
estimator's ``dims=``. ``split`` accepts any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, KFold, TimeSeriesSplit

from ._data.panel import PanelData
from ._data.rows import as_panel_data

__all__ = ["PanelKFold", "PanelTimeSeriesSplit"]


def _dim_codes(X: Any, dim: str, who: str) -> tuple[np.ndarray, pd.Index]:
    """Level position of every row of ``X`` along ``dim``, and the sorted levels."""
    X = as_panel_data(X)
    if isinstance(X, PanelData):
        if dim not in X.dims:
            raise ValueError(f"{who}: {dim!r} is not a dimension of the panel {list(X.dims)}.")
        axis = X.dims.index(dim)
        return X.grid.codes[axis], X.levels[axis]
    if isinstance(X, pd.DataFrame):
        if dim not in X.columns:
            raise ValueError(f"{who}: the dimension column {dim!r} is not in X.")
        col = X[dim]
        if col.isna().any():
            raise ValueError(f"{who}: the dimension column {dim!r} has missing values.")
        codes, levels = pd.factorize(col, sort=True)
        return codes, pd.Index(levels, name=dim)
    raise TypeError(
        f"{who} reads the dimension {dim!r} from X, which must be a long-format DataFrame "
        f"or a PanelData; got {type(X).__name__}."
    )


def _rows_of(codes: np.ndarray, n_levels: int, levels: np.ndarray) -> np.ndarray:
    """Indices of the rows whose level position is in ``levels``."""
    chosen = np.zeros(n_levels, dtype=bool)
    chosen[levels] = True
    return np.flatnonzero(chosen[codes])


class _LevelSplitter(BaseCrossValidator):
    """A scikit-learn splitter over the levels of ``dim``, mapped back to rows."""

    dim: str

    def _level_cv(self) -> KFold | TimeSeriesSplit:
        raise NotImplementedError

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate row indices of the training and test panels.

        Parameters
        ----------
        X : DataFrame, PanelData or PanelRows
            Long-format data holding the column ``dim``, or a panel (or its
            rows) with the dimension ``dim``.
        y : array-like, default=None
            Ignored; accepted for scikit-learn compatibility.
        groups : array-like, default=None
            Ignored: the groups are the levels of ``dim``.

        Yields
        ------
        train : ndarray of int
            Rows of the training panel.
        test : ndarray of int
            Rows of the test panel.
        """
        who = type(self).__name__
        codes, levels = _dim_codes(X, self.dim, who)
        n = len(levels)
        try:
            folds = list(self._level_cv().split(np.empty((n, 1))))
        except ValueError as err:
            raise ValueError(f"{who} over the {n} levels of {self.dim!r}: {err}") from err
        for train_levels, test_levels in folds:
            yield _rows_of(codes, n, train_levels), _rows_of(codes, n, test_levels)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of splits.

        Parameters
        ----------
        X, y, groups : object
            Ignored; accepted for scikit-learn compatibility.

        Returns
        -------
        int
        """
        return self.n_splits


class PanelKFold(_LevelSplitter):
    """K-fold cross-validation that holds out whole levels of one dimension.

    Each fold tests on the rows of about ``1 / n_splits`` of the levels of
    ``dim`` (e.g. customers) and trains on the rows of the others, so on a
    balanced panel both sides are balanced panels. A model predicts for the
    held-out levels from their covariates; it cannot have a fixed effect on
    ``dim`` (it raises an error naming the unseen levels). A training panel
    may hold a single level of ``dim``; it is fitted as a cross-section along
    the other dimensions.

    Parameters
    ----------
    dim : str
        The dimension whose levels are held out, read from ``X``.
    n_splits : int, default=5
        Number of folds; at least 2 and at most the number of levels.
    shuffle : bool, default=False
        Whether to shuffle the levels before dividing them into folds;
        otherwise consecutive levels (in sorted order) form a fold.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle; leave it None unless ``shuffle=True`` (otherwise
        a ValueError, as scikit-learn's KFold).

    See Also
    --------
    sklearn.model_selection.GroupKFold : The same idea with explicit groups.

    Examples
    --------
    >>> import pandas as pd
    >>> from panelglm.model_selection import PanelKFold
    >>> df = pd.DataFrame({"customer": [0, 0, 1, 1, 2, 2], "week": [1, 2] * 3})
    >>> for train, test in PanelKFold("customer", n_splits=3).split(df):
    ...     print(sorted(set(df["customer"].iloc[test])), test)
    [0] [0 1]
    [1] [2 3]
    [2] [4 5]
    """

    def __init__(self, dim, n_splits=5, *, shuffle=False, random_state=None):
        self.dim = dim
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self._level_cv()  # validates n_splits, shuffle and random_state now

    def _level_cv(self) -> KFold:
        return KFold(self.n_splits, shuffle=self.shuffle, random_state=self.random_state)


class PanelTimeSeriesSplit(_LevelSplitter):
    """Forward-rolling splits along an ordered dimension (e.g. weeks).

    The levels of ``dim``, in sorted order, are split as
    :class:`sklearn.model_selection.TimeSeriesSplit` splits samples: each
    fold trains on the rows of earlier levels and tests on the rows of the
    next ``test_size`` levels, so every training period ends before its test
    period begins. On a balanced panel both sides are balanced panels. A
    training period may be a single level (the first one below is): the
    estimators fit it as a cross-section along the other dimensions.

    Parameters
    ----------
    dim : str
        The ordered dimension, read from ``X``. Its levels are ordered by
        sorting their values: numbers, dates, or strings that sort in time
        order (``"2024-W05"``).
    n_splits : int, default=5
        Number of folds; at least 2.
    max_train_size : int, default=None
        Maximum number of levels in a training period (the most recent).
    test_size : int, default=None
        Number of levels in a test period; by default
        ``n_levels // (n_splits + 1)``.
    gap : int, default=0
        Number of levels left out between the end of each training period
        and the start of its test period.

    Examples
    --------
    >>> import pandas as pd
    >>> from panelglm.model_selection import PanelTimeSeriesSplit
    >>> df = pd.DataFrame({"store": [0, 1] * 4, "week": [1, 1, 2, 2, 3, 3, 4, 4]})
    >>> for train, test in PanelTimeSeriesSplit("week", n_splits=3).split(df):
    ...     print(sorted(set(df["week"].iloc[train])), sorted(set(df["week"].iloc[test])))
    [1] [2]
    [1, 2] [3]
    [1, 2, 3] [4]
    """

    def __init__(self, dim, n_splits=5, *, max_train_size=None, test_size=None, gap=0):
        self.dim = dim
        self.n_splits = n_splits
        self.max_train_size = max_train_size
        self.test_size = test_size
        self.gap = gap
        self._level_cv()  # validates n_splits now

    def _level_cv(self) -> TimeSeriesSplit:
        return TimeSeriesSplit(
            self.n_splits,
            max_train_size=self.max_train_size,
            test_size=self.test_size,
            gap=self.gap,
        )
