"""The linear predictor of a design whose cell-level blocks are Dask arrays, lazily.

Predicting on a Dask-backed Dataset gives a Dask-backed prediction: each
block's part of ``X beta`` is a lazy array over its own axes, and the parts
are added with broadcasting, chunk by chunk, only when the caller computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._util.lazy import is_lazy
from .blocks import DenseBlock
from .factored import FactoredDesign, _expand


def lazy_linear_predictor(
    design: FactoredDesign, beta: np.ndarray, offset: tuple | None = None
) -> Any:
    """``X beta`` (plus the offset) over the grid as a Dask array.

    Parameters
    ----------
    design : FactoredDesign
        Blocks in memory or lazy.
    beta : ndarray of shape (n_coef,)
        Coefficients, in the design's order.
    offset : (array, axes) or None
        An offset over ``axes``.

    Returns
    -------
    dask.array.Array of shape ``design.shape``
    """
    import dask.array as da

    parts = []
    for blk, sl in zip(design.blocks, design.slices(), strict=True):
        b = beta[sl]
        if isinstance(blk, DenseBlock):
            part = da.tensordot(blk.values, b, axes=1) if is_lazy(blk.values) else blk.values @ b
        else:
            part = np.append(b, 0.0)[blk.codes]
        parts.append(_expand(part, blk.axes, design.ndim, design.shape))
    if offset is not None:
        parts.append(_expand(offset[0], offset[1], design.ndim, design.shape))
    lazy = [p for p in parts if is_lazy(p)]
    total = sum(lazy[1:], lazy[0]) if lazy else da.zeros(design.shape)
    for p in parts:
        if not is_lazy(p):
            total = total + p
    return da.broadcast_to(total.astype(np.float64), design.shape)
