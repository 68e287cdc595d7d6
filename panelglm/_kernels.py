"""Fused, chunked passes over the cells: loss, gradient and Hessian in one sweep.

One pass walks the first axis in chunks of about :data:`CHUNK_CELLS` cells. For
each chunk it builds the linear predictor into a reused buffer, lets the family
write the curvature (and, unless the family's mean equals its curvature, the
residual) into a reused stack of rows, multiplies the curvature into the
cell-level and spread columns' rows, and hands the stack to
:class:`~panelglm._reductions.Reductions`, which adds the small arrays a
:class:`~panelglm._plan.KernelPlan` asks for into float64 accumulators. Only
these small arrays survive a chunk; nothing of size ``N`` is allocated, so
temporaries stay in cache and memory stays flat. The small arrays are then
assembled into the gradient and the Hessian (:mod:`panelglm._assemble`).

This module owns the kernels' state (set up once in
:class:`ChunkKernels`), the per-worker buffers and the threads; it writes the
linear predictor and the rows of the stack, and leaves the reductions to
:mod:`panelglm._reductions` and the assembly to :mod:`panelglm._assemble`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg.blas

from . import _compiled
from ._assemble import Assembly
from ._factored import Axes, DenseBlock
from ._layout import CHUNK_CELLS
from ._reductions import Accumulators, Reductions, _merge
from ._threads import blas_limit, default_threads


def _expand(arr: np.ndarray, axes: Axes, shape: tuple[int, ...]) -> np.ndarray:
    return arr.reshape([n if d in axes else 1 for d, n in enumerate(shape)])


def _rows(arr: np.ndarray, s: int, e: int) -> np.ndarray:
    """Rows ``s:e`` of the first axis of an array broadcastable to the grid."""
    return arr[s:e] if arr.ndim and arr.shape[0] > 1 else arr


_AXPY = {"d": scipy.linalg.blas.daxpy, "f": scipy.linalg.blas.saxpy}


class ChunkKernels(Reductions, Assembly):
    """Loss, gradient and Hessian of a GLM on a factored design, in chunked passes.

    Parameters
    ----------
    design : FactoredDesign
        The blocks.
    plan : KernelPlan
        What a pass computes (from :func:`~panelglm._plan.make_plan`).
    y, w : ndarray or None
        Response and weights on the full grid.
    m : float or ndarray
        Trials, broadcastable to the grid.
    offset : (ndarray, axes) or None
        The offset.
    dtype : numpy dtype
        Working precision of the N-sized work (float64 or float32); the small
        accumulated arrays are always float64.
    curvature_is_mean : bool
        Whether the family's mean equals its curvature (Poisson). The gradient
        is then ``X'(w y) - X'(curvature)``, and ``X'(w y)`` is computed once.
    fused : callable or None
        ``fused(y, eta, m, w, curv, resid, scratch) -> sum of w * f`` on one
        chunk, in place; ``None`` uses the family's plain functions.
    n_threads : int or None
        Threads of a pass: the compiled sweep runs one part per thread (None:
        :func:`~panelglm._threads.resolve_threads`, the fit's or every core);
        the numpy pass as many workers (None: ``_threads.default_threads()``).
    """

    def __init__(
        self, design, plan, y, w, m, offset, dtype, family, chunk_cells=None, n_threads=None
    ):
        self.design, self.plan, self.family = design, plan, family
        self.shape = tuple(design.shape)
        self.dtype = np.dtype(dtype)
        self.every = tuple(range(design.ndim))
        cast = self._cast
        self.y = None if y is None else cast(y)
        self.w = None if w is None else cast(w)
        self.m = cast(m) if isinstance(m, np.ndarray) else m
        self.offset_full = None
        self.offset_part = None
        if offset is not None:
            if tuple(offset[1]) == self.every:
                self.offset_full = cast(offset[0])
            else:
                self.offset_part = offset
        self.mean_trick = bool(family.curvature_is_mean)
        # Rows of the stack: curvature, residual (unless the mean trick
        # applies), then h times each cell-level column and each spread column.
        self.row_blocks = (*plan.full, *plan.spread)
        self.first_u = 1 if self.mean_trick else 2
        n_u = sum(design.blocks[i].n_cols for i in self.row_blocks)
        self.n_rows = self.first_u + n_u
        # Rows up to here need every reduction; a spread block's rows only
        # those its full-union partners live in. Dot products with the
        # cell-level columns: the residual and the cell-level rows only.
        self.n_all_rows = self.first_u + sum(design.blocks[i].n_cols for i in plan.full)
        self.dot_rows = range(1, self.n_all_rows)
        self.spread_rows, self.spread_partners = {}, {}
        r = self.n_all_rows
        every = tuple(range(design.ndim))
        for x in plan.spread:
            sx = set(design.blocks[x].axes)
            partners = [
                a for a in plan.rest if a != x and sx | set(design.blocks[a].axes) == set(every)
            ]
            needed = {
                next(m for m in plan.targets if set(design.blocks[a].axes) <= set(m))
                for a in partners
            }
            self.spread_partners[x] = partners
            self.spread_rows[x] = (r, r + design.blocks[x].n_cols, tuple(sorted(needed)))
            r += design.blocks[x].n_cols
        # Each target holds only the rows it receives: a large target (an
        # axis set spanning most cells) would otherwise carry every spread row.
        self.local_row: dict[Axes, dict[int, int]] = {}
        for m in plan.targets:
            rows = list(range(self.n_all_rows))
            for r0, r1, needed in self.spread_rows.values():
                if m in needed:
                    rows += range(r0, r1)
            self.local_row[m] = {g: k for k, g in enumerate(rows)}
        self.values = {
            i: cast(b.values) for i, b in enumerate(design.blocks) if isinstance(b, DenseBlock)
        }
        # Spread blocks as views broadcastable against a chunk (column last).
        self.spread_views = {
            i: self.values[i].reshape(
                [n if a in design.blocks[i].axes else 1 for a, n in enumerate(self.shape)]
                + [design.blocks[i].n_cols]
            )
            for i in plan.spread
        }
        self.group_out = [tuple(a for a in self.every if a not in g.contract) for g in plan.groups]
        n0, rest = self.shape[0], int(np.prod(self.shape[1:]))
        chunk_cells = CHUNK_CELLS if chunk_cells is None else chunk_cells
        step = max(1, chunk_cells // max(rest, 1))
        self.chunks = [(s, min(s + step, n0)) for s in range(0, n0, step)]
        self._max_cells = step * rest
        # Vectors of ones for the reductions' BLAS products, one per length.
        self._ones: dict[int, np.ndarray] = {}
        self._buffers: list = []
        self.n_threads = n_threads if n_threads is not None else default_threads()
        self._wy_grad = None
        # The compiled sweep, where this family and dtype have one.
        self.compiled = _compiled.CompiledPass(self, n_threads) if _compiled.usable(self) else None

    def _cast(self, arr: np.ndarray) -> np.ndarray:
        return np.asarray(arr, dtype=self.dtype)

    def _bufs(self, k: int = 0):
        """Worker ``k``'s reused chunk buffers: eta, the row stack, scratch."""
        while len(self._buffers) <= k:
            n = self._max_cells
            self._buffers.append(
                (
                    np.empty(n, self.dtype),
                    np.empty((self.n_rows, n), self.dtype),
                    np.empty(n, self.dtype),
                )
            )
        return self._buffers[k]

    def _run(self, work, make_state) -> list:
        """Run ``work(state, k, s, e)`` over every chunk; one state per worker thread.

        numpy's ufuncs, reductions and BLAS calls release the GIL, so chunks
        run in parallel on threads, each with its own buffers and
        accumulators; BLAS itself is held to one thread meanwhile, since its
        calls here are many and small.
        """
        n = max(1, min(self.n_threads, len(self.chunks)))
        states = [make_state() for _ in range(n)]
        bounds = np.linspace(0, len(self.chunks), n + 1).astype(int)

        def job(k):
            for s, e in self.chunks[bounds[k] : bounds[k + 1]]:
                work(states[k], k, s, e)

        with blas_limit():
            if n == 1:
                job(0)
            else:
                with ThreadPoolExecutor(n) as pool:
                    list(pool.map(job, range(n)))
        return states

    # ------------------------------------------------------------ eta
    def eta_parts(self, beta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The linear predictor as folded small parts plus cell-level coefficient vectors."""
        design, parts = self.design, {}

        def add(axes, arr):
            parts[axes] = parts[axes] + arr if axes in parts else np.asarray(arr, np.float64)

        sls = self._slices()  # the Assembly's cached copy
        for i in self.plan.rest:
            blk, b = design.blocks[i], beta[sls[i]]
            if isinstance(blk, DenseBlock):
                add(blk.axes, blk.values @ b)
            else:
                add(blk.axes, np.append(b, 0.0)[blk.codes])
        if self.offset_part is not None:
            add(tuple(self.offset_part[1]), self.offset_part[0])
        # Fold each part into one over a superset of its axes while both are
        # small, so that only parts over maximal axis sets touch every cell.
        for axes in sorted(parts, key=len):
            sups = [t for t in parts if set(axes) < set(t)]
            if sups:
                t = max(sups, key=len)
                local = [a for a in t if a in axes]
                shape = [self.shape[a] if a in local else 1 for a in t]
                parts[t] = parts[t] + parts.pop(axes).reshape(shape)
        small = [self._cast(_expand(arr, axes, self.shape)) for axes, arr in parts.items()]
        cell = [self._cast(beta[sls[i]]) for i in self.plan.full]
        return small, cell

    def fill_eta(self, eta, s, e, small, cell, scratch=None):
        """Write the linear predictor of first-axis positions ``s:e`` into ``eta``.

        The small parts first (the first two in one broadcast add), then each
        cell-level column by one BLAS axpy: a matrix-vector product with a
        handful of columns, or a multiply and an add, cost more passes.
        """
        parts = [_rows(part, s, e) for part in small]
        if self.offset_full is not None:
            parts.append(self.offset_full[s:e])
        if len(parts) >= 2:
            np.add(parts[0], parts[1], out=eta)
        elif parts:
            np.copyto(eta, parts[0])
        else:
            eta.fill(0.0)
        for part in parts[2:]:
            eta += part
        flat = eta.reshape(-1)
        axpy = _AXPY.get(eta.dtype.char)
        for i, b in zip(self.plan.full, cell, strict=True):
            vals = self.values[i]
            for q in range(vals.shape[-1]):
                col = vals[s:e, ..., q].reshape(-1)
                if axpy is not None and col.flags.c_contiguous and col.dtype == eta.dtype:
                    axpy(col, flat, a=b[q])  # in place: flat is contiguous and of its type
                elif scratch is None:
                    flat += col * b[q]
                else:
                    tmp = scratch[: flat.size]
                    np.multiply(col, b[q], out=tmp)
                    flat += tmp

    # ----------------------------------------------------------- passes
    def loss_sum(self, beta: np.ndarray) -> float:
        """``sum_c w_c f_c`` at ``beta``."""
        small, cell = self.eta_parts(beta)
        if self.compiled is not None:
            return self.compiled.loss(self, small, cell)

        def work(state, k, s, e):
            eta_buf, stack, scratch = self._bufs(k)
            csh = (e - s, *self.shape[1:])
            eta = eta_buf[: int(np.prod(csh))].reshape(csh)
            self.fill_eta(eta, s, e, small, cell, scratch)
            state[0] += self._family_chunk(eta, s, e, stack[0], None, False)

        with np.errstate(over="ignore", invalid="ignore"):
            return sum(st[0] for st in self._run(work, lambda: [0.0]))

    def _family_chunk(self, eta, s, e, curv_flat, resid_flat, derivs) -> float:
        y = _rows(self.y, s, e)
        w = None if self.w is None else self.w[s:e]
        m = _rows(self.m, s, e) if isinstance(self.m, np.ndarray) else self.m
        curv = curv_flat[: eta.size].reshape(eta.shape)
        resid = None if resid_flat is None else resid_flat[: eta.size].reshape(eta.shape)
        fused = self.family.fused
        if fused is not None:
            return fused(y, eta, m, w, curv, resid, derivs)
        f = self.family.loglik(y, eta, m)
        if w is not None:
            f = f * w
        total = float(np.sum(f, dtype=np.float64))
        if derivs:
            g, h = self.family.grad_hess(y, eta, m)
            np.negative(h, out=curv)
            if w is not None:
                curv *= w
            if resid is not None:
                np.copyto(resid, g)
                if w is not None:
                    resid *= w
        return total

    def full_pass(self, beta: np.ndarray, weight_fn=None) -> Accumulators:
        """Loss sum and every small array of the plan at ``beta``.

        With ``weight_fn(y, eta, m, w, out)``, the pass uses the cell weights
        it writes into ``out`` in place of the curvature (and no loss): the
        Hessian assembled from it is then ``X' diag(out) X``.
        """
        small, cell = self.eta_parts(beta)
        if self.compiled is not None and weight_fn is None:
            return self.compiled.full(self, small, cell)

        def work(acc, k, s, e):
            eta_buf, stack, scratch = self._bufs(k)
            csh = (e - s, *self.shape[1:])
            n = int(np.prod(csh))
            eta = eta_buf[:n].reshape(csh)
            self.fill_eta(eta, s, e, small, cell, scratch)
            resid = None if self.mean_trick else stack[1]
            if weight_fn is None:
                acc.lsum += self._family_chunk(eta, s, e, stack[0], resid, True)
            else:
                m = _rows(self.m, s, e) if isinstance(self.m, np.ndarray) else self.m
                w = None if self.w is None else self.w[s:e]
                weight_fn(_rows(self.y, s, e), eta, m, w, stack[0, :n].reshape(csh))
                if resid is not None:
                    resid[:n] = 0.0  # no gradient is asked of this pass
            rows = stack[:, :n].reshape((self.n_rows, *csh))
            r = self.first_u
            for i in self.plan.full:
                vals = self.values[i]
                for q in range(vals.shape[-1]):
                    np.multiply(rows[0], vals[s:e, ..., q], out=rows[r])
                    r += 1
            for i in self.plan.spread:
                view = _rows(self.spread_views[i], s, e)
                for q in range(view.shape[-1]):
                    np.multiply(rows[0], view[..., q], out=rows[r])
                    r += 1
            self._accumulate(rows, s, e, acc)

        with np.errstate(over="ignore", invalid="ignore"):
            return _merge(self._run(work, lambda: Accumulators(self)))

    def rows_pass(self, row_fn) -> Accumulators:
        """Reductions and cell-level products of one given row (e.g. ``w * y``)."""

        def work(acc, k, s, e):
            _, stack, _ = self._bufs(k)
            csh = (e - s, *self.shape[1:])
            rows = stack[:1, : int(np.prod(csh))].reshape((1, *csh))
            row_fn(rows[0], s, e)
            self._accumulate(rows, s, e, acc, groups=False, dot_rows=(0,))

        return _merge(self._run(work, lambda: Accumulators(self)))

    # --------------------------------------------------------- assembly
    def gradient(self, acc: Accumulators) -> np.ndarray:
        """``X' (w g)``: the family's score summed into coefficient space."""
        if not self.mean_trick:
            return self.row_gradient(acc, 1)
        if self._wy_grad is None:
            w = self.w

            def wy(row, s, e):
                np.copyto(row, _rows(self.y, s, e))
                if w is not None:
                    row *= w[s:e]

            self._wy_grad = self.row_gradient(self.rows_pass(wy), 0)
        return self._wy_grad - self.curvature_row(acc)
