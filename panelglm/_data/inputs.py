"""What an estimator accepts as training and new data: a PanelData, a long frame, an array.

A :class:`~panelglm.PanelData` is used as it is; a long DataFrame is laid out
by a :class:`~panelglm.PanelDesign` of the estimator's ``dims`` and
``fixed_effects`` (``design_``), which a successful fit keeps for ``predict``;
anything else is a cross-section checked by scikit-learn's ``validate_data``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._util.lazy import compute, is_lazy
from .._util.warn import warn
from .dataset_columns import is_dataset
from .design import PanelDesign
from .panel import PanelData
from .rows import as_panel_data
from .validation import check_unique_columns, lazy_values
from .xarray import cell_rows


class PanelInput:
    """Input handling, mixed into the estimators (which set ``dims`` and ``fixed_effects``)."""

    def _fit_input(self, X: Any, y: Any) -> tuple[PanelData, Any, PanelDesign | None]:
        """The training data as a panel, ``y``, and the layout made for a frame (if any)."""
        absorb = getattr(self, "absorb", None)
        X = as_panel_data(X)
        if isinstance(X, PanelData):
            own = self.fixed_effects is not None or absorb is not None
            if own or (self.dims is not None and tuple(self.dims) != tuple(X.dims)):
                warn(
                    "The estimator's dims and fixed_effects lay out a DataFrame; a PanelData "
                    f"keeps its own (dims {list(X.dims)}, fixed effects "
                    f"{[list(fe) for fe in X.fixed_effects]}), set by its PanelDesign.",
                    UserWarning,
                )
            return X, y, None
        if is_dataset(X):
            # A Dataset names its dimensions itself (dims= may choose them).
            design = PanelDesign(self.dims, self.fixed_effects, absorb=absorb)
            return self._laid_out(design, X, y), y, design
        for name, value in (("fixed_effects", self.fixed_effects), ("absorb", absorb)):
            if value is not None and self.dims is None:
                raise ValueError(
                    f"{name}={value!r} needs dims: without them the data "
                    "is a cross-section. Pass dims=..., or a PanelData from "
                    f"PanelDesign(dims, {name}=...)."
                )
        if self.dims is not None and not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"dims={list(self.dims)!r} name columns of a long DataFrame; got "
                f"{type(X).__name__}. Pass the DataFrame, or dims=None for a cross-section."
            )
        if isinstance(X, pd.DataFrame) and self.dims is not None:
            design = PanelDesign(self.dims, self.fixed_effects, absorb=absorb)
            return self._laid_out(design, X, y), y, design
        data, y = self._as_panel(X, y, reset=True)
        return data, y, None

    @staticmethod
    def _laid_out(design: PanelDesign, X: Any, y: Any) -> PanelData:
        try:
            return design.fit_transform(X, y)
        except ValueError as exc:
            if "balanced=False" not in str(exc):
                raise
            raise ValueError(
                f"{exc} The estimator's dims= lays out a balanced panel; for an "
                "unbalanced one use make_pipeline(PanelDesign(dims, balanced=False), "
                "estimator)."
            ) from exc

    def _as_panel(self, X: Any, y: Any, *, reset: bool) -> tuple[PanelData, Any]:
        """The data as a panel, and ``y`` (validated with ``X`` for a cross-section)."""
        X = as_panel_data(X)
        if isinstance(X, PanelData):
            return X, y
        if is_dataset(X) or (isinstance(X, pd.DataFrame) and self.dims is not None):
            check_is_fitted(self, "design_")
            return self.design_.transform(X), y
        # A plain array (or a frame without dims) is a cross-section: D = 1.
        if isinstance(X, pd.DataFrame):
            check_unique_columns(X)
        if reset:
            X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        else:
            X = validate_data(self, X, reset=False, dtype=np.float64)
        names = getattr(self, "feature_names_in_", None)
        return PanelData.from_array(X, None if names is None else [str(c) for c in names]), y

    def _check_weights(
        self, sample_weight: Any, n: int, data: PanelData | None = None
    ) -> np.ndarray | None:
        if sample_weight is None:
            return None
        if data is not None:
            sample_weight = cell_rows(data, sample_weight, "sample_weight")
        if is_lazy(sample_weight):  # a Dask-backed variable: checked by one reduction
            w = lazy_values(sample_weight, data, "sample_weight")
            n_negative, total = compute((w < 0).sum(), w.sum())
            if n_negative:
                raise ValueError(f"sample_weight has {int(n_negative)} negative value(s).")
            if total <= 0:
                raise ValueError("sample_weight sums to zero.")
            return w
        try:
            w = _check_sample_weight(sample_weight, np.empty(n), ensure_non_negative=True)
        except ValueError as exc:
            # scikit-learn's message does not say which input is complex.
            if "Complex data" not in str(exc):
                raise
            raise TypeError("sample_weight holds complex numbers; weights must be real.") from None
        if w.sum() <= 0:
            raise ValueError("sample_weight sums to zero.")
        return w

    def _input_state(self) -> dict:
        """The attributes a fit's input sets, to restore if the fit fails."""
        names = ("design_", "n_features_in_", "feature_names_in_")
        return {name: self.__dict__[name] for name in names if name in self.__dict__}

    def _restore_input(self, state: dict) -> None:
        for name in ("design_", "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)
        self.__dict__.update(state)

    def _set_input(self, X: Any, layout: PanelDesign | None) -> None:
        """After a successful fit: keep the frame's layout, or drop an earlier fit's.

        A failed refit never gets here, so the previous fit stays whole; a fit
        on a PanelData or an array leaves no layout (or frame feature names)
        of an earlier fit behind for ``predict`` to misuse.
        """
        if layout is not None:
            self.design_ = layout
            self.n_features_in_ = layout.n_features_in_
            if hasattr(layout, "feature_names_in_"):
                self.feature_names_in_ = layout.feature_names_in_
            return
        self.__dict__.pop("design_", None)
        if isinstance(as_panel_data(X), PanelData):
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
