"""The blocks a factored design is made of: covariates stored at the level they vary along.

A :class:`DenseBlock` holds covariates over some of the panel's axes, an
:class:`IndicatorBlock` a fixed effect's level codes. They are plain data:
the design (:mod:`panelglm._model.factored`) and the pass engine contract
them with cell-level arrays, and their part over a slab of the first axis
(:func:`_slab_of`) is what a design cut into slabs is made of. Kept apart from
the kernels, so that a module that handles blocks does not read the kernels
to find them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

Axes = tuple[int, ...]


@dataclass(frozen=True)
class DenseBlock:
    """Covariates varying along ``axes``, stored at that level only.

    Attributes
    ----------
    axes : tuple of int
        Sorted panel axes the covariates vary along (``()`` for the intercept).
    values : ndarray
        Shape ``tuple(shape[a] for a in axes) + (n_cols,)``.
    names : tuple of str
        One name per column.
    """

    axes: Axes
    values: np.ndarray
    names: tuple[str, ...]

    @property
    def n_cols(self) -> int:
        """Number of coefficients of the block."""
        return self.values.shape[-1]


@dataclass(frozen=True)
class IndicatorBlock:
    """A fixed effect: one indicator column per level combination of ``axes``.

    Attributes
    ----------
    axes : tuple of int
        Sorted panel axes of the fixed effect.
    codes : ndarray of int
        Shape ``tuple(shape[a] for a in axes)``: the column whose indicator is
        one at that level combination, or ``-1`` for a reference level whose
        effect is zero.
    names : tuple of str
        One name per column.
    """

    axes: Axes
    codes: np.ndarray
    names: tuple[str, ...]

    @property
    def n_cols(self) -> int:
        """Number of coefficients of the block."""
        return len(self.names)


Block = DenseBlock | IndicatorBlock


def _slab_of(blk: Block, sl: slice) -> Block:
    """The part of a block over a slab of the first axis (all of it if it does not vary there)."""
    if not blk.axes or blk.axes[0] != 0:
        return blk
    if isinstance(blk, DenseBlock):
        return replace(blk, values=blk.values[sl])
    return replace(blk, codes=blk.codes[sl])
