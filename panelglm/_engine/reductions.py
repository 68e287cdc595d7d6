"""Reductions and contractions of one chunk's row stack into the small accumulators.

A pass (:mod:`panelglm._engine.kernels`) leaves, for each chunk, a stack of rows over
the chunk's cells: curvature, residual, and the curvature times each
cell-level or spread column. This module turns that stack into the small
float64 arrays a :class:`~panelglm._engine.plan.KernelPlan` asks for and adds them
into an :class:`Accumulators`: reductions to the plan's targets by products
with vectors of ones, the plan's groups by batched BLAS products, and dot
products with the cell-level columns.

It reads the chunk it is handed and the description of the passes
(:class:`~panelglm._engine.pass_spec.PassSpec`); it writes only into the accumulators (and
its cache of vectors of ones). It does not build the linear predictor, call
the family or run threads: that is the pass's work. Assembling the
accumulators into a gradient and a Hessian is :mod:`panelglm._engine.assemble`'s.
It imports only the design, the plan and the description.
"""

from __future__ import annotations

import numpy as np

from .._model.blocks import Axes
from .pass_spec import PassSpec
from .plan import Group


def _sub(shape: tuple[int, ...], axes: Axes) -> tuple[int, ...]:
    return tuple(shape[a] for a in axes)


class Accumulators:
    """The small float64 arrays one pass produces."""

    # Worked out once from these arrays, for the gradient and the Hessian to
    # share (Assembler._first_rows and Assembler.curvature_row).
    first_rows: np.ndarray | None = None
    first_sums: dict | None = None
    h_row: np.ndarray | None = None

    def __init__(self, spec: PassSpec) -> None:
        shape, n_rows = spec.shape, spec.n_rows
        self.lsum = 0.0
        self.red = {
            m: np.zeros((len(spec.local_row[m]), *_sub(shape, m))) for m in spec.plan.targets
        }
        self.grp = [
            np.zeros((*_sub(shape, g_out), spec.design.blocks[g.block].n_cols))
            for g, g_out in zip(spec.plan.groups, spec.group_out, strict=True)
        ]
        self.cell = [np.zeros((n_rows, spec.design.blocks[i].n_cols)) for i in spec.plan.full]

    def release(self) -> None:
        """Done with these arrays: buffers lent to a pass go back (these own theirs).

        The engines call it once the gradient and the Hessian are assembled;
        the arrays must not be read after. A compiled pass's live in its
        engine's pool (:class:`~panelglm._engine.buffers.PooledAccumulators`).
        """


def merge(accs: list[Accumulators]) -> Accumulators:
    """Sum the worker threads' accumulators into the first one."""
    out = accs[0]
    for acc in accs[1:]:
        out.lsum += acc.lsum
        for m in out.red:
            out.red[m] += acc.red[m]
        for a, b in zip(out.grp + out.cell, acc.grp + acc.cell, strict=True):
            a += b
    return out


class Reducer:
    """A chunk's row stack into the accumulators of a pass described by ``spec``.

    Parameters
    ----------
    spec : PassSpec
        The description of the passes: targets, groups, rows and blocks' values.
    """

    def __init__(self, spec: PassSpec) -> None:
        self.spec = spec
        self.every = spec.every
        self.dtype = spec.dtype
        self.values = spec.values
        # Vectors of ones for the reductions' BLAS products, one per length.
        self._ones: dict[int, np.ndarray] = {}

    def _one(self, n: int) -> np.ndarray:
        if n not in self._ones:
            self._ones[n] = np.ones(n, dtype=self.dtype)
        return self._ones[n]

    def accumulate(self, rows, s, e, acc, groups=True, dot_rows=None):
        """Add the reductions, groups and cell-level products of rows ``s:e`` into ``acc``."""
        spec = self.spec
        n_all = min(rows.shape[0], spec.n_all_rows)
        for m, out in acc.red.items():
            self._reduce_into(rows[:n_all], m, s, e, out[:n_all])
        if groups:
            for r0, r1, needed in spec.spread_rows.values():
                for m in needed:
                    lo = spec.local_row[m][r0]
                    self._reduce_into(rows[r0:r1], m, s, e, acc.red[m][lo : lo + r1 - r0])
            for g, g_out, out in zip(spec.plan.groups, spec.group_out, acc.grp, strict=True):
                self._group(g, g_out, rows[0], s, e, out)
        flat = rows.reshape(rows.shape[0], -1)
        for i, out in zip(spec.plan.full, acc.cell, strict=True):
            vals = self.values[i]
            for q in range(vals.shape[-1]):
                col = vals[s:e, ..., q].reshape(-1)
                for r in spec.dot_rows if dot_rows is None else dot_rows:
                    out[r, q] += float(np.dot(flat[r], col))

    def _reduce_into(self, rows, keep: Axes, s: int, e: int, out: np.ndarray) -> None:
        """Add the chunk's rows, summed to ``keep``, into the accumulator ``out``."""
        if 0 in keep:
            out[:, s:e] += self._reduce(rows, keep)
        elif keep == self.every[1:] and rows.shape[1] < 8:
            for i in range(rows.shape[1]):  # a few slabs: add them, no temporary
                out += rows[:, i]
        else:
            out += self._reduce(rows, keep)

    def _reduce(self, rows: np.ndarray, keep: Axes) -> np.ndarray:
        """Sum the chunk's rows over the axes not in ``keep`` (BLAS with ones when contiguous)."""
        csh = rows.shape[1:]
        summed = [a for a in self.every if a not in keep]
        out_shape = (rows.shape[0], *(csh[a] for a in keep))
        if summed != list(range(summed[0], summed[-1] + 1)):
            return rows.sum(axis=tuple(a + 1 for a in summed)).reshape(out_shape)
        lo, hi = summed[0], summed[-1] + 1
        pre = rows.shape[0] * int(np.prod(csh[:lo]))
        mid, post = int(np.prod(csh[lo:hi])), int(np.prod(csh[hi:]))
        view = rows.reshape(pre, mid, post)
        if mid < 8:  # a product with a handful of ones is slower than plain adds
            return view.sum(axis=1).reshape(out_shape)
        if post == 1:
            res = view.reshape(pre, mid) @ self._one(mid)
        else:
            res = np.matmul(self._one(mid), view)
        return res.reshape(out_shape)

    def _group(self, g: Group, out_axes: Axes, h, s, e, out):
        """Accumulate ``sum over g.contract of h * X_b`` as one batched BLAS product."""
        blk_axes = self.spec.design.blocks[g.block].axes
        x = self.values[g.block]
        x = x[s:e] if 0 in blk_axes else x
        csh = h.shape
        ncol = x.shape[-1]
        free = [a for a in self.every if a not in blk_axes]
        nc, nf = int(np.prod(_sub(csh, g.contract))), int(np.prod(_sub(csh, free)))
        if blk_axes[0] == 0 and 0 not in g.contract:  # batched over the chunk's first axis
            x3 = x.reshape(csh[0], nc, ncol)
            if free[0] < g.contract[0]:
                res = np.matmul(h.reshape(csh[0], nf, nc), x3)
            else:
                res = np.matmul(x3.transpose(0, 2, 1), h.reshape(csh[0], nc, nf))
                res = res.transpose(0, 2, 1)
            out[s:e] += res.reshape(out[s:e].shape)
            return
        x2 = x.reshape(nc, ncol)
        if free[0] < g.contract[0]:
            res = h.reshape(nf, nc) @ x2
        else:
            res = (x2.T @ h.reshape(nc, nf)).T
        if 0 in out_axes:
            out[s:e] += res.reshape(out[s:e].shape)
        else:
            out += res.reshape(out.shape)
