"""Identification with absorbed effects: separated levels, collinear covariates, dof.

* A level of an effect whose observed ``y`` all sit at one boundary of the
  family (all-zero counts; all-0 or all-``M`` binomial outcomes) has an
  infinite maximum-likelihood effect and tells nothing about the rest: its
  cells are dropped, level after level, until no effect has one (ppmlhdfe's
  and fixest's rule).
* A covariate that the effects explain (constant within the levels of one
  of them, or a sum of such) has a zero pivot in the Schur complement
  ``S = A - B D^-1 B'``: the covariates' Gram after the effects are
  projected out. It is dropped.
* The effects' degrees of freedom: their levels, less one per connected
  set of levels for two effects (exact), less one per further effect beyond
  (fixest's count) for more.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from .._engine.objective import PanelProblem
from .._ident.separation import boundary_signs
from .._model.families import Family
from .effects import AbsorbedEffects

# Relative size of a covariate's pivot in S below which the effects (and the
# covariates before it) are taken to explain it: far above the rounding of S,
# far below any variation a real covariate keeps.
COLLINEAR_TOL = 1e-9
# Above this many multiply-adds to link the smaller effect's levels through
# the other's, connected sets are found on the graph of both effects' levels.
SMALL_GRAPH = 1_000_000_000


def observed(problem: PanelProblem) -> np.ndarray:
    """Cells of positive weight, as a boolean grid."""
    if problem.w is None:
        return np.ones(problem.shape, dtype=bool)
    return problem.w > 0


def count_to(mask: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """How many cells of ``mask`` fall in each level combination of ``axes``.

    Summed from the boolean grid directly: a float copy of it would be a
    grid-sized array of eight bytes a cell.
    """
    other = tuple(d for d in range(mask.ndim) if d not in axes)
    if not other:
        return mask  # a level per cell: its count is the mask itself
    return mask.sum(axis=other, dtype=np.int64)


def boundary_levels(
    family: Family, problem: PanelProblem, effects: AbsorbedEffects
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Cells to drop, and each effect's level signs (-1 all at 0, +1 all at M, 0 neither).

    Returns ``(None, zeros)`` when nothing is separated.
    """
    signs = [np.zeros(effects.sub_shape(r), np.int8) for r in range(len(effects.axes))]
    s = boundary_signs(family, problem)
    if s is None:
        return None, signs
    obs = observed(problem)
    drop = np.zeros(problem.shape, dtype=bool)
    changed = True
    while changed:  # dropping one effect's level can leave another's all at a boundary
        changed = False
        live = obs & ~drop
        for r, axes in enumerate(effects.axes):
            n = count_to(live, axes)
            lower = count_to(live & (s < 0), axes)
            upper = count_to(live & (s > 0), axes)
            new = (n > 0) & ((lower == n) | (upper == n))
            if new.any():
                signs[r][new & (lower == n)] = -1
                signs[r][new & (upper == n)] = 1
                drop |= effects.broadcastable(r, new)
                changed = True
    return (drop if drop.any() else None), signs


def collinear(schur: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Which covariates to keep: pivots of ``schur`` relative to ``gram``'s diagonal.

    In the covariates' order, each is kept unless what the effects and the
    covariates kept before it leave of it is below :data:`COLLINEAR_TOL` of
    its own size.
    """
    p = schur.shape[0]
    keep = np.zeros(p, dtype=bool)
    size = np.sqrt(np.maximum(np.diag(gram), 0.0))
    size[size == 0] = 1.0
    s = schur / size[:, None] / size
    for k in range(p):
        idx = np.flatnonzero(keep)
        rest = s[k, k]
        if idx.size:
            sol = np.linalg.lstsq(s[np.ix_(idx, idx)], s[idx, k], rcond=None)[0]
            rest -= s[k, idx] @ sol
        keep[k] = rest > COLLINEAR_TOL
    return keep


def _components(effects: AbsorbedEffects, obs: np.ndarray, r: int, s: int) -> int:
    """Connected sets of levels of effects ``r`` and ``s`` linked by observed cells."""
    u = tuple(sorted(set(effects.axes[r]) | set(effects.axes[s])))
    linked = count_to(obs, u) > 0
    ar, as_ = effects.axes[r], effects.axes[s]
    if effects.n_levels[r] < effects.n_levels[s]:
        ar, as_ = as_, ar  # the second effect is the one with fewer levels
    shared = tuple(a for a in ar if a in as_)
    parts = [shared, tuple(a for a in ar if a not in as_), tuple(a for a in as_ if a not in ar)]
    b, n_r, n_s = (int(np.prod([effects.shape[a] for a in p])) for p in parts)
    mat = linked.transpose([u.index(a) for p in parts for a in p]).reshape(b, n_r, n_s)
    if mat.all():  # every pair of levels observed together: one set per shared level
        return b
    if b * n_r * n_s * n_s <= SMALL_GRAPH:
        # Two levels of the smaller effect are linked when a level of the other
        # is observed with both: that graph (within each shared level) has the
        # same connected sets, and is small.
        m = mat.astype(np.float32)
        pairs = np.einsum("bij,bik->bjk", m, m) > 0
        idx = np.nonzero(pairs)
        rows, cols = idx[0] * n_s + idx[1], idx[0] * n_s + idx[2]
        n = b * n_s
        live = np.zeros(n, dtype=bool)
        live[rows] = True
    else:
        idx = np.nonzero(mat)
        rows = idx[0] * n_r + idx[1]
        cols = b * n_r + idx[0] * n_s + idx[2]
        n = b * (n_r + n_s)
        live = np.zeros(n, dtype=bool)
        live[rows] = live[cols] = True
    graph = scipy.sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return int(np.unique(labels[live]).size)


def effect_dof(
    effects: AbsorbedEffects, obs: np.ndarray, counts: list[np.ndarray]
) -> tuple[int, list[int]]:
    """Degrees of freedom of the effects, and each effect's observed levels.

    ``obs`` marks the observed cells and ``counts`` holds each effect's
    observed cells per level (:func:`count_to`).
    """
    levels = [int(np.count_nonzero(c)) for c in counts]
    m = len(levels)
    if m == 1:
        return levels[0], levels
    dof = sum(levels) - _components(effects, obs, 0, 1) - (m - 2)
    return dof, levels
