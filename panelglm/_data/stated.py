"""``PanelDesign(levels=...)``: the level of a column stated rather than detected."""

from __future__ import annotations

from typing import Any

STATED = "is stated in levels= as"


def stated_levels(
    levels: Any, dims: tuple[str, ...], columns: list[str], target: str | None = None
) -> dict[str, tuple[int, ...]]:
    """``PanelDesign(levels=...)`` as the sorted axes of each column, checked.

    Raises
    ------
    ValueError
        If a key is not a covariate column (a dimension, the target, or no
        column at all), or a value names something that is not a dimension.
    """
    out = {}
    for name, level in (levels or {}).items():
        if name not in columns:
            what = (
                "a dimension"
                if name in dims
                else "the target"
                if name == target
                else "not a column of the data or its tables"
            )
            raise ValueError(
                f"levels= states the level of {name!r}, which is {what}; only the level of "
                "a covariate (or an offset, trials or event column) can be stated."
            )
        names = (level,) if isinstance(level, str) else level
        if not isinstance(names, (tuple, list)) or not all(isinstance(d, str) for d in names):
            raise ValueError(
                f"levels[{name!r}] must be a dimension or a tuple of dimensions, got {level!r}."
            )
        unknown = [d for d in names if d not in dims]
        if unknown or len(set(names)) != len(names):
            raise ValueError(
                f"levels[{name!r}] = {level!r} must name distinct panel dimensions; "
                f"{unknown} not in dims {list(dims)}."
            )
        out[name] = tuple(sorted(dims.index(d) for d in names))
    return out
