"""Sums of the assembly's small arrays over some of their axes, as BLAS products with ones.

numpy's reduction over an axis pays a fixed cost per output row, which a
product with a vector of ones does not (measurements in
``benchmarks/PERF_NOTES.md``). The Hessian assembly does about twenty such
sums per Newton step.
"""

from __future__ import annotations

import numpy as np

# Below this many terms, a product with ones is slower than numpy's adds.
_MIN_TERMS = 8
# A few long contiguous rows: numpy's pairwise sum beats the product, which
# reads its vector of ones alongside.
_LONG_ROW = 2048

_ONES: dict[int, np.ndarray] = {}
# Per (shape, axes): how to view the array and which product to take.
_PLANS: dict[tuple, tuple] = {}


def _cached(cache: dict, key, make, limit: int):
    """``cache[key]``, made on first use; the cache emptied when it holds more than ``limit``.

    Many designs in one process must not keep every shape's entry alive. An
    entry is complete before other threads can see it.
    """
    value = cache.get(key)
    if value is None:
        if len(cache) > limit:
            cache.clear()
        value = cache[key] = make()
    return value


def _read_only_ones(n: int) -> np.ndarray:
    one = np.ones(n)
    one.flags.writeable = False  # shared by every caller
    return one


def _ones(n: int) -> np.ndarray:
    return _cached(_ONES, n, lambda: _read_only_ones(n), 64)


def _plan(shape: tuple[int, ...], drop: tuple[int, ...]) -> tuple:
    out_shape = tuple(n for a, n in enumerate(shape) if a not in drop)
    # Length-one axes do not decide the layout: leave them out.
    live = [a for a, n in enumerate(shape) if n != 1]
    gone = [a for a in live if a in drop]
    if not gone:
        return ("reshape", out_shape, None)
    lo, hi = live.index(gone[0]), live.index(gone[-1]) + 1
    if live[lo:hi] != gone:  # the summed axes are not one run
        return ("reduce", out_shape, drop)
    pre = int(np.prod([shape[a] for a in live[:lo]], dtype=np.int64))
    mid = int(np.prod([shape[a] for a in gone], dtype=np.int64))
    post = int(np.prod([shape[a] for a in live[hi:]], dtype=np.int64))
    if mid < _MIN_TERMS or (post == 1 and mid >= _LONG_ROW):
        return ("reduce", out_shape, drop)
    if post == 1:
        return ("rows", out_shape, (pre, mid))
    if pre == 1:
        return ("cols", out_shape, (mid, post))
    return ("batched", out_shape, (pre, mid, post))


def sum_axes(x: np.ndarray, drop: tuple[int, ...]) -> np.ndarray:
    """``x.sum(axis=drop)``, as one BLAS product with ones where the layout allows.

    Parameters
    ----------
    x : ndarray
        The array to sum (float64).
    drop : tuple of int
        Sorted, non-negative axes to sum over.

    Returns
    -------
    ndarray
        ``x`` summed over ``drop``: a new array, or a view of ``x`` when
        every summed axis has length one. Equal to ``x.sum(axis=drop)`` up to
        the order of the additions.
    """
    if not drop:
        return x
    if not x.flags.c_contiguous:
        return _permuted(x, drop)
    kind, out_shape, dims = _cached(_PLANS, (x.shape, drop), lambda: _plan(x.shape, drop), 4096)
    if kind == "reshape":
        return x.reshape(out_shape)
    if kind == "reduce":
        return np.add.reduce(x, axis=dims)
    if kind == "rows":
        res = x.reshape(dims) @ _ones(dims[1])
    elif kind == "cols":
        res = _ones(dims[0]) @ x.reshape(dims)
    else:
        res = np.matmul(_ones(dims[1]), x.reshape(dims))
    return res.reshape(out_shape)


def _permuted(x: np.ndarray, drop: tuple[int, ...]) -> np.ndarray:
    """:func:`sum_axes` of an array whose axes, reordered, are C-contiguous.

    A group's result is stored with its columns before its last axis: summed
    as laid out, then viewed in the caller's order of axes.
    """
    plan = _cached(_PLANS, (x.shape, x.strides, drop), lambda: _permuted_plan(x, drop), 4096)
    if plan is False:
        return np.add.reduce(x, axis=drop)
    order, inner, back = plan
    return sum_axes(x.transpose(order), inner).transpose(back)


def _permuted_plan(x: np.ndarray, drop: tuple[int, ...]) -> tuple | bool:
    """The axis order that makes ``x`` C-contiguous, and the sum's axes in it (False: none)."""
    order = sorted(range(x.ndim), key=lambda a: -x.strides[a])
    if not x.transpose(order).flags.c_contiguous:
        return False
    kept = [a for a in order if a not in drop]
    inner = tuple(sorted(order.index(a) for a in drop))
    return (order, inner, [kept.index(a) for a in sorted(kept)])
