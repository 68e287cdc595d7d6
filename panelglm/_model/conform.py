"""New data read with the layout a model was fitted on."""

from __future__ import annotations

from .._data.columns import ColumnSpec
from .._data.panel import PanelData
from .spec import ModelSpec


def _same_layout(a: ColumnSpec | None, b: ColumnSpec) -> bool:
    if a is None or a.axes != b.axes or a.is_categorical != b.is_categorical:
        return False
    return not b.is_categorical or (
        a.categories is b.categories
        or (a.categories.dtype == b.categories.dtype and a.categories.equals(b.categories))
    )


def conform(spec: ModelSpec, data: PanelData) -> PanelData:
    """``data`` with the model's columns laid out as they were when it was fitted.

    A :class:`PanelData` from another :class:`PanelDesign` (one fitted on the
    new data) may have detected a column along other axes, or other
    categories: its blocks would then come in another order, or its dummies
    mean other levels, and the coefficients would be applied to the wrong
    columns. The fitted layout is used instead: categorical values are
    looked up among the fitted categories by value, and a column is laid out
    along the fitted axes (an error names it if it varies along others).

    Parameters
    ----------
    spec : ModelSpec
        The fitted terms.
    data : PanelData
        New (or training) data.

    Returns
    -------
    PanelData
        ``data`` itself when its layout is the fitted one.
    """
    if tuple(data.dims) != tuple(spec.dims):
        raise ValueError(
            f"The data has dims {list(data.dims)}; the model was fitted on {list(spec.dims)}."
        )
    fitted = {
        t.source[0]: t.column
        for t in spec.terms
        if t.column is not None  # None: a model pickled before terms kept their layout
    }
    differ = {
        name: col for name, col in fitted.items() if not _same_layout(data.spec.get(name), col)
    }
    return data._replaced(spec={**data.spec, **differ}) if differ else data
