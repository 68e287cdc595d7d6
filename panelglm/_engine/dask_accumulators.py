"""The full passes' accumulators in Dask tasks: per slab, per run of slabs, contracted, joined.

A Newton step's pass over a slab leaves its accumulators (the small arrays
the in-memory engines assemble into a gradient and a Hessian). A task runs a
run of consecutive slabs (:func:`accumulate_slabs`): their sums over the
other axes add into one buffer, and their arrays over the first axis,
placed side by side, are contracted with the run's part of the design. The
tree's joins add the rest (:func:`join_contracted`), and the task after the
last join assembles it (:func:`assembled`). The client side is
:mod:`panelglm._engine.dask_engine`; the slabs' engines and cells are
:mod:`panelglm._engine.dask_slabs`'.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .assemble import Assembler
from .dask_slabs import Cells, Skeleton, _slab_engine, add
from .kernels import squared_scores
from .reductions import Accumulators


def slab_accumulators(
    skeleton: Skeleton,
    start: int,
    stop: int,
    what: str,
    beta: np.ndarray,
    cells: tuple,
    into: np.ndarray | None = None,
) -> tuple[float, list, np.ndarray | None]:
    """One slab's passes, left as their accumulators.

    ``what`` names the passes, joined by ``+``: ``"full"`` (loss and
    curvature), ``"outer"`` (the squared scores for curvature) or ``"wy"``
    (the row ``w y``); several share one read of the slab's cells. The loss
    is the full pass's. A compiled full pass adds its sums over the other
    axes into ``into`` if given (the slabs' before it): those accumulators
    are then ``None``, already summed. Also returns the buffer that holds
    them, for the next slab (``None`` where the pass was not compiled).
    """
    kinds = what.split("+")
    engine = _slab_engine(skeleton, start, stop, cells, stored=kinds == ["full"])
    compiled = engine.name == "compiled"  # its full pass can add into a given buffer
    lsum, out, summed = 0.0, [], None
    try:
        for kind in kinds:
            if kind == "full":
                acc = engine.full_pass(beta, into=into) if compiled else engine.full_pass(beta)
                lsum = float(acc.lsum)
                if compiled:
                    summed = acc.summed if into is None else into
            elif kind == "outer":
                acc = engine.full_pass(beta, functools.partial(squared_scores, skeleton.family))
            else:
                acc = engine.response_rows()
            # Not given back to the engine's pool: they leave with the task
            # without a copy (the sums over the other axes added into, in
            # place, by the run's later slabs: accumulate_slabs).
            arrays = [*acc.red.values(), *acc.grp, *acc.cell]
            if kind == "full" and into is not None and compiled:
                arrays = [None if np.shares_memory(a, into) else a for a in arrays]
            out += arrays
        return lsum, out, summed
    finally:
        engine.release()


def accumulate_slabs(
    axes: tuple[int | None, ...],
    skeleton: Skeleton,
    bounds: list[tuple[int, int]],
    cells: tuple[tuple[Cells, ...], ...],
    what: str,
    beta: np.ndarray,
) -> tuple[float, list, list]:
    """The accumulators of a Dask task's run of slabs (:func:`slab_accumulators`), contracted.

    A full pass's sums over the other axes (a product x week target's, the
    same size for every slab) are added by each slab's sweep into the first
    slab's buffer: none is zeroed, none added after. The arrays over the
    first axis are placed side by side (:func:`join`, ``axes``), then
    contracted with the run's part of the design (:func:`_contracted`).
    """
    out, into = None, None
    for (lo, hi), own in zip(bounds, cells, strict=True):
        lsum, arrays, summed = slab_accumulators(skeleton, lo, hi, what, beta, own, into)
        if out is None:  # the first slab's buffer, for the whole run (None: each its own)
            out, into = (lsum, arrays), summed
        else:
            out = join(axes, out, (lsum, arrays))
    return _contracted(axes, skeleton, bounds[0][0], bounds[-1][1], what, out)


def _assemble(asm: Assembler, skeleton: Skeleton, what: str, lsum: float, arrays: list) -> list:
    """Per pass of ``what``, its results from ``arrays`` (None where absent: see Assembler).

    ``"full"`` gives the Hessian and the gradient's row (``X' h`` where the
    family's curvature is its mean, else ``X' w g``), or None for a loss
    that is not finite; ``"wy"`` gives ``X' w y``; ``"outer"`` the Hessian of
    the squared scores.
    """
    plan = skeleton.plan
    n_red, n_grp = len(plan.targets), len(plan.groups)
    size = n_red + n_grp + len(plan.full)
    out = []
    for k, kind in enumerate(what.split("+")):
        own = arrays[k * size : (k + 1) * size]
        acc = object.__new__(Accumulators)
        acc.lsum = lsum
        acc.red = dict(zip(plan.targets, own[:n_red], strict=True))
        acc.grp = own[n_red : n_red + n_grp]
        acc.cell = own[n_red + n_grp :]
        if kind == "full" and not np.isfinite(lsum):
            out.append(None)  # the step is refused whatever its sums (DaskEngine._full)
        elif kind == "full":
            mean = skeleton.family.curvature_is_mean
            row = asm.curvature_row(acc) if mean else asm.row_gradient(acc, 1)
            out.append((asm.hessian(acc), row))
        elif kind == "wy":
            out.append(asm.row_gradient(acc, 0))
        else:
            out.append(asm.hessian(acc))
    return out


def _contracted(
    axes: tuple[int | None, ...], skeleton: Skeleton, lo: int, hi: int, what: str, joined: tuple
) -> tuple[float, list, list]:
    """A run's joined accumulators with those over the first axis contracted, here.

    Their part of the results is a sum over the first axis's levels, so each
    task takes its own (with the design of its slabs ``lo:hi``), and what
    the joins move and the last task assembles does not grow with that axis.
    Returns the loss, the other accumulators (None in place of those), and
    the results so far (:func:`_assemble`).
    """
    lsum, arrays = joined
    asm = Assembler(skeleton.assembly_spec(lo, hi))
    first = [a if axis is not None else None for a, axis in zip(arrays, axes, strict=True)]
    rest = [None if axis is not None else a for a, axis in zip(arrays, axes, strict=True)]
    return lsum, rest, _assemble(asm, skeleton, what, lsum, first)


def _added(a: Any, b: Any) -> Any:
    """Two results of :func:`_assemble` added (None, a refused step, stays None)."""
    return None if a is None or b is None else add(a, b)


def join_contracted(*parts: tuple[float, list, list]) -> tuple[float, list, list]:
    """Consecutive runs' contracted accumulators (:func:`_contracted`) as one.

    The accumulators still held are summed as :func:`join` sums them; the
    results so far are added.
    """
    summed = (None,) * len(parts[0][1])  # none is over the first axis any more
    total, arrays = join(summed, *((p[0], p[1]) for p in parts))
    results = list(parts[0][2])
    for p in parts[1:]:
        results = [_added(a, b) for a, b in zip(results, p[2], strict=True)]
    return total, arrays, results


def assembled(skeleton: Skeleton, joined: tuple, what: str) -> tuple[float, list]:
    """The tree's contracted accumulators of the passes ``what``, assembled (:func:`_assemble`).

    Run by the task after the last join, where the accumulators are: only
    the loss and P-sized results go on to the client.
    """
    lsum, arrays, results = joined
    own = _assemble(skeleton.assembler, skeleton, what, lsum, arrays)
    return lsum, [_added(a, b) for a, b in zip(own, results, strict=True)]


def join(axes: tuple[int | None, ...], *parts: tuple[float, list]) -> tuple[float, list]:
    """Consecutive slabs' accumulators as one.

    Arrays over the first axis are placed side by side along it (``axes``:
    where that axis is, per array); the others are summed. A part's array
    may be None: already added into another's (see accumulate_slabs), or
    contracted (see _contracted); None where every part's is.
    """
    total = sum(p[0] for p in parts)
    out = []
    for k, axis in enumerate(axes):
        pieces = [p[1][k] for p in parts if p[1][k] is not None]
        if axis is not None:
            out.append(np.concatenate(pieces, axis=axis))
            continue
        if not pieces:
            out.append(None)
            continue
        # Added into the first part's array: each part is one task's result,
        # read by this join alone (no copy of a large accumulator per join),
        # unless it arrived read-only from another process.
        if not pieces[0].flags.writeable:
            pieces[0] = pieces[0].copy()
        for piece in pieces[1:]:
            pieces[0] += piece
        out.append(pieces[0])
    return total, out
