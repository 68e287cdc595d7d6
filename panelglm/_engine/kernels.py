"""The numpy pass engine: loss, gradient and Hessian in fused, chunked passes.

One pass walks the first axis in chunks of about :data:`CHUNK_CELLS` cells. For
each chunk it builds the linear predictor into a reused buffer, lets the family
write the curvature (and, unless the family's mean equals its curvature, the
residual) into a reused stack of rows, multiplies the curvature into the
cell-level and spread columns' rows, and hands the stack to a
:class:`~panelglm._engine.reductions.Reducer`, which adds the small arrays a
:class:`~panelglm._engine.plan.KernelPlan` asks for into float64 accumulators. Only
these small arrays survive a chunk; nothing of size ``N`` is allocated, so
temporaries stay in cache and memory stays flat. An
:class:`~panelglm._engine.assemble.Assembler` turns them into the gradient and the
Hessian.

This module owns the per-worker buffers and the threads of a pass; it writes
the rows of the stack (the linear predictor by :mod:`panelglm._engine.eta`).
What a pass computes is fixed by a
:class:`~panelglm._engine.pass_spec.PassSpec`. The compiled engine
(:mod:`panelglm._engine.compiled_engine`) is this engine with its loss and full
passes run by the compiled sweep.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._data.layout import CHUNK_CELLS
from .._model.families import Family
from .._util.threads import blas_limit, default_threads
from .assemble import Assembler
from .eta import eta_parts, fill_eta
from .eta import rows as _rows
from .pass_spec import PassSpec
from .problem import PanelProblem
from .reductions import Accumulators, Reducer, merge


def squared_scores(family: Family, y, eta, m, w, out) -> None:
    """Cell weights ``(w g)^2`` for a pass whose Hessian is the robust meat (``full_pass``)."""
    g = family.grad_hess(y, eta, m)[0]
    if w is not None:
        g = g * w
    np.multiply(g, g, out=out)


class NumpyEngine:
    """The pass engine of numpy's chunked passes.

    It follows :class:`~panelglm._engine.engines.PassEngine`.

    Parameters
    ----------
    spec : PassSpec
        What every pass reads and computes.
    problem : PanelProblem
        The fit's arrays, for the statistics taken chunk by chunk.
    chunk_cells : int, optional
        Cells per chunk (default :data:`CHUNK_CELLS`).
    n_threads : int, optional
        Worker threads of a pass (default: :func:`~panelglm._util.threads.default_threads`).
    """

    name = "numpy"

    def __init__(
        self,
        spec: PassSpec,
        problem: PanelProblem,
        chunk_cells: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.spec, self.problem = spec, problem
        self.reducer = Reducer(spec)
        self.assembler = Assembler(spec)
        shape = spec.shape
        n0, rest = shape[0], int(np.prod(shape[1:]))
        chunk_cells = CHUNK_CELLS if chunk_cells is None else chunk_cells
        step = max(1, chunk_cells // max(rest, 1))
        self.chunks = [(s, min(s + step, n0)) for s in range(0, n0, step)]
        self._max_cells = step * rest
        self._buffers: list = []
        # The products of dense blocks off the first axis with their
        # coefficients, kept by whoever runs passes over slabs of one grid
        # (every slab shares them): ``{"beta": bytes, block index: part}``.
        self.part_cache: dict | None = None
        self.n_threads = n_threads if n_threads is not None else default_threads()
        self._wy_grad = None

    def _bufs(self, k: int = 0):
        """Worker ``k``'s reused chunk buffers: eta, the row stack, scratch."""
        while len(self._buffers) <= k:
            n = self._max_cells
            self._buffers.append(
                (
                    np.empty(n, self.spec.dtype),
                    np.empty((self.spec.n_rows, n), self.spec.dtype),
                    np.empty(n, self.spec.dtype),
                )
            )
        return self._buffers[k]

    def _run(self, work, make_state, n_threads: int | None = None) -> list:
        """Run ``work(state, k, s, e)`` over every chunk; one state per worker thread.

        numpy's ufuncs, reductions and BLAS calls release the GIL, so chunks
        run in parallel on threads, each with its own buffers and
        accumulators; BLAS itself is held to one thread meanwhile, since its
        calls here are many and small. ``n_threads`` defaults to the engine's.
        """
        n_threads = self.n_threads if n_threads is None else n_threads
        n = max(1, min(n_threads, len(self.chunks)))
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
        return eta_parts(self.spec, beta, self.part_cache)

    def fill_eta(self, eta, s, e, small, cell, scratch=None):
        """Write the linear predictor of positions ``s:e`` of the first axis into ``eta``."""
        fill_eta(self.spec, eta, s, e, small, cell, scratch)

    # ----------------------------------------------------------- passes
    def loss(self, beta: np.ndarray) -> float:
        """``sum_c w_c f_c`` at ``beta``."""
        small, cell = self.eta_parts(beta)
        shape = self.spec.shape

        def work(state, k, s, e):
            eta_buf, stack, scratch = self._bufs(k)
            csh = (e - s, *shape[1:])
            eta = eta_buf[: int(np.prod(csh))].reshape(csh)
            self.fill_eta(eta, s, e, small, cell, scratch)
            state[0] += self._family_chunk(eta, s, e, stack[0], None, False)

        with np.errstate(over="ignore", invalid="ignore"):
            return sum(st[0] for st in self._run(work, lambda: [0.0]))

    def _family_chunk(self, eta, s, e, curv_flat, resid_flat, derivs) -> float:
        sp = self.spec
        y = _rows(sp.y, s, e)
        w = None if sp.w is None else sp.w[s:e]
        m = _rows(sp.m, s, e) if isinstance(sp.m, np.ndarray) else sp.m
        curv = curv_flat[: eta.size].reshape(eta.shape)
        resid = None if resid_flat is None else resid_flat[: eta.size].reshape(eta.shape)
        family = sp.family
        if family.fused is not None:
            return family.fused(y, eta, m, w, curv, resid, derivs)
        f = family.loglik(y, eta, m)
        if w is not None:
            f = f * w
        total = float(np.sum(f, dtype=np.float64))
        if derivs:
            g, h = family.grad_hess(y, eta, m)
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
        sp = self.spec
        small, cell = self.eta_parts(beta)

        def work(acc, k, s, e):
            eta_buf, stack, scratch = self._bufs(k)
            csh = (e - s, *sp.shape[1:])
            n = int(np.prod(csh))
            eta = eta_buf[:n].reshape(csh)
            self.fill_eta(eta, s, e, small, cell, scratch)
            resid = None if sp.mean_trick else stack[1]
            if weight_fn is None:
                acc.lsum += self._family_chunk(eta, s, e, stack[0], resid, True)
            else:
                m = _rows(sp.m, s, e) if isinstance(sp.m, np.ndarray) else sp.m
                w = None if sp.w is None else sp.w[s:e]
                weight_fn(_rows(sp.y, s, e), eta, m, w, stack[0, :n].reshape(csh))
                if resid is not None:
                    resid[:n] = 0.0  # no gradient is asked of this pass
            rows = stack[:, :n].reshape((sp.n_rows, *csh))
            r = sp.first_u
            for i in sp.plan.full:
                vals = sp.values[i]
                for q in range(vals.shape[-1]):
                    np.multiply(rows[0], vals[s:e, ..., q], out=rows[r])
                    r += 1
            for i in sp.plan.spread:
                view = _rows(sp.spread_views[i], s, e)
                for q in range(view.shape[-1]):
                    np.multiply(rows[0], view[..., q], out=rows[r])
                    r += 1
            self.reducer.accumulate(rows, s, e, acc)

        with np.errstate(over="ignore", invalid="ignore"):
            return merge(self._run(work, lambda: Accumulators(sp)))

    def rows_pass(self, row_fn) -> Accumulators:
        """Reductions and cell-level products of one given row (e.g. ``w * y``)."""
        sp = self.spec

        # One row a thread, not the full passes' buffers: this pass may run on
        # more threads than they do.
        def state():
            return Accumulators(sp), np.empty(self._max_cells, sp.dtype)

        def work(state, k, s, e):
            acc, row = state
            csh = (e - s, *sp.shape[1:])
            rows = row[: int(np.prod(csh))].reshape((1, *csh))
            row_fn(rows[0], s, e)
            self.reducer.accumulate(rows, s, e, acc, groups=False, dot_rows=(0,))

        return merge([acc for acc, _ in self._run(work, state, self.response_threads)])

    @property
    def response_threads(self) -> int:
        """Threads of the passes over a given row (the response's, once a fit)."""
        return self.n_threads

    # --------------------------------------------------------- assembly
    @property
    def has_response_score(self) -> bool:
        """Whether :meth:`response_score` is known (no pass left to take for it)."""
        return self._wy_grad is not None

    def response_score(self, visit=None) -> np.ndarray:
        """``X' (w y)``: one pass of the response alone, kept for the engine's life.

        ``visit(y, w, s)``, if given, is called with each chunk of the
        response and weights (first-axis positions from ``s``) while it is at
        hand: other sums over the response alone share the pass.
        """
        if self._wy_grad is None:
            self._wy_grad = self.assembler.row_gradient(self.response_rows(visit), 0)
        return self._wy_grad

    def response_rows(self, visit=None) -> Accumulators:
        """The accumulators of one pass of the row ``w y`` (``visit``: see ``response_score``)."""
        sp = self.spec

        def wy(row, s, e):
            y = _rows(sp.y, s, e)
            np.copyto(row, y)
            if sp.w is not None:
                row *= sp.w[s:e]
            if visit is not None:
                visit(y, None if sp.w is None else sp.w[s:e], s)

        return self.rows_pass(wy)

    def gradient(self, acc: Accumulators) -> np.ndarray:
        """``X' (w g)``: the family's score summed into coefficient space."""
        if not self.spec.mean_trick:
            return self.assembler.row_gradient(acc, 1)
        return self.response_score() - self.assembler.curvature_row(acc)

    def hessian(self, acc: Accumulators) -> np.ndarray:
        """``X' diag(curvature) X`` from a pass's accumulators."""
        return self.assembler.hessian(acc)

    # ------------------------------------------------- the engine's interface
    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``sum w f``, ``X'(w g)`` and ``X' diag(-w h) X`` at ``beta``.

        Gradient and information are NaN where the sum is not finite.
        """
        acc = self.full_pass(beta)
        total = acc.lsum
        if not np.isfinite(total):
            acc.release()
            n = self.spec.design.n_coef
            return total, np.full(n, np.nan), np.full((n, n), np.nan)
        grad, hess = self.gradient(acc), self.hessian(acc)
        acc.release()
        return total, grad, hess

    def information(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(-w h) X`` at ``beta``: one full pass."""
        acc = self.full_pass(beta)
        hess = self.hessian(acc)
        acc.release()
        return hess

    def score_outer(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(u^2) X`` with ``u = w g``: a numpy pass with ``u^2`` for the curvature."""
        acc = self.full_pass(beta, functools.partial(squared_scores, self.spec.family))
        meat = self.hessian(acc)
        acc.release()
        return meat

    def eta_chunks(self, beta: np.ndarray) -> Iterator[tuple[PanelProblem, np.ndarray]]:
        """The sub-problem and float64 linear predictor of each chunk of the first axis."""
        small, cell = self.eta_parts(beta)
        small = [np.asarray(a, dtype=np.float64) for a in small]
        cell = [np.asarray(b, dtype=np.float64) for b in cell]
        for s, e in self.chunks:
            eta = np.empty((e - s, *self.problem.shape[1:]))
            self.fill_eta(eta, s, e, small, cell)
            yield self.problem.rows(s, e), eta

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        """Sum ``fn(sub_problem, eta)`` over the chunks of the first axis."""
        totals = None
        with blas_limit():  # many small BLAS calls: more threads would only spin
            for sub, eta in self.eta_chunks(beta):
                vals = fn(sub, eta)
                if totals is not None:
                    vals = tuple(a + b for a, b in zip(totals, vals, strict=True))
                totals = vals
        return totals

    def release(self) -> None:
        """Nothing is kept from pass to pass but the chunk buffers, which stay."""
