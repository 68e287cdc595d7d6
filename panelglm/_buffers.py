"""The flat buffers a compiled pass's accumulators live in: their layout and their reuse.

A compiled sweep (:mod:`panelglm._compiled`) adds into raw addresses, so the
accumulators of a pass are views into two flat float64 buffers laid out once
per kernel (:class:`AccumulatorLayout`). A buffer no one holds any more is
handed to the next pass (:func:`reused`) rather than fresh memory.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

from ._reductions import Accumulators

if TYPE_CHECKING:
    from ._pass_spec import PassSpec


def reused(last: np.ndarray | None, size: int, fill: float | np.ndarray) -> np.ndarray:
    """``size`` values ``fill`` (a number, or an array copied in), in ``last`` if nobody holds it.

    Accumulators a pass returned are views of its buffers, and keep them
    referenced while anyone holds one: such a buffer is never reused. A free
    one is, because fresh memory from the allocator costs a page fault per
    page: at 1e6 cells, one pass in four of a fit took 1.5-2 ms longer (360
    faults) when the heap had been trimmed since the last pass.
    """
    # References to ``last``: the caller's attribute, this argument, getrefcount's.
    if last is None or last.size != size or sys.getrefcount(last) > 3:
        last = np.empty(size)
    np.copyto(last, fill)
    return last


class AccumulatorLayout:
    """The accumulators of a pass as views into two flat float64 buffers.

    Arrays over the first axis go into a *shared* buffer: the parts of a pass
    (ranges of the first axis) write disjoint slices of it. The others (summed
    over the first axis) go into a *private* buffer, one per part, summed
    after the pass. Targets and groups that keep the last axis store it
    innermost, so that a line of cells adds into contiguous memory; the views
    have the shapes the assembly reads (:class:`~panelglm._reductions.Accumulators`).
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

    def views(self, shared: np.ndarray, private: np.ndarray) -> Accumulators:
        """The accumulators over the two buffers."""
        acc = Accumulators.__new__(Accumulators)
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
