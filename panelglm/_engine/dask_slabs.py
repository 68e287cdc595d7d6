"""What each slab's Dask task runs: its skeleton, its cells, its engine and its sums.

The client side is :mod:`panelglm._engine.dask_engine`. A task receives the
:class:`Skeleton` (everything but the cell arrays) and its slab's cells
(:class:`Cells`, read in the task), runs the in-memory engine of the slab
under the whole grid's plan, and returns sums, which the joins add; the full
passes' accumulators are :mod:`panelglm._engine.dask_accumulators`'.
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
from .kernels import NumpyEngine
from .pass_spec import PassSpec
from .plan import KernelPlan
from .problem import PanelProblem


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
