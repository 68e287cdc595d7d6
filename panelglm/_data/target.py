"""Which column of a long frame is the target, and the fixed effects as dimension tuples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    """Whether two columns hold the same values row by row, NaN equal to NaN."""
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        # Numbers compare across dtypes: df["sales"].astype(float) is still the sales column.
        av = a.to_numpy(dtype=np.float64, na_value=np.nan)
        bv = b.to_numpy(dtype=np.float64, na_value=np.nan)
        return bool(np.array_equal(av, bv, equal_nan=True))
    return bool(a.array.equals(b.array))


def holds_target(X: pd.DataFrame, y: Any) -> str | None:
    """The column of ``X`` that is the target itself, if any.

    It is the column ``y`` is named after when ``y`` is a Series with that
    column's values, row by row (missing values count as equal), as
    ``df["purchases"]`` is. A ``y`` that merely kept a column's name (e.g.
    ``(df["x"] > 0).astype(float)``) leaves that column a covariate.

    Parameters
    ----------
    X : DataFrame
        The long frame.
    y : Any
        The target passed with it.

    Returns
    -------
    str or None
        The column's name, or None.
    """
    if not isinstance(y, pd.Series) or y.name is None or y.name not in X.columns:
        return None
    column = X[y.name]
    if not isinstance(column, pd.Series) or len(column) != len(y):
        return None
    # Unrelated columns nearly always differ in their first rows, so only the
    # target itself costs a full comparison.
    head = min(len(y), 64)
    if not _same_values(column.iloc[:head], y.iloc[:head]):
        return None
    return y.name if _same_values(column, y) else None


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
