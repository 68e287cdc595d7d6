"""The flat buffers of a compiled pass's accumulators: their layout, and the pool they go back to.

A compiled sweep (:mod:`panelglm._engine.compiled`) adds into the arrays it is handed,
so the accumulators of a pass are views into two flat float64 buffers laid out
once per kernel (:class:`AccumulatorLayout`). The kernel owns a
:class:`BufferPool` of such pairs: a pass takes a pair, and whoever consumes
its accumulators (the objective, once it has the gradient and the Hessian)
gives the pair back with :meth:`PooledAccumulators.release`. Only a pair given
back is reused, so accumulators a caller still holds are never overwritten by
another pass unasked (a pass may be asked to add into a buffer of sums it is
given: ``CompiledPass.full``'s ``into``); ownership is stated, not inferred
from reference counts. Reuse matters
because fresh memory from the allocator costs a page fault per page, once per
pass, when the heap has been trimmed since the last one (see
``benchmarks/PERF_NOTES.md``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from .reductions import Accumulators

if TYPE_CHECKING:
    from .pass_spec import PassSpec


class Slot:
    """One pair of buffers for a pass's accumulators, and what passes worked out for it.

    ``shared`` holds the arrays over the first axis, ``summed`` the parts'
    sum of the others (see :class:`AccumulatorLayout`); ``cache`` is the
    pass's to keep what it builds once per pair (the views it writes into).
    """

    __slots__ = ("cache", "shared", "summed")

    def __init__(self, shared: np.ndarray, summed: np.ndarray) -> None:
        self.shared, self.summed = shared, summed
        self.cache: dict = {}


class BufferPool:
    """The buffer pairs of one kernel's passes: taken by a pass, given back by the consumer.

    A pair is reused only once given back (:meth:`give`), so a pass never
    writes into accumulators someone still reads. A pair never given back
    is simply freed with the last reference to it.
    """

    def __init__(self, shared: int, private: int) -> None:
        self.sizes = (shared, private)
        self._free: list[Slot] = []
        self._lock = threading.Lock()  # passes and releases may run on different threads

    def take(self) -> Slot:
        """A free pair if one was given back, else a new one (contents undefined)."""
        with self._lock:
            if self._free:
                return self._free.pop()
        return Slot(np.empty(self.sizes[0]), np.empty(self.sizes[1]))

    def give(self, slot: Slot) -> None:
        """Take ``slot`` back for a later pass; nothing may read its arrays after."""
        with self._lock:
            self._free.append(slot)

    def clear(self) -> None:
        """Let go of the free pairs (a solver calls it when done)."""
        with self._lock:
            self._free.clear()

    @property
    def n_free(self) -> int:
        """Pairs given back and not yet taken again."""
        return len(self._free)


class PooledAccumulators(Accumulators):
    """Accumulators whose arrays are a pool's buffers, lent until :meth:`release`."""

    _pool: BufferPool | None = None
    _slot: Slot | None = None

    @property
    def summed(self) -> np.ndarray | None:
        """The flat buffer of the arrays summed over the first axis (None once released).

        A later pass of one part may add into it (``CompiledPass.full``'s ``into``).
        """
        return None if self._slot is None else self._slot.summed

    def release(self) -> None:
        """Give the buffers back to the kernel's pool, for the next pass to reuse.

        The arrays are dropped from this object, so that reading them after
        fails rather than finds a later pass's sums; views of them that a
        caller took must not be read after either. Releasing twice is harmless.
        """
        pool, slot = self._pool, self._slot
        self._pool = self._slot = None
        if pool is None or slot is None:
            return
        self.red, self.grp, self.cell = None, None, None  # type: ignore[assignment]
        self.first_rows = self.first_sums = self.h_row = None  # first_sums may hold views
        pool.give(slot)


class AccumulatorLayout:
    """The accumulators of a pass as views into two flat float64 buffers.

    Arrays over the first axis go into a *shared* buffer: the parts of a pass
    (ranges of the first axis) write disjoint slices of it. The others (summed
    over the first axis) go into a *private* buffer, one per part, summed
    after the pass (a pass of one part adds straight into the sum). Targets
    and groups that keep the last axis store it innermost, so that a line of
    cells adds into contiguous memory; the views have the shapes the assembly
    reads (:class:`~panelglm._engine.reductions.Accumulators`).
    """

    def __init__(self, kern: PassSpec) -> None:
        shape, last = kern.shape, len(kern.shape) - 1
        self.entries: list[tuple[str, object, tuple[int, ...], bool, bool]] = []
        for m in kern.plan.targets:
            sub = tuple(shape[a] for a in m)
            self.entries.append(("red", m, (len(kern.local_row[m]), *sub), False, 0 in m))
        for g_out, g in zip(kern.group_out, kern.plan.groups, strict=True):
            sub = tuple(shape[a] for a in g_out)
            ncol = kern.design.blocks[g.block].n_cols
            if g_out and g_out[-1] == last:
                shp, moved = (*sub[:-1], ncol, sub[-1]), True
            else:
                shp, moved = (*sub, ncol), False
            self.entries.append(("grp", None, shp, moved, 0 in g_out))
        for i in kern.plan.full:
            shp = (kern.n_rows, kern.design.blocks[i].n_cols)
            self.entries.append(("cell", None, shp, False, False))
        self.shared = sum(int(np.prod(e[2])) for e in self.entries if e[4])
        self.private = sum(int(np.prod(e[2])) for e in self.entries if not e[4])
        # Where each view starts in its buffer: worked out once, since every
        # pass asks for the views over its buffers.
        at, self._slices = {True: 0, False: 0}, []
        for _, _, shp, _, is_shared in self.entries:
            n = int(np.prod(shp))
            self._slices.append(slice(at[is_shared], at[is_shared] + n))
            at[is_shared] += n

    def views(
        self, shared: np.ndarray, private: np.ndarray, pool: BufferPool | None = None, slot=None
    ) -> Accumulators:
        """The accumulators over the two buffers (lent from ``pool`` if given)."""
        acc = Accumulators.__new__(Accumulators if pool is None else PooledAccumulators)
        if pool is not None:
            acc._pool, acc._slot = pool, slot
        acc.lsum, acc.red, acc.grp, acc.cell = 0.0, {}, [], []
        for (kind, key, shp, moved, is_shared), at in zip(self.entries, self._slices, strict=True):
            view = (shared if is_shared else private)[at].reshape(shp)
            if kind == "red":
                acc.red[key] = view
            elif kind == "grp":
                acc.grp.append(view.swapaxes(-1, -2) if moved else view)
            else:
                acc.cell.append(view)
        return acc
