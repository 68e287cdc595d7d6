"""What each slab's Dask task runs: its engine, its passes, and the joins of their results.

The client side is :mod:`panelglm._engine.dask_engine`. A task receives the
:class:`Skeleton` (everything but the cell arrays) and its slab's cells
(:class:`Cells`, read in the task), runs the in-memory engine of the slab
under the whole grid's plan, and returns sums or accumulators; the joins add
those of consecutive slabs (or place them side by side along the first axis).
Everything here is a module-level function or class, so that the workers of a
cluster can receive it.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from .._model.blocks import _slab_of
from .._model.factored import FactoredDesign
from .._model.families import Family
from . import compiled as _compiled
from .assemble import Assembler
from .compiled_engine import CompiledEngine
from .kernels import NumpyEngine, squared_scores
from .pass_spec import PassSpec
from .plan import KernelPlan
from .problem import PanelProblem
from .reductions import Accumulators


def cell_fields(problem: PanelProblem) -> list[str]:
    """The problem's arrays over the grid by name (``y``, ``m``, ``w`` and a subclass's own)."""
    return [f.name for f in dataclasses.fields(problem) if f.name not in ("shape", "offset")]


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Everything a slab's task needs but its cell arrays (the lazy ones are ``None``)."""

    design: FactoredDesign
    problem: PanelProblem
    family: Family
    dtype: np.dtype
    make_engine: Callable[..., Any]  # the in-memory engines' chooser, without a plan
    plan: KernelPlan | None  # the whole grid's: every slab's accumulators in its layout
    holes: tuple[str, ...]  # "y", "m", "w", "offset" or "block<i>", in the tasks' order

    def slab(self, start: int, stop: int, arrays: tuple[np.ndarray, ...]) -> tuple:
        """The slab's design and problem, the holes filled with its cell arrays."""
        given = dict(zip(self.holes, arrays, strict=True))
        sl = slice(start, stop)
        blocks = []
        for i, blk in enumerate(self.design.blocks):
            if f"block{i}" in given:
                # Stored column by column, as the kernels read them.
                columns = np.ascontiguousarray(np.moveaxis(given[f"block{i}"], -1, 0))
                values = np.moveaxis(columns, 0, -1)
                blocks.append(dataclasses.replace(blk, values=values))
            else:
                blocks.append(_slab_of(blk, sl))
        shape = (stop - start, *self.design.shape[1:])
        problem = self.problem
        sub = problem.rows(start, stop)  # the small arrays sliced; the holes filled after
        changes = {f: given[f] for f in cell_fields(problem) if f in given}
        if "offset" in given:
            changes["offset"] = (given["offset"], tuple(range(len(shape))))
        return FactoredDesign(shape, blocks), dataclasses.replace(sub, **changes)

    def assembly_spec(self, start: int | None = None, stop: int | None = None) -> PassSpec:
        """The description of the grid (or of its slabs ``start:stop``), for the assembly alone.

        The cell-level blocks' values are stand-ins that the assembly never
        reads (their products with the curvature come from the slabs' dot
        products), views of one zero in the passes' precision.
        """
        if (start is None) != (stop is None):
            raise ValueError("assembly_spec takes both start and stop, or neither")
        shape = self.design.shape
        if start is not None:
            shape = (stop - start, *shape[1:])
        zero = np.zeros((), self.dtype)

        def block(i: int, b: Any) -> Any:
            if f"block{i}" in self.holes:  # a lazy cell-level block: a stand-in
                return dataclasses.replace(b, values=np.broadcast_to(zero, (*shape, len(b.names))))
            return b if start is None else _slab_of(b, slice(start, stop))

        design = FactoredDesign(shape, [block(i, b) for i, b in enumerate(self.design.blocks)])
        return PassSpec.build(design, self.plan, self.family, None, None, 1.0, None, self.dtype)

    @functools.cached_property
    def assembler(self) -> Assembler:
        """The assembly of the whole grid's passes, made where first used and kept there.

        Its schedules and transposed blocks are worked out once per process.
        """
        return Assembler(self.assembly_spec())

    def __getstate__(self) -> dict:
        # The assembler is made anew where the skeleton arrives: its stand-ins
        # are views that would be sent as full arrays of the grid.
        return {k: v for k, v in self.__dict__.items() if k != "assembler"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class Cells:
    """One slab of a Dask array, read by the task that uses it.

    Handed to a task as a Dask array, the slab would be computed by a task of
    its own, possibly on another worker than the pass's, and sent over: a
    pass would move every cell between processes. Wrapped, it is opaque to
    the scheduler, travels as its (small) graph, and is computed inside the
    pass's task on that task's thread.
    """

    def __init__(self, array: Any) -> None:
        # The slab's graph culled and optimized once, here: a task reads it
        # at every pass.
        blocks = array.to_delayed().ravel()
        self.array = array if len(blocks) > 1 else None
        self.block = blocks[0] if len(blocks) == 1 else None

    def load(self) -> np.ndarray:
        """The slab's values as stored (read now, on the calling thread).

        A slab of one chunk is computed as its block's own task: an array's
        ``compute`` would copy a single chunk before handing it over (a third
        of the time a pass spends reading). The block may then be the
        caller's own memory (an array wrapped by ``dask.array.from_array``),
        so it is handed on read-only.
        """
        if self.block is None:
            return np.asarray(self.array.compute(scheduler="sync"))
        values = np.asarray(self.block.compute(scheduler="sync")).view()
        values.flags.writeable = False
        return values


# Per thread of a worker: the skeleton its slabs last ran under, and the parts
# of the linear predictor that all of that grid's slabs share.
_SHARED = threading.local()


def _shared_parts(skeleton: Skeleton) -> dict:
    """The dense blocks' parts off the first axis, shared by the slabs a thread runs.

    A product x week block's product with its coefficients is the same for
    every slab: computed once a pass per thread instead of once a slab. A
    thread keeps one skeleton's parts at a time, and none after its skeleton
    (the fit) is gone.
    """
    ref = getattr(_SHARED, "skeleton", None)
    if ref is None or ref() is not skeleton:
        if ref is not None:
            _SHARED.parts.clear()  # another fit's: not kept beside this one's
        parts: dict = {}
        weakref.finalize(skeleton, parts.clear)
        _SHARED.skeleton, _SHARED.parts = weakref.ref(skeleton), parts
    return _SHARED.parts


def _float64(values: np.ndarray) -> np.ndarray:
    """Stored values as the numpy passes and the statistics compute with them."""
    return values if values.dtype == np.float64 else values.astype(np.float64)


def _slab_engine(
    skeleton: Skeleton, start: int, stop: int, cells: tuple, stored: bool = False
) -> Any:
    """The in-memory engine of one slab, on one thread, under the whole grid's plan.

    With ``stored``, for passes the compiled sweep runs (the loss, a full
    pass), float32 cells are handed to it as read: it converts each value
    as it reads it, where a float64 copy of the slab would cost a write and
    a read of twice its bytes. Every other pass gets them in float64.
    """
    compiled = skeleton.plan is not None and _compiled.usable_for(
        skeleton.dtype, len(skeleton.design.shape), skeleton.family
    )
    arrays = tuple(c.load() for c in cells)
    if not (stored and compiled):  # numpy computes in float64 (or the fit's float32)
        arrays = tuple(_float64(a) for a in arrays)
    design, problem = skeleton.slab(start, stop, arrays)
    if skeleton.plan is None:
        return skeleton.make_engine(design, skeleton.family, problem, skeleton.dtype, n_threads=1)
    p = problem
    spec = PassSpec.build(
        design, skeleton.plan, skeleton.family, p.y, p.w, p.m, p.offset, skeleton.dtype, stored
    )
    kind = CompiledEngine if compiled else NumpyEngine
    engine = kind(spec, problem, n_threads=1)
    engine.part_cache = _shared_parts(skeleton)
    return engine


def run_slab(
    skeleton: Skeleton, start: int, stop: int, method: str | None, args: tuple, *arrays: Any
) -> Any:
    """One slab's result of ``method`` (``None``: ``args[0](design, problem)``)."""
    if method is None:  # slab_sums: a function of the slab itself
        return args[0](*skeleton.slab(start, stop, tuple(_float64(c.load()) for c in arrays)))
    engine = _slab_engine(skeleton, start, stop, arrays, stored=method == "loss")
    try:
        return getattr(engine, method)(*args)
    finally:
        engine.release()


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


def over_slabs(
    task: Callable,
    join: Callable,
    skeleton: Skeleton,
    bounds: list[tuple[int, int]],
    cells: tuple[tuple[Cells, ...], ...],
    *head: Any,
) -> Any:
    """``task(skeleton, start, stop, *head, *cells)`` of each slab of one Dask task's group.

    The slabs (``bounds``, with their ``cells``) are read one after the
    other; the results are joined as they come, with the tree's own
    ``join`` (which keeps the slabs' order), so at most two are held at a time.
    """
    out = None
    for (lo, hi), own in zip(bounds, cells, strict=True):
        part = task(skeleton, lo, hi, *head, *own)
        out = part if out is None else join(out, part)
    return out


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


def combined(combine: Callable[[list], Any], *parts: Any) -> Any:
    return combine(list(parts))


def add(*parts: Any) -> Any:
    """The sum of partial results: numbers, arrays, or tuples of them."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(add(*column) for column in zip(*parts, strict=True))
    total = first
    for p in parts[1:]:
        total = total + p
    return total
