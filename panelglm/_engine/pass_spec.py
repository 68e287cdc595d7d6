"""The immutable description of a fit's passes: the plan, the row stack, the inputs.

A chunked pass (numpy's or the compiled sweep's) forms, per cell, a stack of
rows: the curvature, the residual (unless the family's mean equals its
curvature), and the curvature times each cell-level and each spread column.
:class:`PassSpec` fixes once per fit what those rows are, which targets of the
:class:`~panelglm._engine.plan.KernelPlan` hold which of them, and the arrays every
pass reads (response, weights, trials, offset, the blocks' values) in the
working precision, or, for the compiled sweep's passes alone, the cells as
stored (see :meth:`PassSpec.build`). Engines, reductions, assembly and the compiled sweep's
description all read it; none of them writes it.

It imports only the design, the families and the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._model.blocks import Axes, DenseBlock
from .._model.factored import FactoredDesign
from .._model.families import Family
from .plan import KernelPlan


def _expand(arr: np.ndarray, axes: Axes, shape: tuple[int, ...]) -> np.ndarray:
    return arr.reshape([n if d in axes else 1 for d, n in enumerate(shape)])


@dataclass(frozen=True, eq=False)
class PassSpec:
    """What every pass of one fit reads, and how its row stack is laid out.

    Build it with :meth:`build`; every attribute is fixed for the fit.

    Attributes
    ----------
    design : FactoredDesign
        The blocks.
    plan : KernelPlan
        The reductions, groups and spread blocks of a pass.
    family : Family
        The GLM family.
    dtype : numpy dtype
        Working precision of the cell-level work (float64 or float32).
    shape : tuple of int
        The panel's shape.
    every : tuple of int
        All axes.
    y, w : ndarray or None
        Response and weights on the grid, in ``dtype`` (or as stored, see
        :meth:`build`).
    m : float or ndarray
        Trials, broadcastable to the grid; as stored, like ``y``.
    offset_full : ndarray or None
        An offset over every axis (added cell by cell); as stored, like ``y``.
    offset_part : (ndarray, axes) or None
        An offset over fewer axes (folded into the linear predictor's small parts).
    mean_trick : bool
        Whether the family's mean is its curvature: no residual row then.
    first_u : int
        Index of the first ``h * column`` row (1 or 2).
    n_rows, n_all_rows : int
        Rows of the stack; rows every target holds (the others are spread rows).
    dot_rows : range
        Rows dotted with the cell-level columns.
    spread_rows : dict
        Per spread block, ``(first row, end row, targets that need them)``.
    spread_partners : dict
        Per spread block, the blocks whose pairs with it its rows serve.
    local_row : dict
        Per target, ``{row of the stack: row in the target}``.
    group_out : list of tuple of int
        Per group of the plan, the axes its result lives on.
    values : dict
        Dense blocks' values in ``dtype`` (the cell-level ones possibly as
        stored, see :meth:`build`), by block index.
    spread_views : dict
        Spread blocks' values as views broadcastable to a chunk (columns last).
    slices : tuple of slice
        Each block's coefficients.
    """

    design: FactoredDesign
    plan: KernelPlan
    family: Family
    dtype: np.dtype
    shape: tuple[int, ...]
    every: tuple[int, ...]
    y: np.ndarray | None
    w: np.ndarray | None
    m: float | np.ndarray
    offset_full: np.ndarray | None
    offset_part: tuple[np.ndarray, Axes] | None
    mean_trick: bool
    first_u: int
    n_rows: int
    n_all_rows: int
    dot_rows: range
    spread_rows: dict
    spread_partners: dict
    local_row: dict
    group_out: list
    values: dict
    spread_views: dict
    slices: tuple

    @classmethod
    def build(
        cls,
        design: FactoredDesign,
        plan: KernelPlan,
        family: Family,
        y: np.ndarray | None,
        w: np.ndarray | None,
        m: float | np.ndarray,
        offset: tuple[np.ndarray, Axes] | None,
        dtype: type | np.dtype = np.float64,
        stored: bool = False,
    ) -> PassSpec:
        """The description of the passes of ``design`` under ``plan`` for these inputs.

        With ``stored``, the arrays over every cell (``y``, ``w``, the trials,
        an offset over every axis, the cell-level blocks' values) that are float32 are
        kept so, not converted to a float64 copy: for passes that the compiled
        sweep alone runs, which converts each value exactly as it reads it. The
        numpy passes need them in ``dtype``.
        """
        dtype = np.dtype(dtype)
        shape = tuple(design.shape)
        every = tuple(range(design.ndim))

        def cast(arr):
            return np.asarray(arr, dtype=dtype)

        def cast_cells(arr):
            if stored and dtype == np.float64 and getattr(arr, "dtype", None) == np.float32:
                return arr
            return cast(arr)

        offset_full = offset_part = None
        if offset is not None:
            if tuple(offset[1]) == every:
                offset_full = cast_cells(offset[0])
            else:
                offset_part = offset
        mean_trick = bool(family.curvature_is_mean)
        # Rows of the stack: curvature, residual (unless the mean trick
        # applies), then h times each cell-level column and each spread column.
        first_u = 1 if mean_trick else 2
        n_u = sum(design.blocks[i].n_cols for i in (*plan.full, *plan.spread))
        # Rows up to n_all_rows need every reduction; a spread block's rows only
        # those its full-union partners live in. Dot products with the
        # cell-level columns: the residual and the cell-level rows only.
        n_all_rows = first_u + sum(design.blocks[i].n_cols for i in plan.full)
        spread_rows, spread_partners = {}, {}
        r = n_all_rows
        for x in plan.spread:
            sx = set(design.blocks[x].axes)
            partners = [
                a for a in plan.rest if a != x and sx | set(design.blocks[a].axes) == set(every)
            ]
            needed = {
                next(t for t in plan.targets if set(design.blocks[a].axes) <= set(t))
                for a in partners
            }
            spread_partners[x] = partners
            spread_rows[x] = (r, r + design.blocks[x].n_cols, tuple(sorted(needed)))
            r += design.blocks[x].n_cols
        # Each target holds only the rows it receives: a large target (an
        # axis set spanning most cells) would otherwise carry every spread row.
        local_row: dict[Axes, dict[int, int]] = {}
        for t in plan.targets:
            rows = list(range(n_all_rows))
            for r0, r1, needed in spread_rows.values():
                if t in needed:
                    rows += range(r0, r1)
            local_row[t] = {g: k for k, g in enumerate(rows)}
        values = {
            i: (cast_cells if i in plan.full else cast)(b.values)
            for i, b in enumerate(design.blocks)
            if isinstance(b, DenseBlock)
        }
        spread_views = {
            i: values[i].reshape(
                [*_expand_shape(design.blocks[i].axes, shape), design.blocks[i].n_cols]
            )
            for i in plan.spread
        }
        return cls(
            design=design,
            plan=plan,
            family=family,
            dtype=dtype,
            shape=shape,
            every=every,
            y=None if y is None else cast_cells(y),
            w=None if w is None else cast_cells(w),
            m=cast_cells(m) if isinstance(m, np.ndarray) else m,
            offset_full=offset_full,
            offset_part=offset_part,
            mean_trick=mean_trick,
            first_u=first_u,
            n_rows=first_u + n_u,
            n_all_rows=n_all_rows,
            dot_rows=range(1, n_all_rows),
            spread_rows=spread_rows,
            spread_partners=spread_partners,
            local_row=local_row,
            group_out=[tuple(a for a in every if a not in g.contract) for g in plan.groups],
            values=values,
            spread_views=spread_views,
            slices=tuple(design.slices()),
        )

    def cast(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` in the working precision (no copy where it already is)."""
        return np.asarray(arr, dtype=self.dtype)

    def expand(self, arr: np.ndarray, axes: Axes) -> np.ndarray:
        """An array over ``axes`` as a view broadcastable to the grid."""
        return _expand(arr, axes, self.shape)


def _expand_shape(axes: Axes, shape: tuple[int, ...]) -> list[int]:
    return [n if a in axes else 1 for a, n in enumerate(shape)]
