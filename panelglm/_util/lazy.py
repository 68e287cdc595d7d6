"""Arrays computed on demand (Dask): telling them apart and computing small results.

A Dataset whose variables are Dask arrays is fitted without reading them onto
the client: its cell-level arrays stay lazy through the layout, and only
reductions (the passes' sums, the checks' counts) are computed. Dask is the
caller's: nothing here imports it, and an array is lazy only if Dask is
already imported.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Lazy float64 arrays converted from stored float32 values, by id: those values
# (see stored). An entry goes with its array.
_STORED: dict[int, Any] = {}


def is_lazy(obj: Any) -> bool:
    """Whether ``obj`` is a Dask collection (``False`` when Dask is not imported)."""
    dask = sys.modules.get("dask")
    return dask is not None and bool(dask.is_dask_collection(obj))


def compute(*objs: Any) -> tuple[Any, ...]:
    """The values of ``objs``: lazy ones computed together, in one graph.

    Only for results small enough for the client (sums, counts, extremes).
    """
    if not any(is_lazy(o) for o in objs):
        return objs
    import dask

    return dask.compute(*objs)


def broadcast_lazy(arr: Any, shape: tuple[int, ...]) -> Any:
    """``arr`` broadcast to ``shape`` as a Dask array (for masking alongside a lazy one)."""
    import dask.array as da

    return da.broadcast_to(da.asarray(arr), shape)


def where(cond: Any, a: Any, b: Any) -> Any:
    """``numpy.where``, lazily when an argument is a Dask array."""
    if any(is_lazy(x) for x in (cond, a, b)):
        import dask.array as da

        return da.where(cond, a, b)
    import numpy as np

    return np.where(cond, a, b)


def dask_settings(method: F) -> F:
    """Run ``method`` with Dask's low-level task fusion off, when Dask is imported.

    Fusion renames keys differently in each graph it optimizes, while a fit
    computes many graphs over the same chunks of a Dataset (checks, passes,
    statistics); a ``dask.distributed`` scheduler that is given one key with
    two definitions warns that it may fail or deadlock. Without fusion each
    key keeps one definition; elementwise steps are still merged into one
    task per chunk by Dask's blockwise optimization.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dask = sys.modules.get("dask")
        if dask is None:
            return method(*args, **kwargs)
        import dask.config

        with dask.config.set({"optimization.fuse.active": False}):
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _remember(wide: Any, narrow: Any) -> None:
    key = id(wide)
    if key not in _STORED:
        weakref.finalize(wide, _STORED.pop, key, None)
    _STORED[key] = narrow


def as_float64(arr: Any) -> Any:
    """A Dask array in float64 that remembers the float32 values it converts.

    The layout, its checks and the statistics compute with the float64 array;
    a pass that converts values itself as it reads them (the compiled sweep)
    reads the stored ones instead (:func:`stored`): half the bytes, and no
    converted copy of every chunk.
    """
    wide = arr.astype("float64")
    if arr.dtype == "float32":
        _remember(wide, arr)
    return wide


def stored(arr: Any) -> Any:
    """The float32 values a lazy array was converted from (:func:`as_float64`), else ``arr``.

    Converted to float64 they are ``arr``'s values exactly.
    """
    return _STORED.get(id(arr), arr)


def carry(fn: Callable[..., Any], *arrays: Any) -> Any:
    """``fn(*arrays)``, remembering ``fn`` of their stored values (:func:`stored`) as its own.

    Only for an ``fn`` that moves values without changing them (a reshape,
    a stack, a mask with a fill that float32 holds exactly): converting its
    result from the stored values then gives its result.
    """
    out = fn(*arrays)
    if any(id(a) in _STORED for a in arrays):
        narrow = fn(*(stored(a) for a in arrays))
        if narrow.dtype == "float32" and out.dtype == "float64" and narrow.shape == out.shape:
            _remember(out, narrow)
    return out


def masked(values: Any, present: Any, fill: float) -> Any:
    """``where(present, values, fill)`` of a Dask array, keeping its stored values.

    The stored float32 values (:func:`stored`) are masked alike where float32
    holds ``fill`` exactly; else the result is float64 only.
    """
    if not _float32_holds(fill):
        return where(present, values, fill)
    return carry(lambda v: where(present, v, fill), values)


def _float32_holds(value: float) -> bool:
    """Whether float32 holds ``value`` exactly.

    Compared as Python floats: numpy compares a float32 with a float in float32.
    """
    import numpy as np

    with np.errstate(over="ignore"):
        return bool(np.isfinite(value)) and float(np.float32(value)) == float(value)


def masked_weights(present: Any, w: Any) -> Any:
    """Lazy weights ``w`` (or 1) zero where ``present`` (lazy, bool) is False.

    Ones and zeros where no weights are given, stored as float32 for the
    passes' tasks (:func:`stored`); given weights keep theirs.
    """
    if w is None:
        return as_float64(present.astype("float32"))
    return carry(lambda v: present * v, w)
