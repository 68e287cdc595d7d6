"""The pass engine of a panel held as Dask arrays: each slab's sums as a task, joined in a tree.

A Dataset whose cell-level variables are Dask arrays gives a problem and a
design whose cell-level arrays are lazy (:mod:`panelglm._util.lazy`);
everything else (dimension-level blocks, the offset over fewer axes, the
family) is small. :class:`DaskEngine` cuts the grid along its first axis at
the Dask chunks, and every pass becomes one task per slab: the task receives
the slab's cell arrays and runs the in-memory engine of the slab (the
compiled sweep where it is built, else numpy) under the whole grid's plan.

A full pass's slab leaves its *accumulators*, the small arrays the in-memory
engines assemble into a gradient and a Hessian. A task places those over the
first axis of its slabs side by side and contracts them with its slabs' part
of the design (their part of the results is a sum over the first axis's
levels: what it hands on does not grow with that axis); tasks of fan-in
``FAN_IN`` add up the rest, and the task after the last join assembles that
once, where it is. Assembling it per slab would repeat, for every slab, the
work on the levels of the other dimensions (a product x week block's), which
does not shrink with the slab. Other passes (the loss, the statistics' sums)
return their sums. Only those results -- the loss, P-sized arrays, per-cluster
sums -- reach the client, where the Newton loop, the P x P solve and the line
search stay.
The tasks run on whatever scheduler is active: the threaded default, or a
``dask.distributed.Client``.

The slabs' sums equal the whole grid's up to the order of the additions, so
a fit equals the in-memory one to rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from .._model.blocks import DenseBlock
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._util.lazy import is_lazy, stored
from .._util.threads import available_cores
from . import dask_accumulators as accumulators
from . import dask_slabs as slabs
from .plan import make_plan
from .problem import PanelProblem

# Partial sums added per task of the reduction: a tree of depth log_8(tasks).
FAN_IN = 8
# Cells a pass's task reads, slab after slab, before it hands its sums on:
# what a task costs beyond its cells (its accumulators made, sent and joined)
# is then a small part of its time. Each worker still gets several tasks.
TASK_CELLS = 1 << 25
TASKS_PER_WORKER = 4


def is_lazy_fit(design: FactoredDesign, problem: PanelProblem) -> bool:
    """Whether any cell array of the fit is a Dask array."""
    arrays = [getattr(problem, f) for f in slabs.cell_fields(problem)]
    arrays.append(None if problem.offset is None else problem.offset[0])
    arrays += [b.values for b in design.blocks if isinstance(b, DenseBlock)]
    return any(is_lazy(a) for a in arrays)


class DaskEngine:
    """Every pass as one Dask task per slab of the first axis, summed in a tree.

    Parameters
    ----------
    design : FactoredDesign
        Its cell-level blocks may be Dask arrays.
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset; any may be a Dask array.
    make_engine : callable
        Makes each slab's in-memory engine
        (:func:`~panelglm._engine.engines.make_engine`).
    dtype : dtype, default=float64
        The precision of the slabs' passes.
    """

    name = "dask"

    def __init__(
        self,
        design: FactoredDesign,
        family: Family,
        problem: PanelProblem,
        make_engine: Callable[..., Any],
        dtype: type | np.dtype = np.float64,
        **options: Any,
    ) -> None:
        import dask
        import dask.array as da

        # The tasks read the cells as stored (float32 ones too): the passes the
        # compiled sweep runs take them so, the others convert them (see
        # dask_slabs._slab_engine).
        lazy: dict[str, Any] = {}
        for f in slabs.cell_fields(problem):
            if is_lazy(getattr(problem, f)):
                lazy[f] = da.broadcast_to(stored(getattr(problem, f)), problem.shape)
        if problem.offset is not None and is_lazy(problem.offset[0]):
            lazy["offset"] = da.broadcast_to(problem.offset_grid(), problem.shape)
        for i, blk in enumerate(design.blocks):
            if isinstance(blk, DenseBlock) and is_lazy(blk.values):
                if blk.axes != tuple(range(len(problem.shape))):
                    raise ValueError("A Dask-backed block must vary along every panel dimension.")
                lazy[f"block{i}"] = stored(blk.values)
        first = next(iter(lazy.values()))
        bounds = tuple(itertools.accumulate(first.chunks[0], initial=0))
        self.slabs = list(itertools.pairwise(bounds))
        aligned = [
            arr.rechunk({0: first.chunks[0], **{d: -1 for d in range(1, arr.ndim)}})
            for arr in lazy.values()
        ]
        # Each slab's task reads its own cells (see Cells), so no chunk is
        # read by one worker and sent to another.
        cells = [tuple(slabs.Cells(arr[lo:hi]) for arr in aligned) for lo, hi in self.slabs]
        workers = _n_workers()
        sizes = [hi - lo for lo, hi in self.slabs]
        per = _slabs_per_task(sizes, int(np.prod(problem.shape[1:])), workers)
        self._groups = _task_groups(len(sizes), per, workers)
        # Each group's cells are sent once, to one worker, not with every pass's graph.
        self._group_cells = _shipped(
            [tuple(cells[i] for i in group) for group in self._groups], "panelglm-cells", False
        )
        holes = tuple(lazy)
        if "offset" in lazy:
            problem = dataclasses.replace(problem, offset=None)
        problem = dataclasses.replace(
            problem, **{f: None for f in slabs.cell_fields(problem) if f in lazy}
        )
        # The other dense blocks in the passes' precision once, here: every
        # slab's task would otherwise convert them again (a product x week
        # block of float32 variables: millions of values a task).
        work = np.dtype(dtype)
        design = FactoredDesign(
            design.shape,
            [
                dataclasses.replace(b, values=None)
                if f"block{i}" in lazy
                else dataclasses.replace(b, values=np.asarray(b.values, dtype=work))
                if isinstance(b, DenseBlock)
                else b
                for i, b in enumerate(design.blocks)
            ],
        )
        plan = make_plan(design) if problem.y is not None or "y" in lazy else None
        skeleton = slabs.Skeleton(design, problem, family, work, make_engine, plan, holes)
        (self._skeleton,) = _shipped([skeleton], "panelglm-skeleton", True)
        self._dask = dask
        # The whole grid's description, for the accumulators' layout (the
        # assembly runs in the tasks: dask_accumulators).
        self._spec = skeleton.assembly_spec() if plan is not None else None
        self._wy_grad: np.ndarray | None = None

    def _sum(
        self, method: str | None, *args: Any, combine: Callable[[list], Any] | None = None
    ) -> Any:
        """The slabs' results of ``method`` added (or ``combine``d, in the slabs' order)."""
        add = slabs.add if combine is None else functools.partial(slabs.combined, combine)
        group = functools.partial(slabs.over_slabs, slabs.run_slab, add)
        return self._tree(group, add, method, args)

    def _tree(
        self, group: Callable, join: Callable, *head: Any, finish: Callable | None = None
    ) -> Any:
        """``group(skeleton, bounds, cells, *head)`` of each task's run of slabs, joined in a tree.

        One Dask task runs a run of consecutive slabs (``group``:
        :func:`~dask_slabs.over_slabs` or :func:`~dask_accumulators.accumulate_slabs`);
        the joins take ``FAN_IN`` consecutive results at a time, in the slabs'
        order; ``finish(skeleton, joined)``, if given, runs where the last join
        did. Only its result (or the last join's) is computed onto the client.
        """
        delayed = self._dask.delayed
        run, join_task = delayed(group), delayed(join)
        parts = [
            run(self._skeleton, [self.slabs[i] for i in slabs_], cells, *head)
            for slabs_, cells in zip(self._groups, self._group_cells, strict=True)
        ]
        while len(parts) > 1:
            parts = [join_task(*parts[k : k + FAN_IN]) for k in range(0, len(parts), FAN_IN)]
        last = parts[0] if finish is None else delayed(finish)(self._skeleton, parts[0])
        return self._dask.compute(last)[0]

    def _assembled(self, what: str, beta: np.ndarray | None) -> tuple[float, list]:
        """The loss and, per pass of ``what``, its results (``dask_accumulators.assembled``)."""
        spec = self._spec
        layout = (
            [1 if 0 in m else None for m in spec.plan.targets]
            + [0 if 0 in g else None for g in spec.group_out]
            + [None] * len(spec.plan.full)
        )
        axes = tuple(layout * len(what.split("+")))
        group = functools.partial(accumulators.accumulate_slabs, axes)
        finish = functools.partial(accumulators.assembled, what=what)
        return self._tree(group, accumulators.join_contracted, what, beta, finish=finish)

    def _full(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """A full pass's loss, Hessian and gradient; the first also gives ``X'(w y)``."""
        if self._spec.mean_trick and self._wy_grad is None:
            lsum, (full, self._wy_grad) = self._assembled("full+wy", beta)
        else:
            lsum, (full,) = self._assembled("full", beta)
        if full is None:  # a loss that is not finite: nothing assembled
            n = self._spec.design.n_coef
            return lsum, np.full(n, np.nan), np.full((n, n), np.nan)
        hessian, row = full
        gradient = self._wy_grad - row if self._spec.mean_trick else row
        return lsum, gradient, hessian

    def loss(self, beta: np.ndarray) -> float:
        """``sum_c w_c f_c`` over every slab."""
        return float(self._sum("loss", beta))

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, score and information: the slabs' accumulators joined, assembled in the tree."""
        if self._spec is None:
            total, score, info = self._sum("loss_grad_hess", beta)
            return float(total), score, info
        return self._full(beta)

    def information(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(-w h) X``: the slabs' accumulators joined and assembled in the tree."""
        if self._spec is None:
            return self._sum("information", beta)
        return self._full(beta)[2]

    def score_outer(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(u^2) X``: the slabs' accumulators joined and assembled in the tree."""
        if self._spec is None:
            return self._sum("score_outer", beta)
        return self._assembled("outer", beta)[1][0]

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        """``fn(sub_problem, eta)`` summed over the slabs (and each slab's chunks)."""
        return self._sum("chunk_sums", beta, fn)

    def slab_sums(
        self,
        fn: Callable[[FactoredDesign, PanelProblem], Any],
        combine: Callable[[list], Any] | None = None,
    ) -> Any:
        """``fn(design, problem)`` of every slab, summed (numbers, arrays or tuples).

        ``fn`` runs in the tasks: a module-level function or a partial of one,
        so that a cluster's workers can receive it. ``combine(parts)``, if
        given, joins results in the slabs' order instead of adding them.
        """
        return self._sum(None, fn, combine=combine)

    def release(self) -> None:
        """Nothing is kept on the client between passes."""


def _slabs_per_task(sizes: list[int], row_cells: int, workers: int) -> int:
    """How many consecutive slabs (of ``sizes`` rows of ``row_cells`` cells) one task runs.

    Up to :data:`TASK_CELLS` cells a task, while each of the active
    scheduler's ``workers`` (threads) still gets :data:`TASKS_PER_WORKER`
    tasks. Decided once per engine, with the workers connected then (an
    adaptive cluster that grows later gets fewer, larger tasks); the order of
    the slabs' additions, and so a fit's last bits, follow it.
    """
    by_size = TASK_CELLS // max(1, max(sizes) * row_cells)
    by_workers = len(sizes) // (TASKS_PER_WORKER * workers)
    return max(1, min(by_size, by_workers))


def _task_groups(n: int, per: int, workers: int) -> list[range]:
    """The tasks' runs of consecutive slabs: ``per`` each, the last ``per x workers`` one each.

    A pass ends when its last task does: single slabs at the end leave the
    workers idle for at most a slab's time while the last ones finish, not a
    run's. (Only where there are runs enough for every worker before them.)
    """
    tail = per * workers if per > 1 and n > 2 * per * workers else 0
    head = n - tail
    return [range(k, min(k + per, head)) for k in range(0, head, per)] + [
        range(k, k + 1) for k in range(head, n)
    ]


def _n_workers() -> int:
    """Threads of the active scheduler: a cluster's, else this machine's cores."""
    client = _active_client()
    if client is None:
        return available_cores()
    return max(1, sum(client.nthreads().values()))


def _active_client() -> Any:
    """The ``dask.distributed`` client the fit runs on, or None (a local scheduler)."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _shipped(objects: list, name: str, broadcast: bool) -> list:
    """``objects`` as the tasks receive them: each sent once to a cluster's workers.

    On a ``dask.distributed`` client they are scattered once (futures), not
    serialized into every pass's graph: to every worker if ``broadcast``
    (what every task reads), else each to one (a group's cells, which may
    hold data: a Dask array wrapping an in-memory one). On the local
    schedulers the tasks share the objects themselves.
    """
    client = _active_client()
    if client is None:
        import dask

        # One key for each object itself: neither hashed nor traversed at each pass.
        token = uuid.uuid4().hex
        return [
            dask.delayed(obj, name=f"{name}-{token}-{k}", traverse=False)
            for k, obj in enumerate(objects)
        ]
    return client.scatter(objects, broadcast=broadcast, hash=False)
