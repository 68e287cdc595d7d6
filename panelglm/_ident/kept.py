"""The coefficients a fit keeps: the design restricted to them, and results placed back.

The identification screens (:mod:`panelglm._ident.identification`) decide
which coefficients the data identify; the solve runs on a design without the
others (:func:`restrict_design`), and its coefficients and matrices (the
Hessian, a covariance) are placed back among all of them (:func:`expand`,
:func:`embed`) by the estimators, the absorbed-effects fit and the summary.
These only apply a mask of kept coefficients, so they are kept apart from
the screens that make it.
"""

from __future__ import annotations

import numpy as np

from .._model.blocks import DenseBlock, IndicatorBlock
from .._model.factored import FactoredDesign


def restrict_design(design: FactoredDesign, kept: np.ndarray) -> FactoredDesign:
    """The design without the columns not ``kept`` (the same object if all are).

    A dense block loses those columns; an indicator block maps their levels to
    ``-1``, the code of a level without a column. Blocks left without columns
    are removed, so the kernels never spend time on them.
    """
    if kept.all():
        return design
    blocks = []
    for blk, sl in zip(design.blocks, design.slices(), strict=True):
        keep = kept[sl]
        if not keep.any():
            continue
        names = tuple(n for n, k in zip(blk.names, keep, strict=True) if k)
        if isinstance(blk, DenseBlock):
            blocks.append(DenseBlock(blk.axes, blk.values[..., keep], names))
        else:
            remap = np.full(blk.n_cols + 1, -1, dtype=np.intp)  # remap[-1] keeps -1
            remap[np.flatnonzero(keep)] = np.arange(keep.sum())
            blocks.append(IndicatorBlock(blk.axes, remap[blk.codes], names))
    return FactoredDesign(shape=design.shape, blocks=blocks)


def expand(kept: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Kept coefficients placed among all of them, zero elsewhere (internal order)."""
    out = np.zeros(kept.size)
    out[kept] = coef
    return out


def embed(kept: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A kept x kept matrix placed among all coefficients, NaN elsewhere."""
    out = np.full((kept.size, kept.size), np.nan)
    out[np.ix_(kept, kept)] = matrix
    return out
