"""Contraction plans: what each pass over the N cells must produce, chosen once per fit.

The gradient and Hessian of a factored design need, from the cell-level arrays
(``h``, ``g``), only a few things of size ``N``:

* **reductions** of every cell-level "row" (``h``, ``g``, and ``h`` times each
  cell-level column) to the few maximal axis sets the blocks live on; every
  smaller reduction is then computed from these small arrays;
* **contractions** of ``h`` with a block, for the block pairs whose axes
  together cover every axis (``ij`` with ``ik``): no reduction of ``h`` serves
  them, so ``h`` is summed against one block's columns over the axes the other
  block lacks (a *group*), and one group serves every partner it can;
* **spread blocks**: a block whose pairs no cheap contraction serves is
  multiplied into ``h`` column by column (``h * X_b``, broadcast over the axes
  it lacks) and handled like a cell-level column: its rows of the Hessian are
  the reductions of those products;
* **cell-level products** ``sum_c row_c X_c`` with the columns that vary along
  every axis (dot products per chunk).

:func:`make_plan` chooses these once, so no iteration searches for a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .._model.blocks import Axes, DenseBlock
from .._model.factored import FactoredDesign

# Costs in passes over one chunk of h (measured on this kind of machine: a
# batched BLAS product reads h once, at the cost of about one multiply; a
# spread column costs a broadcast multiply plus one reduction per target).
GROUP_COST = 1.0
GROUP_COL_COST = 0.1
SPREAD_COL_COST = 1.5
SPREAD_TARGET_COST = 0.5


@dataclass(frozen=True)
class Group:
    """``sum over C of h * X_b``: block ``block`` contracted with ``h`` over ``contract``.

    The result lives on the axes not in ``contract``; it serves every partner
    block whose axes miss ``contract``.
    """

    block: int
    contract: Axes
    partners: tuple[int, ...]


@dataclass(frozen=True)
class KernelPlan:
    """What one pass over the cells computes.

    Attributes
    ----------
    full : tuple of int
        Dense blocks that vary along every axis (cell-level columns).
    spread : tuple of int
        Dense blocks handled like cell-level columns (their products with
        ``h`` are rows of the stack).
    rest : tuple of int
        All blocks that are not cell-level.
    targets : tuple of tuple of int
        Maximal axis sets every row is reduced to.
    groups : tuple of Group
        Contractions of ``h`` for the block pairs that cover every axis.
    """

    full: tuple[int, ...]
    spread: tuple[int, ...]
    rest: tuple[int, ...]
    targets: tuple[Axes, ...]
    groups: tuple[Group, ...]

    def group_of(self, a: int, b: int) -> tuple[Group, int] | None:
        """The group serving pair ``(a, b)``, and which of the two is its partner."""
        for grp in self.groups:
            if grp.block == b and a in grp.partners:
                return grp, a
            if grp.block == a and b in grp.partners:
                return grp, b
        return None


def _maximal(sets: set[Axes]) -> tuple[Axes, ...]:
    return tuple(sorted(s for s in sets if not any(set(s) < set(t) for t in sets)))


def _blas_friendly(block_axes: Axes, contract: Axes, ndim: int) -> bool:
    """Whether the group runs as few, large matrix products per chunk of the first axis.

    With ``h`` C-ordered and chunked along axis 0, a group is a batched matrix
    product with few batches when its batch axes (the block's axes it does not
    contract) are axis 0 alone or nothing, and the contracted and free axes
    each form one contiguous run.
    """
    batch = tuple(a for a in block_axes if a not in contract)
    if batch not in ((), (0,)):
        return False
    rest = [a for a in range(ndim) if a not in batch]
    free = [a for a in rest if a not in contract]

    def run(axes: list[int] | Axes) -> bool:
        return list(axes) == list(range(min(axes), max(axes) + 1)) if axes else True

    return run(contract) and run(free)


def make_plan(design: FactoredDesign) -> KernelPlan | None:
    """Choose the reductions and contractions of one pass, or ``None`` if unsupported.

    Unsupported (the caller falls back to the plain kernels): a fixed effect
    over every axis, or two fixed effects whose axes together cover every axis
    (their Hessian block alone is as large as the panel).
    """
    ndim = design.ndim
    every = tuple(range(ndim))
    blocks = design.blocks
    full, rest = [], []
    for i, b in enumerate(blocks):
        if b.axes == every:
            if not isinstance(b, DenseBlock):
                return None
            full.append(i)
        else:
            rest.append(i)
    sets: set[Axes] = {blocks[i].axes for i in rest}
    pairs_left: set[tuple[int, int]] = set()
    for ia, ib in combinations(rest, 2):
        union = tuple(sorted(set(blocks[ia].axes) | set(blocks[ib].axes)))
        if union != every:
            sets.add(union)
        elif not (isinstance(blocks[ia], DenseBlock) or isinstance(blocks[ib], DenseBlock)):
            return None
        else:
            pairs_left.add((ia, ib))

    # Candidates: a group (a dense block x contracted over a non-empty C within
    # the axes its partner lacks, as one batched BLAS product) serves every
    # pair of x with a block whose axes miss C; spreading x serves all its pairs.
    candidates = []
    for x in rest:
        if not isinstance(blocks[x], DenseBlock):
            continue
        own, cols = blocks[x].axes, blocks[x].n_cols
        mine = {pair for pair in pairs_left if x in pair}
        if mine:
            cost = cols * (SPREAD_COL_COST + SPREAD_TARGET_COST * len(_maximal(sets)))
            candidates.append((x, None, mine, cost))
        # A friendly group's batch axes are axis 0 or none, so it contracts
        # every axis of the block but perhaps axis 0: two candidates, not all
        # 2^len(own) subsets (a block along 40 single-level dims has 2^40).
        for contract in dict.fromkeys((tuple(a for a in own if a != 0), own)):
            if not contract or not _blas_friendly(own, contract, ndim):
                continue
            served = {
                (min(x, o), max(x, o))
                for o in rest
                if o != x and not set(blocks[o].axes) & set(contract)
            } & pairs_left
            if served:
                candidates.append((x, contract, served, GROUP_COST + GROUP_COL_COST * cols))
    groups, spread = [], []
    while pairs_left:
        x, contract, served, _ = max(
            candidates, key=lambda c: (len(c[2] & pairs_left) / c[3], -len(c[2]))
        )
        if contract is None:
            spread.append(x)
        else:
            partners = tuple(o for o in rest if o != x and not set(blocks[o].axes) & set(contract))
            groups.append(Group(x, contract, partners))
        pairs_left -= served
    # A group of a block that ended up spread serves nothing the spread rows do not.
    groups = [g for g in groups if g.block not in spread]
    # With no block below the cell level (no intercept, every column varying
    # along every axis), rows are still summed to a scalar: the Poisson
    # gradient takes sum(h X_q) from those sums.
    targets = _maximal(sets) or ((),)
    return KernelPlan(tuple(full), tuple(spread), tuple(rest), targets, tuple(groups))
