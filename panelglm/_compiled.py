"""Descriptions for the compiled sweep: one pass over a chunk instead of two dozen numpy calls.

A chunked pass (:mod:`panelglm._kernels`) needs, per chunk, the linear
predictor, the family's loss and curvature, and the plan's reductions,
contractions and dot products. The optional compiled module
``panelglm._sweep`` does all of it along the lines of the last axis, each
cell read once while it is in cache (see ``_sweep.c``). This module writes
what it is handed: an int64 buffer of counts, addresses and element strides.

What the sweep computes is a list of *ops*: a row ``v = h * factor`` (or the
residual ``g``), formed once per cell and added into every accumulator that
needs it. The accumulators are the same :class:`~panelglm._reductions.Accumulators`
the numpy pass fills, so the assembly of the gradient and the Hessian is
shared. Where a dtype or a pass has no compiled form (float32, the robust
meat's weights), numpy runs the pass with the same results to rounding.

The addresses are only valid while the arrays live where they are: a
:class:`Description` keeps a reference to every array it was given.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from ._buffers import AccumulatorLayout, reused
from ._factored import DenseBlock
from ._threads import run_parts

try:  # built by pip from _sweep.c; numpy serves where it could not be built
    from . import _sweep
except ImportError:  # pragma: no cover - depends on the build
    _sweep = None

if TYPE_CHECKING:
    from ._pass_spec import PassSpec
    from ._reductions import Accumulators

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

    It needs float64, a family with a sweep code and at most ``MAX_DIMS`` dimensions.
    """
    return (
        enabled()
        and kern.dtype == np.float64
        and len(kern.shape) <= MAX_DIMS
        and kern.family.sweep_code is not None
    )


class Description:
    """An int64 buffer of counts, addresses and strides; keeps the arrays it points into alive."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.ndim = len(shape)
        self.words: list[int] = []
        self.addresses: list[int] = []  # positions of the address words
        self._keep: list[np.ndarray] = []
        self.copies: list[np.ndarray] = []  # inputs read from a copy (see operand)

    def operand(self, arr: np.ndarray | None, *, output: bool = False) -> None:
        """Address and element strides of an array broadcastable to the grid (0 where size 1).

        The sweep reads aligned float64 elements at whole-element strides; a
        float64 input that is not (a field of a packed record array) is read
        from a copy, kept in :attr:`copies`. An ``output`` is written in
        place, so it cannot be copied.
        """
        if arr is None:
            self.words += [0] * (1 + self.ndim)
            return
        arr = np.asarray(arr)
        if arr.dtype != np.float64:
            raise ValueError("sweep operands are float64 arrays")
        if not arr.flags.aligned or any(s % 8 for s in arr.strides):
            if output:
                raise ValueError(
                    "sweep outputs are aligned float64 arrays of whole-element strides"
                )
            arr = np.array(arr)
            self.copies.append(arr)
        arr = arr.reshape((1,) * (self.ndim - arr.ndim) + arr.shape)
        if any(n not in (1, g) for n, g in zip(arr.shape, self.shape, strict=True)):
            raise ValueError(f"sweep operand of shape {arr.shape} on a grid of {self.shape}")
        self._keep.append(arr)
        strides = [0 if n == 1 else s // 8 for n, s in zip(arr.shape, arr.strides, strict=True)]
        self.addresses.append(len(self.words))
        self.words += [arr.__array_interface__["data"][0], *strides]

    def array(self) -> np.ndarray:
        """The buffer the sweep reads (written once, on first use)."""
        if getattr(self, "_array", None) is None:
            self._array = np.asarray(self.words, dtype=np.int64)
        return self._array


def grid(arr: np.ndarray, axes: tuple[int, ...], ndim: int) -> np.ndarray:
    """An array over ``axes`` as an ``ndim``-dimensional view (size 1 on the other axes)."""
    shape = [1] * ndim
    for a, n in zip(axes, arr.shape, strict=False):
        shape[a] = n
    return arr.reshape(shape)


# A pass is split into PARTS ranges of the first axis, each with its own
# accumulators, summed in a fixed order: results do not depend on how many
# threads run the parts. The sweep releases the GIL, so on two cores two parts
# take half the time. (Unlike numpy's passes, which gain nothing from a second
# thread, see _threads.MAX_THREADS, the compiled sweep is bound by arithmetic.)
PARTS = 2


def _in_parts(jobs: list) -> list:
    return run_parts(jobs, PARTS)


class CompiledPass:
    """The ops of a kernel's passes, laid out once; descriptions are written per pass."""

    def __init__(self, kern: PassSpec) -> None:
        # No reference to ``kern`` is kept: the kernel holds this object, and a
        # cycle would keep both (and the kernel's buffers) alive until the
        # garbage collector runs.
        self.family = kern.family.sweep_code
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
        # Binomial trials, broadcastable to the grid (None: one per cell, as
        # in every other family, which has none).
        m = kern.m
        one = not isinstance(m, np.ndarray) and float(m) == 1.0
        self.trials = None if one else np.asarray(m, dtype=np.float64)
        # Written on the first full pass: each part's ops, the positions of
        # their addresses into the shared buffer, and that buffer's address.
        self._ops_words: list[np.ndarray] | None = None
        self._private: list[np.ndarray] = []
        self._ops_keep: list[np.ndarray] = []  # copies of inputs the ops read (see operand)
        self._shared_at: list[np.ndarray] = []
        self._shared_base = 0
        self._n_ops = 0
        # The ops and private buffers are reused from pass to pass: one pass
        # at a time (a kernel is not shared between fits, but may be between
        # threads of a caller's own).
        self._lock = threading.Lock()
        self._cuts: tuple | None = None  # (n0, PARTS) and the parts' ranges
        self._fixed: tuple | None = None  # see _fixed_words
        # The buffers of the last pass's accumulators, reused when free (see reused).
        self._shared: np.ndarray | None = None
        self._summed: np.ndarray | None = None

    # -------------------------------------------------------------- passes
    def _parts(self, kern: PassSpec) -> list[tuple[int, int]]:
        n0 = kern.shape[0]
        if self._cuts is None or self._cuts[0] != (n0, PARTS):
            cuts = np.linspace(0, n0, min(PARTS, n0) + 1).astype(int)
            parts = [(int(s), int(e)) for s, e in itertools.pairwise(cuts)] or [(0, 0)]
            self._cuts = ((n0, PARTS), parts)
        return self._cuts[1]

    def loss(self, kern: PassSpec, small, cell) -> float:
        """``sum_c w_c f_c`` of the linear predictor ``small`` + ``cell``."""
        desc = self.describe(kern, small, cell)
        head = desc.array()
        jobs = [lambda s=s, e=e: _sweep.sweep(head, s, e, False) for s, e in self._parts(kern)]
        losses = _in_parts(jobs)
        del desc  # the arrays it points into lived until every part returned
        return float(sum(losses))

    def full(self, kern: PassSpec, small, cell) -> Accumulators:
        """Loss and every accumulator of a pass, as the numpy pass's ``full_pass`` gives them.

        The ops are written once, on the first pass. Each pass then gets a new
        shared buffer (its addresses are patched into the ops) and zeroes the
        parts' private buffers, which it sums into a new array: the
        accumulators it returns are not touched by later passes.
        """
        with self._lock:
            return self._full(kern, small, cell)

    def release(self) -> None:
        """Let go of the buffers kept for the next pass (a solver calls it when done)."""
        with self._lock:
            self._shared = self._summed = None

    def _full(self, kern: PassSpec, small, cell) -> Accumulators:
        parts = self._parts(kern)
        self._shared = shared = reused(self._shared, self.layout.shared, 0.0)
        if self._ops_words is None:
            # Built into locals: a failure leaves the object as it was.
            private = [np.zeros(self.layout.private) for _ in parts]
            ops_words, shared_at, n_ops, keep = [], [], 0, []
            lo = shared.__array_interface__["data"][0]
            hi = lo + shared.nbytes
            for priv in private:
                desc = Description(kern.shape)
                ops = self._ops(kern, self.layout.views(shared, priv))
                self._write_ops(desc, ops)
                keep += desc.copies  # the ops' words point into them
                words = desc.array()
                pos = np.array(desc.addresses, dtype=np.intp)
                ops_words.append(words)
                shared_at.append(pos[(words[pos] >= lo) & (words[pos] < max(hi, lo + 1))])
                n_ops = len(ops)
            self._private, self._shared_at, self._n_ops = private, shared_at, n_ops
            self._ops_keep = keep
            self._shared_base = lo
            self._ops_words = ops_words
        else:
            for priv in self._private:
                priv.fill(0.0)
        base = shared.__array_interface__["data"][0]
        for words, pos in zip(self._ops_words, self._shared_at, strict=True):
            words[pos] += base - self._shared_base
        self._shared_base = base
        desc = self.describe(kern, small, cell, n_ops=self._n_ops)
        head = np.asarray(desc.words, dtype=np.int64)
        descs = [np.concatenate([head, words]) for words in self._ops_words]
        losses = _in_parts(
            [
                lambda d=d, s=s, e=e: _sweep.sweep(d, s, e, True)
                for d, (s, e) in zip(descs, parts, strict=True)
            ]
        )
        del desc  # y, w and the linear predictor's parts lived until every part returned
        self._summed = private = reused(self._summed, self.layout.private, self._private[0])
        for priv in self._private[1:]:
            private += priv
        acc = self.layout.views(shared, private)
        acc.lsum = float(sum(losses))
        return acc

    # --------------------------------------------------------- description
    def describe(self, kern: PassSpec, small, cell, n_ops: int = 0) -> Description:
        """The header and the linear predictor of a sweep, announcing ``n_ops`` ops to follow.

        A loss-only sweep has none; a full pass appends the ops :meth:`full`
        wrote once.
        """
        fixed, offset, cols = self._fixed_words(kern)
        desc = Description(kern.shape)
        n_terms = len(small) + (offset is not None) + len(cols)
        desc.words += [len(kern.shape), *kern.shape, self.family, n_terms, n_ops, *fixed]
        for part in small:
            desc.words.append(_ONE)
            desc.operand(part)
        if offset is not None:
            desc.words += [_ONE, *offset]
        coefs = np.concatenate(cell) if cell else np.empty(0)
        for bits, col in zip(coefs.view(np.int64).tolist(), cols, strict=True):
            desc.words += [bits, *col]
        return desc

    def _fixed_words(self, kern: PassSpec) -> tuple[list[int], list[int] | None, list]:
        """The words of the operands every pass reads: y, w, trials; the offset; the columns.

        Written once: only the small parts of the linear predictor are new
        arrays on each pass. The arrays are kept with their words.
        """
        arrays = (kern.y, kern.w, self.trials, kern.offset_full)
        same = self._fixed is not None and all(
            a is b for a, b in zip(arrays, self._fixed[0], strict=True)
        )
        if not same:
            desc = Description(kern.shape)
            for arr in arrays[:3]:
                desc.operand(arr)
            words, keep = [], desc.copies  # what the words point into but ``arrays``
            for arr in (arrays[3], *self.cell_cols):
                one = Description(kern.shape)
                one.operand(arr)
                words.append(one.words if arr is not None else None)
                keep += one.copies
            self._fixed = (arrays, (desc.words, words[0], words[1:]), keep)
        return self._fixed[1]

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
