"""The fitted terms of a model: which columns and effects enter, in reported order.

A :class:`ModelSpec` is what :func:`~panelglm._model.terms.build_model_spec` fixes
when an estimator is fitted, and what lays out new data the same way. It only
describes; building blocks from it is :mod:`panelglm._model.terms`'s.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._data.columns import ColumnSpec


@dataclass(frozen=True)
class Term:
    """One term of the model.

    Attributes
    ----------
    kind : {"intercept", "numeric", "categorical", "fixed_effect"}
        What the term is.
    source : tuple of hashable
        The column (numeric, categorical) or the dimensions (fixed effect),
        as the data names them (not necessarily strings).
    names : tuple of str
        Its coefficient names.
    levels : tuple of pandas.Index
        Fixed effects: the fitted levels of each dimension.
    drop_first : bool
        Whether the first level is the reference (no coefficient).
    shift : float
        Numeric columns: the constant subtracted from the column inside the
        solver (see :func:`column_shift`); 0 for most columns.
    column : ColumnSpec or None
        Numeric and categorical columns: the layout fitted (axes and
        categories), by which new data is laid out whatever its own
        :class:`PanelDesign` detected.
    """

    kind: str
    source: tuple[Hashable, ...]
    names: tuple[str, ...]
    levels: tuple[pd.Index, ...] = ()
    drop_first: bool = False
    shift: float = 0.0
    column: ColumnSpec | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The fitted terms of a model, in the order coefficients are reported."""

    dims: tuple[str, ...]
    terms: tuple[Term, ...]

    @property
    def names(self) -> list[str]:
        """Coefficient names in user order (intercept first when fitted)."""
        return [n for t in self.terms for n in t.names]

    @property
    def has_intercept(self) -> bool:
        """Whether the first term is the intercept."""
        return bool(self.terms) and self.terms[0].kind == "intercept"

    @property
    def shifts(self) -> np.ndarray:
        """Each coefficient's column shift, in user order (0 but for shifted columns)."""
        return np.array([t.shift for t in self.terms for _ in t.names], dtype=np.float64)
