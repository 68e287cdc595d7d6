"""Descriptions for the compiled sweep: one pass over a chunk instead of two dozen numpy calls.

A chunked pass (:mod:`panelglm._engine.kernels`) needs, per chunk, the linear
predictor, the family's loss and curvature, and the plan's reductions,
contractions and dot products. The optional compiled module
``panelglm._engine._sweep`` does all of it along the lines of the last axis, each
cell read once while it is in cache (see ``_sweep.c``). This module writes
what it is handed: an int64 buffer of counts, kinds and coefficient bits that
names its arrays by their index in a list of operands (a
:class:`~panelglm._engine.description.Description`).

What the sweep computes is a list of *ops*: a row ``v = h * factor`` (or the
residual ``g``), formed once per cell and added into every accumulator that
needs it. The accumulators are the same :class:`~panelglm._engine.reductions.Accumulators`
the numpy pass fills, so the assembly of the gradient and the Hessian is
shared. Where a pass has no compiled form (a float32 working precision, the
robust meat's weights), numpy runs it with the same results to rounding; the
sweep's inputs may be float32 (stored cells), its arithmetic is float64.

The sweep is handed the arrays themselves, not their addresses: it acquires
their buffers (the buffer protocol) and checks dtype, shape, strides,
alignment and writability on its side, so a mistake here raises a Python
exception instead of touching memory it should not. (Plain C rather than
Cython: the loops are C either way; see ``benchmarks/PERF_NOTES.md``.)
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from .._model.blocks import DenseBlock
from .._util.threads import resolve_threads, run_parts, threads_asked
from .buffers import AccumulatorLayout, BufferPool, Slot
from .description import Description

try:  # built by pip from _sweep.c; numpy serves where it could not be built
    from . import _sweep
except ImportError:  # pragma: no cover - depends on the build
    _sweep = None

if TYPE_CHECKING:
    from .pass_spec import PassSpec
    from .reductions import Accumulators

# Destination kinds of _sweep.c, and how many of each one op takes.
SUM, ROW, DOT = 0, 1, 2
# The bits of 1.0, the coefficient of the linear predictor's small parts.
_ONE = int(np.float64(1.0).view(np.int64))
_LIMITS = {SUM: 8, ROW: 3, DOT: 4}
# The most panel dimensions a description may have (MAXD of _sweep_simd.h);
# a panel with more runs its passes with numpy.
MAX_DIMS = 32


def enabled() -> bool:
    """Whether the compiled sweep is built and not switched off.

    Setting the environment variable ``PANELGLM_NUMPY_PASS=1`` runs every pass
    with numpy, e.g. to compare the two.

    Returns
    -------
    bool
    """
    return _sweep is not None and os.environ.get("PANELGLM_NUMPY_PASS", "") in ("", "0")


def usable(kern: PassSpec) -> bool:
    """Whether the compiled sweep can run this kernel's passes.

    It needs float64 working precision (its inputs may be float32), a family
    with a sweep code and at most ``MAX_DIMS`` dimensions.
    """
    return usable_for(kern.dtype, len(kern.shape), kern.family)


def usable_for(dtype: np.dtype, ndim: int, family) -> bool:
    """:func:`usable` for passes of this working precision, dimensions and family."""
    return enabled() and dtype == np.float64 and ndim <= MAX_DIMS and family.sweep_code is not None


def grid(arr: np.ndarray, axes: tuple[int, ...], ndim: int) -> np.ndarray:
    """An array over ``axes`` as an ``ndim``-dimensional view (size 1 on the other axes)."""
    shape = [1] * ndim
    for a, n in zip(axes, arr.shape, strict=False):
        shape[a] = n
    return arr.reshape(shape)


# With the default threads, the parts of a pass over fewer cells run one after
# the other on the calling thread (the same parts, the same results): handing a
# part to a thread costs more than the sweep of a small grid, far more on busy cores.
MIN_PART_CELLS = 1 << 15


class CompiledPass:
    """The ops of a kernel's passes, laid out once; descriptions are written per pass.

    A pass is split into ``n_threads`` ranges of the first axis (None: as
    many as the process has cores, run on one thread below
    :data:`MIN_PART_CELLS` cells), each with its own accumulators, summed
    in a fixed order: for a given number of threads, results do not depend
    on how the threads are scheduled. The sweep releases the GIL and, unlike
    numpy's passes (see ``_util.threads.MAX_THREADS``), is bound by arithmetic,
    so the parts run in parallel.
    """

    def __init__(self, kern: PassSpec, n_threads: int | None = None) -> None:
        # No reference to the spec is kept: the engine holds both it and this
        # object, and this one needs only what it copies out of it here.
        self.family = kern.family.sweep_code
        self.n_parts = resolve_threads(n_threads)
        small = not threads_asked(n_threads) and int(np.prod(kern.shape)) < MIN_PART_CELLS
        self.n_workers = 1 if small else self.n_parts  # threads asked for are all used
        nd, plan, design = len(kern.shape), kern.plan, kern.design
        # Small blocks' columns, each contiguous (the sweep gathers strided ones).
        self.columns = {
            i: [
                grid(np.ascontiguousarray(kern.values[i][..., c]), blk.axes, nd)
                for c in range(blk.n_cols)
            ]
            for i, blk in enumerate(design.blocks)
            if isinstance(blk, DenseBlock) and i in (*plan.spread, *(g.block for g in plan.groups))
        }
        self.cell_cols = [
            kern.values[i][..., q] for i in plan.full for q in range(kern.values[i].shape[-1])
        ]
        self.layout = AccumulatorLayout(kern)
        # The accumulators' buffers: a pass takes a pair, the consumer of its
        # accumulators gives it back (see _buffers).
        self.pool = BufferPool(self.layout.shared, self.layout.private)
        # Binomial trials, broadcastable to the grid (None: one per cell, as
        # in every other family, which has none).
        m = kern.m
        one = not isinstance(m, np.ndarray) and float(m) == 1.0
        stored = isinstance(m, np.ndarray) and m.dtype == np.float32  # read as it is
        self.trials = None if one else m if stored else np.asarray(m, dtype=np.float64)
        # The parts' private buffers, zeroed and summed by every full pass of
        # two or more parts (one part adds into the slot's sum): one pass at a
        # time (a caller's threads may share a kernel).
        self._private: list[np.ndarray] = []
        self._n_ops = 0
        self._lock = threading.Lock()
        self._cuts: tuple | None = None  # (n0, parts) and the parts' ranges
        self._fixed: tuple | None = None  # see _fixed_operands

    # -------------------------------------------------------------- passes
    def _parts(self, kern: PassSpec) -> list[tuple[int, int]]:
        n0 = kern.shape[0]
        if self._cuts is None or self._cuts[0] != (n0, self.n_parts):
            cuts = np.linspace(0, n0, min(self.n_parts, n0) + 1).astype(int)
            parts = [(int(s), int(e)) for s, e in itertools.pairwise(cuts)] or [(0, 0)]
            self._cuts = ((n0, self.n_parts), parts)
        return self._cuts[1]

    def loss(self, kern: PassSpec, small, cell) -> float:
        """``sum_c w_c f_c`` of the linear predictor ``small`` + ``cell``."""
        fixed, idx = self._fixed_operands(kern)
        small = self._small(kern, small)
        operands = [*fixed.operands, *small]
        head = self._head(kern, idx, len(fixed.operands), len(small), cell, 0)
        jobs = [
            lambda s=s, e=e: _sweep.sweep(head, operands, s, e, False)
            for s, e in self._parts(kern)
        ]
        return float(sum(run_parts(jobs, self.n_workers)))

    def full(self, kern: PassSpec, small, cell, into: np.ndarray | None = None) -> Accumulators:
        """Loss and every accumulator of a pass, as the numpy pass's ``full_pass`` gives them.

        The accumulators live in a pair of buffers taken from :attr:`pool`:
        later passes do not touch them until they are released
        (:meth:`~panelglm._engine.buffers.PooledAccumulators.release`).
        ``into``, for a pass of one part, is a buffer of the arrays summed over
        the first axis (a slot's ``summed``) that already holds sums, those of
        a Dask task's slabs before this one: the pass adds into it, and its
        accumulators over the other axes are views of it.
        """
        with self._lock:
            return self._full(kern, small, cell, into)

    def release(self) -> None:
        """Let go of the buffers kept for the next pass (a solver calls it when done)."""
        self.pool.clear()

    def _full(self, kern: PassSpec, small, cell, into: np.ndarray | None = None) -> Accumulators:
        parts = self._parts(kern)
        fixed, idx = self._fixed_operands(kern)
        small = self._small(kern, small)
        if into is not None:
            if len(parts) != 1 or into.shape != (self.layout.private,):
                raise ValueError("a pass adds into a buffer of its sums only as one part")
            slot = Slot(np.empty(self.layout.shared), into)
        else:
            slot = self.pool.take()
        if len(parts) == 1:
            # One part adds straight into the slot's sum: no buffer of its own
            # to zero and copy (a slab's pass in a Dask task, a small grid).
            privs = [slot.summed]
        else:
            if len(self._private) != len(parts):
                self._private = [np.zeros(self.layout.private) for _ in parts]
            privs = self._private
        try:
            built = self._slot_ops(kern, slot, fixed, privs)
            slot.shared.fill(0.0)
            if into is None:
                for priv in privs:
                    priv.fill(0.0)
            calls = []
            for desc, ops_words in built:
                n = len(desc.operands)
                head = self._head(kern, idx, n, len(small), cell, self._n_ops)
                calls.append((np.concatenate([head, ops_words]), [*desc.operands, *small]))
            losses = run_parts(
                [
                    lambda c=c, s=s, e=e: _sweep.sweep(c[0], c[1], s, e, True)
                    for c, (s, e) in zip(calls, parts, strict=True)
                ],
                self.n_workers,
            )
            summed = slot.summed
            if privs[0] is not summed:
                np.copyto(summed, privs[0])
                for priv in privs[1:]:
                    summed += priv
        except BaseException:
            if into is None:
                self.pool.give(slot)  # not lent to anyone
            raise
        # A pass into a caller's buffer lends nothing of the pool's.
        pool = self.pool if into is None else None
        acc = self.layout.views(slot.shared, summed, pool, slot if pool else None)
        acc.lsum = float(sum(losses))
        return acc

    # --------------------------------------------------------- description
    @staticmethod
    def _small(kern: PassSpec, small: list) -> list[np.ndarray]:
        """The small parts of the linear predictor as operands (new arrays on each pass)."""
        desc = Description(kern.shape)
        return [desc.operands[desc.index(part)] for part in small]

    def _head(self, kern, idx: dict, first: int, n_small: int, cell, n_ops: int) -> np.ndarray:
        """The header and the linear predictor of a sweep, announcing ``n_ops`` ops to follow.

        The small parts of the linear predictor are operands ``first`` on;
        the other terms are the fixed operands (``idx``).
        """
        offset, cols = idx["offset"], idx["cols"]
        n_terms = n_small + (offset >= 0) + len(cols)
        words = [len(kern.shape), *kern.shape, self.family, n_terms, n_ops]
        words += [idx["y"], idx["w"], idx["m"]]
        for i in range(first, first + n_small):
            words += [_ONE, i]
        if offset >= 0:
            words += [_ONE, offset]
        coefs = np.concatenate(cell) if cell else np.empty(0)
        for bits, i in zip(coefs.view(np.int64).tolist(), cols, strict=True):
            words += [bits, i]
        return np.asarray(words, dtype=np.int64)

    def _fixed_operands(self, kern: PassSpec) -> tuple[Description, dict]:
        """The operands every pass reads: y, w, trials; the offset; the columns.

        Laid out once, with their indices: only the small parts of the linear
        predictor are new arrays on each pass.
        """
        arrays = (kern.y, kern.w, self.trials, kern.offset_full)
        same = self._fixed is not None and all(
            a is b for a, b in zip(arrays, self._fixed[0], strict=True)
        )
        if not same:
            desc = Description(kern.shape)
            idx = {
                "y": desc.index(kern.y),
                "w": desc.index(kern.w),
                "m": desc.index(self.trials),
                "offset": desc.index(kern.offset_full),
                "cols": [desc.index(col) for col in self.cell_cols],
            }
            self._fixed = (arrays, desc, idx)
        return self._fixed[1], self._fixed[2]

    def _slot_ops(self, kern: PassSpec, slot, fixed: Description, privs: list) -> list:
        """Each part's operands and ops words for the buffers of ``slot``, built once per pair.

        The ops add into views of the pair's shared buffer and of the part's
        private one (``privs``); the words name them by index after the fixed
        operands.
        """
        key = (fixed, *privs)
        cached = slot.cache.get("ops")
        if (
            cached is not None
            and len(cached[0]) == len(key)
            and all(a is b for a, b in zip(cached[0], key, strict=True))
        ):
            return cached[1]
        built = []
        for priv in privs:
            desc = Description(kern.shape, base=fixed)
            ops = self._ops(kern, self.layout.views(slot.shared, priv))
            self._write_ops(desc, ops)
            built.append((desc, desc.array()))
            self._n_ops = len(ops)
        slot.cache["ops"] = (key, built)
        return built

    @staticmethod
    def _write_ops(desc: Description, ops: list) -> None:
        for base, factor, dests in ops:
            desc.words.append(base)
            desc.operand(factor)
            desc.words.append(len(dests))
            for kind, out, col in dests:
                desc.words.append(kind)
                desc.operand(out, output=True)
                if kind == DOT:
                    desc.operand(col)

    @staticmethod
    def _target(nd: int, acc: Accumulators, m: tuple[int, ...], local: int):
        """Destination of a row in target ``m``: a running sum, or a row along the last axis."""
        out = grid(acc.red[m][local, ...], m, nd)
        return (ROW if m and m[-1] == nd - 1 else SUM), out, None

    def _ops(self, kern: PassSpec, acc: Accumulators) -> list:
        plan = kern.plan
        nd, last = len(kern.shape), len(kern.shape) - 1
        ops = []

        def add(base, factor, dests):
            # One op takes at most _LIMITS[kind] destinations of each kind.
            while dests:
                taken, rest, used = [], [], dict.fromkeys(_LIMITS, 0)
                for d in dests:
                    if used[d[0]] < _LIMITS[d[0]]:
                        used[d[0]] += 1
                        taken.append(d)
                    else:
                        rest.append(d)
                ops.append((base, factor, taken))
                dests = rest

        for r in range(kern.n_all_rows):
            if kern.mean_trick:
                base, factor = 0, None if r == 0 else self.cell_cols[r - 1]
            else:
                base = 1 if r == 1 else 0
                factor = None if r < 2 else self.cell_cols[r - 2]
            dests = [self._target(nd, acc, m, kern.local_row[m][r]) for m in plan.targets]
            if r in kern.dot_rows:
                q_all = 0
                for j, i in enumerate(plan.full):
                    for q in range(kern.values[i].shape[-1]):
                        out = acc.cell[j][r, q : q + 1].reshape((1,) * nd)
                        dests.append((DOT, out, self.cell_cols[q_all]))
                        q_all += 1
            add(base, factor, dests)
        for x, (r0, r1, needed) in kern.spread_rows.items():
            for c, r in enumerate(range(r0, r1)):
                dests = [self._target(nd, acc, m, kern.local_row[m][r]) for m in needed]
                add(0, self.columns[x][c], dests)
        for g, g_out, out in zip(plan.groups, kern.group_out, acc.grp, strict=True):
            for c, col in enumerate(self.columns[g.block]):
                kind = ROW if g_out and g_out[-1] == last else SUM
                add(0, col, [(kind, grid(out[..., c], g_out, nd), None)])
        return ops
