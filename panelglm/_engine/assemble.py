"""From the small arrays of a pass to the gradient and the Hessian.

A pass (:mod:`panelglm._engine.kernels`, reduced by :mod:`panelglm._engine.reductions`)
leaves, per row of its stack, the row summed to a few maximal axis sets, the
batched contractions of the plan's groups and the dot products with the
cell-level columns. These few, small arrays are contracted with the blocks
here: a dense block by matrix products, a fixed effect or categorical by summing
within its codes. It imports the design, the description of the passes and
the accumulators' type, nothing that runs a pass.
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np

from .._model.blocks import Axes, DenseBlock
from .._model.factored import COLUMN_CELLS
from .pass_spec import PassSpec
from .reductions import Accumulators
from .sums import sum_axes


class _Seeded:
    """Sums of one row over axis subsets, served from the smallest cached superset.

    A seed may be absent (None, see :class:`Assembler`): so is every sum served from it.
    """

    def __init__(self, seeds: dict[Axes, np.ndarray | None]) -> None:
        self._cache = dict(seeds)

    def get(self, axes: Axes) -> np.ndarray | None:
        if axes not in self._cache:
            src = min((k for k in self._cache if set(axes) <= set(k)), key=len)
            drop = tuple(i for i, a in enumerate(src) if a not in axes)
            seed = self._cache[src]
            self._cache[axes] = None if seed is None else sum_axes(seed, drop)
        return self._cache[axes]


def _run(index: list[int]) -> slice | list[int]:
    """``index`` as a slice where it is a run (a view, not a copy), else as it is."""
    if index == list(range(index[0], index[-1] + 1)):
        return slice(index[0], index[-1] + 1)
    return index


class Assembler:
    """Gradient rows and Hessian of the passes described by ``spec``, from their accumulators.

    Parameters
    ----------
    spec : PassSpec
        The description of the passes. The schedules and block layouts that
        depend on it alone are worked out on first use and kept.

    Notes
    -----
    The results are linear in the accumulators. An accumulator may be absent
    (None): every step that reads it is skipped, as if it were zero, and
    each step reads one accumulator, chosen alike for a slab and its grid (by
    axes; where by sizes, as in :meth:`row_gradient`, only among arrays whose
    sizes keep their order when the first axis is cut). So the results from accumulators
    split in two, each with the other's absent, add up to the whole's: a
    Dask task contracts the arrays over the first axis of its slabs, the
    last one the others (:mod:`panelglm._engine.dask_slabs`).
    """

    def __init__(self, spec: PassSpec) -> None:
        self.design, self.plan = spec.design, spec.plan
        self.shape, self.every = spec.shape, spec.every
        self.n_rows, self.n_all_rows, self.first_u = spec.n_rows, spec.n_all_rows, spec.first_u
        self.local_row, self.group_out = spec.local_row, spec.group_out
        self.spread_rows, self.spread_partners = spec.spread_rows, spec.spread_partners
        self._sls = list(spec.slices)

    def _seeded(self, acc: Accumulators, r: int) -> _Seeded:
        # A spread row is held only by the targets its partners need.
        local = self.local_row
        seeds = {
            m: None if red is None else red[local[m][r]]
            for m, red in acc.red.items()
            if r in local[m]
        }
        if r < self.n_all_rows:  # the first rows' sums to the blocks' axes: not summed twice
            seeds.update(
                (axes, None if t is None else t[r]) for axes, t in self._first_sums(acc).items()
            )
        return _Seeded(seeds)

    def _slices(self) -> list[slice]:
        """The blocks' coefficient slices."""
        return self._sls

    def _rows_plan(self) -> list[tuple]:
        """Per block of the plan's rest: the rows to bring into coefficient space, and how.

        Every block takes the rows all targets hold; a full-union partner of
        a spread column also that column's rows, from the same target and in
        the same product, so that its values are read once. Each step holds
        the block, its target, the rows' index there and in the result, and
        the axes to sum. Worked out once.
        """
        steps = self.__dict__.get("_row_steps")
        if steps is None:
            steps = []
            for i in self.plan.rest:
                axes = set(self.design.blocks[i].axes)
                rows = list(range(self.n_all_rows))
                for x, (r0, r1, _) in self.spread_rows.items():
                    if i in self.spread_partners[x]:
                        rows += range(r0, r1)
                m = min(
                    (
                        m
                        for m in self.plan.targets
                        if axes <= set(m) and all(r in self.local_row[m] for r in rows)
                    ),
                    key=len,
                )
                local = [self.local_row[m][r] for r in rows]
                index, dest = _run(local), _run(rows)
                drop = tuple(1 + k for k, a in enumerate(m) if a not in axes)
                steps.append((i, m, index, dest, len(rows), drop))
            self._row_steps = steps
        return steps

    def _first_rows(self, acc: Accumulators) -> np.ndarray:
        """``X_b' row`` for every row and block of :meth:`_rows_plan`, once per pass.

        The curvature, the residual and the cell-level columns' rows (the
        gradient, the intercept's and the cell-level columns' Hessian rows
        read them), and the spread columns' rows for their partners. Each
        block's rows are taken together from one target, and a dense block
        is one matrix product for all of them: each row on its own would
        cost an ``einsum`` call per block. The rows summed to each block's
        axes are kept for the Hessian (:meth:`_first_sums`).
        """
        if acc.first_rows is None:
            design, sls = self.design, self._slices()
            out = np.zeros((self.n_rows, design.n_coef))
            sums: dict[Axes, np.ndarray | None] = {}
            for i, m, index, dest, n, drop in self._rows_plan():
                blk = design.blocks[i]
                if acc.red[m] is None:  # absent: these rows are the other part's
                    sums[blk.axes] = None
                    continue
                t = sums[blk.axes] = sum_axes(acc.red[m][index], drop)
                t = t.reshape(n, -1)
                if isinstance(blk, DenseBlock):
                    out[dest, sls[i]] = t @ blk.values.reshape(t.shape[1], -1)
                else:
                    codes = blk.codes.ravel()
                    ok = codes >= 0
                    rows = range(*dest.indices(self.n_rows)) if isinstance(dest, slice) else dest
                    for k, r in enumerate(rows):
                        out[r, sls[i]] = np.bincount(
                            codes[ok], weights=t[k][ok], minlength=blk.n_cols
                        )
            acc.first_rows, acc.first_sums = out, sums
        return acc.first_rows

    def _first_sums(self, acc: Accumulators) -> dict[Axes, np.ndarray]:
        """Per block's axes, its rows of :meth:`_rows_plan` summed to them (first rows first)."""
        self._first_rows(acc)
        return acc.first_sums

    def row_gradient(self, acc: Accumulators, r: int, h_row: bool = False) -> np.ndarray:
        """``X' row`` for row ``r`` of a pass (a row reduced to every target).

        The curvature row of a full pass (``h_row``) has no dot products with
        the cell-level columns: ``sum h X_q`` is the total of the row ``h X_q``.
        """
        out = self._first_rows(acc)[r].copy()
        sls = self._slices()
        totals = None
        if h_row and self.plan.full:
            # Each row's total, from the smallest array that holds it (one
            # without the first axis if any: chosen alike for a slab and its
            # grid). Every target holds the first rows at their own index
            # (local_row[m][r] is r for r < n_all_rows: the kernel numbers them first).
            n_all = self.n_all_rows
            held = [*self._first_sums(acc).items(), *acc.red.items()]
            _, src = min(held, key=lambda kv: (0 in kv[0], self._size(kv[0])))
            if src is not None:
                src = src[:n_all]
                totals = sum_axes(np.ascontiguousarray(src), tuple(range(1, src.ndim)))
        u = self.first_u
        for i, n in zip(self.plan.full, self._cell_widths(), strict=True):
            if h_row:
                out[sls[i]] = 0.0 if totals is None else totals[u : u + n]
            else:
                cell = acc.cell[self.plan.full.index(i)]
                out[sls[i]] = 0.0 if cell is None else cell[r]
            u += n
        return out

    def _size(self, axes: Axes) -> int:
        return int(np.prod([self.shape[a] for a in axes]))

    def _cell_widths(self) -> list[int]:
        return [self.design.blocks[i].n_cols for i in self.plan.full]

    def curvature_row(self, acc: Accumulators) -> np.ndarray:
        """``X' h`` for the curvature ``h`` of a full pass, worked out once per pass.

        The Poisson gradient subtracts it, and it is the Hessian's row of a
        constant column (the intercept).
        """
        if acc.h_row is None:
            acc.h_row = self.row_gradient(acc, 0, h_row=True)
        return acc.h_row

    def _constant_blocks(self) -> list[int]:
        """Dense blocks over no axis (the intercept): their Hessian rows are ``v (X' h)'``.

        Worked out once, like the pair schedule that leaves them out.
        """
        constant = self.__dict__.get("_constant")
        if constant is None:
            blocks = self.design.blocks
            dense = [i for i in self.plan.rest if isinstance(blocks[i], DenseBlock)]
            constant = self._constant = [i for i in dense if not blocks[i].axes]
        return constant

    def _pair_schedule(self) -> list[tuple[str, int, int, object]]:
        """The Hessian's block pairs not served by spread rows, each as it is formed.

        ``("pair", ia, ib, u)``: from the curvature reduced to ``u``;
        ``("top", ia, ib, u)``: the same, where ``ia`` is a dense block over
        all of ``u`` (see :meth:`_top_pair`); ``("group", partner, block,
        k)``: from group ``k``. Worked out once.
        """
        sched = self.__dict__.get("_pairs")
        if sched is None:
            design, plan, sched = self.design, self.plan, []
            constant = self._constant_blocks()
            for ia, ib in combinations_with_replacement(plan.rest, 2):
                if ia in constant or ib in constant:
                    continue  # from the curvature row
                a, b = design.blocks[ia], design.blocks[ib]
                u = tuple(sorted(set(a.axes) | set(b.axes)))
                if u == self.every and (ia in plan.spread or ib in plan.spread):
                    continue  # filled from the spread rows
                if u == self.every:
                    grp, partner = plan.group_of(ia, ib)
                    sched.append(("group", partner, grp.block, plan.groups.index(grp)))
                    continue
                dense = isinstance(a, DenseBlock) and isinstance(b, DenseBlock)
                # A dense block first (_pair's order); of two, the one over u.
                if (dense and b.axes == u) or (isinstance(b, DenseBlock) and not dense):
                    (ia, a), (ib, b) = (ib, b), (ia, a)
                small = np.prod([self.shape[x] for x in u]) <= COLUMN_CELLS
                top = dense and small and a.axes == u
                sched.append(("top" if top else "pair", ia, ib, u))
            self._pairs = sched
        return sched

    def _rows_t(self, i: int) -> np.ndarray:
        """Dense block ``i``'s values as columns by cells, stored row by row (cached)."""
        cache = self.__dict__.setdefault("_values_t", {})
        if i not in cache:
            blk = self.design.blocks[i]
            cache[i] = np.ascontiguousarray(blk.values.reshape(-1, blk.n_cols).T)
        return cache[i]

    def _top_pair(self, top: int, other: int, w: np.ndarray) -> np.ndarray:
        """Hessian block of ``top`` (a dense block over all of ``u``) and ``other``.

        ``w`` is ``X_top' * t`` (columns by cells of ``u``), formed once for
        every pair of ``top``: the pair is ``w`` summed over the axes ``other``
        lacks, times ``X_other`` (``X_top'`` itself for the diagonal block).
        """
        plans = self.__dict__.setdefault("_top_plans", {})
        plan = plans.get((top, other))
        if plan is None:
            plan = plans[top, other] = self._top_plan(top, other)
        shape, drop, right = plan
        if shape is None:
            return w @ right
        return sum_axes(w.reshape(shape), drop).reshape(shape[0], -1) @ right

    def _top_plan(self, top: int, other: int) -> tuple:
        """How :meth:`_top_pair` forms a pair: ``w``'s shape, the axes to sum, the right factor."""
        cols = self._rows_t(other)
        if other == top:
            # OpenBLAS multiplies a many-column block faster by its values
            # stored cell by cell, a few-column one by the transposed rows
            # (measured: benchmarks/PERF_NOTES.md, "Per-call overhead").
            wide = cols.shape[0] >= 16
            return None, (), np.ascontiguousarray(cols.T) if wide else cols.T
        axes_t, axes_o = self.design.blocks[top].axes, self.design.blocks[other].axes
        drop = tuple(1 + k for k, a in enumerate(axes_t) if a not in axes_o)
        shape = (self.design.blocks[top].n_cols, *(self.shape[a] for a in axes_t))
        return shape, drop, cols.T

    def hessian(self, acc: Accumulators) -> np.ndarray:
        """``X' diag(curvature) X`` from the pass's small arrays."""
        design, plan = self.design, self.plan
        sls = self._slices()
        out = np.zeros((design.n_coef, design.n_coef))
        red = self._seeded(acc, 0) if plan.targets else None
        weighted: dict[int, np.ndarray] = {}  # X_top' * t, per top block
        for kind, ia, ib, via in self._pair_schedule():
            src = acc.grp[via] if kind == "group" else red.get(via)
            if src is None:  # absent: this block is the other part's
                continue
            if kind == "group":  # a group's result, with partner ia
                blk = self._partner(self.group_out[via], src, ia)
            elif kind == "top":
                if ia not in weighted:
                    weighted[ia] = self._rows_t(ia) * src.reshape(-1)
                blk = self._top_pair(ia, ib, weighted[ia])
            else:
                blk = design._pair(ia, ib, design.blocks[ia], design.blocks[ib], via, src)
            out[sls[ia], sls[ib]] = blk
            out[sls[ib], sls[ia]] = blk.T
        for c in self._constant_blocks():
            rows = np.multiply.outer(design.blocks[c].values.reshape(-1), self.curvature_row(acc))
            out[sls[c], :] = rows
            out[:, sls[c]] = rows.T
        # A spread column's row h * X_q, reduced, gives its full-union pairs.
        for x, (r0, r1, _) in self.spread_rows.items():
            rows = self._first_rows(acc)[r0:r1]
            for a in self.spread_partners[x]:
                out[sls[x], sls[a]] = rows[:, sls[a]]
                out[sls[a], sls[x]] = rows[:, sls[a]].T
        # A cell-level column's row h * X_q gives its whole row of the Hessian:
        # the reductions for the other blocks, the dot products for its own.
        if plan.full:
            r, r1, cols = self.first_u, self.n_all_rows, self._cell_cols()
            rows = self._first_rows(acc)[r:r1].copy()
            for i2, cell in zip(plan.full, acc.cell, strict=True):
                rows[:, sls[i2]] = 0.0 if cell is None else cell[r:r1]
            out[cols, :] = rows
            out[:, cols] = rows.T
        return out

    def _cell_cols(self) -> slice | list[int]:
        """The cell-level columns' coefficients, a slice where they are a run (cached)."""
        cols = self.__dict__.get("_cell_index")
        if cols is None:
            sls = self._slices()
            cols = [c for i in self.plan.full for c in range(sls[i].start, sls[i].stop)]
            cols = self._cell_index = _run(cols)
        return cols

    def _partner(self, g_out: Axes, res: np.ndarray, partner: int) -> np.ndarray:
        """Hessian block (partner, group block) from a group's result."""
        blk = self.design.blocks[partner]
        drop = tuple(i for i, a in enumerate(g_out) if a not in blk.axes)
        t = sum_axes(res, drop)
        if isinstance(blk, DenseBlock):
            # X' t as a matrix product with X' stored row by row: t is the
            # group's result over the partner's axes (its columns z last).
            xt = self._rows_t(partner)
            if t.flags.c_contiguous:
                return xt @ t.reshape(xt.shape[1], -1)
            # The sweep stores a group's columns before the last axis: t with its
            # columns first, copied row by row, then a product of rows (OpenBLAS
            # is slow on the other layout of an n x 3 by n x 3 product).
            rows = np.ascontiguousarray(t.transpose(t.ndim - 1, *range(t.ndim - 1)))
            rows = rows.reshape(-1, xt.shape[1])
            return (rows @ xt.T).T
        codes = blk.codes.ravel()
        ok = codes >= 0
        flat = t.reshape(codes.size, -1)
        out = np.zeros((blk.n_cols, flat.shape[1]))
        np.add.at(out, codes[ok], flat[ok])
        return out
