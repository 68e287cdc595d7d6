"""Covariance of the coefficients from the factored kernels.

Every covariance here is built from the same three kernels the Newton solver
uses, so the dense ``N x P`` matrix is never formed:

* the information ``I = X' diag(-w h) X`` is the Hessian of the unpenalized
  objective, from the solver's last step or one more fused pass
  (:meth:`PenalizedObjective.information`);
* the heteroskedasticity-robust "meat" ``X' diag(u^2) X``, with ``u = w g``
  the per-cell score factor, is the same kernel applied to ``u^2``;
* the meat of clusters formed by the level combinations of a set of panel
  axes ``C`` is ``S' S``, with ``S = FactoredDesign.scores(u, keep=C)`` the
  per-cluster scores: ``u`` is summed over every axis outside ``S_b u C``
  before it meets block ``b``, so a block that does not vary along a cluster
  axis is still reduced with that axis kept.

The score factors ``u`` are never held for the whole panel at once: they are
recomputed slice by slice along one panel axis (:class:`ScoreFactors`), and
every meat is a sum over slices of that axis, so inference adds memory of the
order of one slice, not of ``N``.

Multiway clustering is Cameron, Gelbach and Miller's (2011) inclusion-exclusion
over the intersections of the cluster sets; the intersection of the clusters
over axes ``A`` and over axes ``B`` is the clustering over ``A u B``.

Small-sample factors follow statsmodels (see :func:`coef_covariance`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import scipy.linalg

from .._engine.objective import PanelProblem
from .._model.blocks import Axes, DenseBlock, IndicatorBlock
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._util.warn import warn
from .corrections import SmallSample

COV_TYPES = ("nonrobust", "robust", "cluster")

# Per-cluster scores are an (n_clusters x n_coef) array. Above this size they
# are built in slices along one cluster axis and their cross-products summed,
# so clustering by, say, customer x product never holds an array comparable to
# the dense design. 32 MiB keeps the slices large enough that the per-slice
# overhead (a few small einsum calls per block) is negligible.
SCORE_CHUNK_BYTES = 32 * 2**20
# Score factors are recomputed in slices of about this many cells along one
# axis (the linear predictor, the family's derivative and the products of a
# slice: a few arrays of 8 MiB), so no array over all N cells is made.
SLICE_CELLS = 2**20


def normalize_cluster(
    cluster: Any, dims: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[Axes, ...]:
    """The cluster sets as sorted tuples of panel axes.

    Parameters
    ----------
    cluster : str, tuple of str, or list of (str or tuple of str)
        A dimension name (clusters are its levels); a tuple of names (clusters
        are their level combinations); or a list of either, one entry per
        clustering dimension of a multiway (Cameron-Gelbach-Miller) covariance.
    dims : tuple of str
        The panel's dimension names.
    shape : tuple of int
        The panel's number of levels along each dimension.

    Returns
    -------
    tuple of tuple of int

    Raises
    ------
    ValueError
        If an entry names something that is not a panel dimension, is empty,
        repeats another entry, or forms a single cluster.
    """
    entries = cluster if isinstance(cluster, list) else [cluster]
    if not entries:
        raise ValueError("cluster is an empty list; name at least one panel dimension.")
    out: list[Axes] = []
    for entry in entries:
        names = (entry,) if isinstance(entry, str) else entry
        if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(
                "Each cluster must be a dimension name or a non-empty tuple of them, "
                f"got {entry!r}."
            )
        unknown = [n for n in names if n not in dims]
        if unknown:
            raise ValueError(
                f"cluster {entry!r} names {unknown}, which are not panel dimensions; "
                f"the dimensions are {list(dims)}."
            )
        axes = tuple(sorted({dims.index(n) for n in names}))
        if axes in out:
            raise ValueError(f"cluster {entry!r} appears twice in {cluster!r}.")
        if np.prod([shape[a] for a in axes]) < 2:
            raise ValueError(
                f"Clustering by {entry!r} gives a single cluster; a cluster covariance "
                "needs at least two."
            )
        out.append(axes)
    return tuple(out)


def invert_information(info: np.ndarray) -> np.ndarray:
    """Inverse of the information matrix; a pseudo-inverse, with a warning, if singular."""
    try:
        factor = scipy.linalg.cho_factor(info)
        return scipy.linalg.cho_solve(factor, np.eye(len(info)))
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        warn(
            "The information matrix is singular (collinear covariates?); the covariance "
            "uses its pseudo-inverse, and the standard errors of coefficients that are "
            "not identified are meaningless.",
            RuntimeWarning,
        )
        return np.linalg.pinv(info, hermitian=True)


def _slice_design(design: FactoredDesign, axis: int, sl: slice) -> FactoredDesign:
    """The design restricted to the levels ``sl`` of one axis."""
    blocks = []
    for blk in design.blocks:
        if axis not in blk.axes:
            blocks.append(blk)
            continue
        idx = (slice(None),) * blk.axes.index(axis) + (sl,)
        if isinstance(blk, DenseBlock):
            blocks.append(DenseBlock(blk.axes, blk.values[idx], blk.names))
        else:
            blocks.append(IndicatorBlock(blk.axes, blk.codes[idx], blk.names))
    shape = list(design.shape)
    shape[axis] = len(range(*sl.indices(design.shape[axis])))
    return FactoredDesign(shape=tuple(shape), blocks=blocks)


def cluster_meat(design: FactoredDesign, u: np.ndarray, keep: Axes) -> np.ndarray:
    """``sum_k s_k s_k'`` over the clusters of ``keep``, ``s_k = sum_{c in k} u_c X[c]``.

    Parameters
    ----------
    design : FactoredDesign
        The factored model matrix.
    u : ndarray of shape ``design.shape``
        Per-cell score factors (weight times ``dloglik/deta``).
    keep : tuple of int
        Sorted axes whose level combinations are the clusters.

    Returns
    -------
    ndarray of shape (n_coef, n_coef)
    """
    if len(keep) == design.ndim:
        # Every cell is its own cluster: the meat is X' diag(u^2) X, which the
        # Hessian kernel computes without ever listing N scores.
        return design.hessian(u * u)
    n_clusters = int(np.prod([design.shape[a] for a in keep]))
    row_bytes = 8 * design.n_coef
    if n_clusters * row_bytes <= SCORE_CHUNK_BYTES:
        s = design.scores(u, keep)
        return s.T @ s
    # Clusters never straddle two levels of a cluster axis, so the meat is a
    # sum over slices along one; the longest gives the most even slices.
    axis = max(keep, key=lambda a: design.shape[a])
    per_level = n_clusters // design.shape[axis]
    step = max(1, SCORE_CHUNK_BYTES // (per_level * row_bytes))
    meat = np.zeros((design.n_coef, design.n_coef))
    for start in range(0, design.shape[axis], step):
        sl = slice(start, start + step)
        s = _slice_design(design, axis, sl).scores(u[(slice(None),) * axis + (sl,)], keep)
        meat += s.T @ s
    return meat


class ScoreFactors:
    """Per-cell score factors ``u = w dloglik/deta`` at the estimate, slice by slice.

    Parameters
    ----------
    design : FactoredDesign
        The factored model matrix.
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset of the fit.
    coef : ndarray of shape (n_coef,)
        The estimate, in internal coefficient order.
    outer : callable or None
        ``outer()`` computes ``X' diag(u^2) X`` by other means (the
        objective's pass engine); used for the meat over all axes.
    slab_sums : callable or None
        ``slab_sums(fn)`` sums ``fn(design, problem)`` over slabs of the grid
        held elsewhere (a Dask engine's tasks); every meat is then taken that
        way, and no score factor is made on the client.
    """

    def __init__(
        self,
        design: FactoredDesign,
        family: Family,
        problem: PanelProblem,
        coef: np.ndarray,
        outer: Callable[[], np.ndarray] | None = None,
        slab_sums: Callable[[Callable], Any] | None = None,
    ) -> None:
        self.design, self.family, self.problem, self.coef = design, family, problem, coef
        self._outer = outer
        self._slab_sums = slab_sums
        self._whole: np.ndarray | None = None

    def _factors(self, design: FactoredDesign, sub: PanelProblem) -> np.ndarray:
        return score_factors(self.family, self.coef, design, sub)

    def slices(self, axis: int) -> Iterator[tuple[FactoredDesign, np.ndarray]]:
        """The design and the score factors of consecutive slices along ``axis``."""
        n = self.design.shape[axis]
        step = max(1, SLICE_CELLS // max(1, int(np.prod(self.design.shape)) // n))
        if step >= n:  # one slice: the whole panel, kept for the next meat
            if self._whole is None:
                self._whole = self._factors(self.design, self.problem)
            yield self.design, self._whole
            return
        for start in range(0, n, step):
            stop = min(start + step, n)
            sub_design = _slice_design(self.design, axis, slice(start, stop))
            yield sub_design, self._factors(sub_design, self.problem.along(axis, start, stop))

    def meat(self, keep: Axes) -> np.ndarray:
        """:func:`cluster_meat` over the clusters of ``keep`` (all axes: every cell)."""
        if len(keep) == self.design.ndim and self._outer is not None:
            return self._outer()
        if self._slab_sums is not None:
            # Slabs cut the first axis: clusters along it lie within one slab,
            # so their meats add; others span slabs, whose per-cluster scores add.
            within = 0 in keep
            part = functools.partial(_slab_scores, self.family, self.coef, keep, within)
            total = self._slab_sums(part)
            return total if within else total.T @ total
        # Clusters never straddle two levels of an axis in ``keep``, so the
        # meat is a sum over slices along one (the first axis if it can).
        axis = 0 if 0 in keep else max(keep, key=lambda a: self.design.shape[a])
        meat = np.zeros((self.design.n_coef, self.design.n_coef))
        for design, u in self.slices(axis):
            meat += cluster_meat(design, u, keep)
        return meat


def score_factors(
    family: Family, coef: np.ndarray, design: FactoredDesign, problem: PanelProblem
) -> np.ndarray:
    """``u = w dloglik/deta`` at ``coef`` on the cells of ``problem`` (over ``design``'s grid)."""
    eta = design.linear_predictor(coef, problem.offset)
    return problem.weighted(family.grad_hess(problem.y, eta, problem.m)[0])


def _slab_scores(
    family: Family,
    coef: np.ndarray,
    keep: Axes,
    meat: bool,
    design: FactoredDesign,
    problem: PanelProblem,
) -> np.ndarray:
    """One slab's cluster meat (``meat``) or per-cluster scores over ``keep``."""
    u = np.broadcast_to(score_factors(family, coef, design, problem), design.shape)
    return cluster_meat(design, u, keep) if meat else design.scores(u, keep)


def _n_positive(problem: PanelProblem, keep: Axes) -> int:
    """Clusters over ``keep`` (all axes: cells) holding a cell of positive weight."""
    if problem.w is None:
        return int(np.prod([problem.shape[a] for a in keep]))
    drop = tuple(a for a in range(len(problem.shape)) if a not in keep)
    return int(np.count_nonzero(np.any(problem.w > 0, axis=drop)))


def inclusion_exclusion(clusters: tuple[Axes, ...]) -> dict[Axes, int]:
    """Cameron-Gelbach-Miller signs: ``{axes of an intersection: its net sign}``.

    ``V = sum over non-empty subsets r of the cluster sets of
    (-1)^(|r|+1) V(intersection of r)``; intersections with equal axes are
    merged, and those whose signs cancel are dropped.
    """
    signs: dict[Axes, int] = {}
    for r in range(1, len(clusters) + 1):
        for subset in combinations(clusters, r):
            axes = tuple(sorted(set().union(*subset)))
            signs[axes] = signs.get(axes, 0) + (-1) ** (r + 1)
    return {axes: s for axes, s in signs.items() if s != 0}


@dataclass(frozen=True)
class Covariance:
    """The covariance of the coefficients, in internal coefficient order.

    Attributes
    ----------
    cov : ndarray of shape (n_coef, n_coef)
        The covariance matrix.
    description : str
        What was computed, for the summary.
    """

    cov: np.ndarray
    description: str


def _describe_clusters(clusters: tuple[Axes, ...], dims: tuple[str, ...]) -> str:
    named = [" x ".join(dims[a] for a in axes) for axes in clusters]
    way = "one-way" if len(clusters) == 1 else f"{len(clusters)}-way (Cameron-Gelbach-Miller)"
    return f"cluster-robust, {way}, by {', '.join(named)}"


def coef_covariance(
    design: FactoredDesign,
    problem: PanelProblem,
    bread: np.ndarray,
    scores: ScoreFactors | None,
    *,
    cov_type: str,
    correction: SmallSample,
    clusters: tuple[Axes, ...] = (),
    scale: float = 1.0,
    dims: tuple[str, ...] = (),
) -> Covariance:
    """Covariance of the coefficient estimates.

    Parameters
    ----------
    design : FactoredDesign
        The factored model matrix.
    problem : PanelProblem
        Weights (and shape) of the fit.
    bread : ndarray of shape (n_coef, n_coef)
        Inverse of the information matrix.
    scores : ScoreFactors or None
        The score factors at the estimate (needed unless ``nonrobust``);
        anything with their ``meat(axes)``.
    cov_type : {"nonrobust", "robust", "cluster"}
        Model-based ``scale * bread``; the sandwich ``bread M bread`` with the
        heteroskedasticity-robust meat; or with the cluster-robust meat.
    correction : SmallSample
        The small-sample factors (see :mod:`panelglm._inference.corrections`), with
        ``n`` the cells of positive weight and ``G`` the clusters of a term.
    clusters : tuple of tuple of int
        Cluster sets (axes) for ``cov_type="cluster"``.
    scale : float
        Dispersion multiplying the model-based covariance.
    dims : tuple of str
        Dimension names, for the description.

    Returns
    -------
    Covariance
    """
    every = tuple(range(design.ndim))
    n = _n_positive(problem, every)
    fixest = "; fixest's small-sample factors" if correction.fixest else ""
    if cov_type == "nonrobust":
        factor = correction.model(n)
        desc = f"nonrobust (model-based, inverse information){fixest}"
        return Covariance(scale * factor * bread, desc)
    k = correction.k
    if cov_type == "robust":
        name = ("robust (HC1)" if correction.mode else "robust (HC0)") + fixest
        return _sandwich(bread, correction.robust(n) * scores.meat(every), name, f"n={n}, k={k}")
    meat = np.zeros((design.n_coef, design.n_coef))
    # fixest's convention uses the fewest clusters of any set for every term.
    g_min = min(_n_positive(problem, axes) for axes in clusters) if correction.fixest else 0
    for axes, sign in inclusion_exclusion(clusters).items():
        n_clusters = _n_positive(problem, axes)
        factor = correction.cluster(n, n_clusters, clusters, g_min)
        if not np.isfinite(factor):
            why = f"{n_clusters} cluster(s) by {[dims[a] for a in axes]}, n={n}, k={k}"
            return _sandwich(
                bread, np.full(bread.shape, np.nan), _describe_clusters(clusters, dims), why
            )
        meat += sign * factor * scores.meat(axes)
    note = "small-sample corrected" if correction.mode else "no small-sample correction"
    return _sandwich(bread, meat, f"{_describe_clusters(clusters, dims)}; {note}{fixest}", "")


def _sandwich(bread: np.ndarray, meat: np.ndarray, description: str, why: str) -> Covariance:
    if not np.all(np.isfinite(meat)):
        # The fit itself is fine (e.g. more coefficients than observations
        # under a penalty); only its robust covariance is undefined.
        warn(
            f"The {description} covariance is undefined ({why or 'non-finite scores'}); "
            "it is set to NaN.",
            RuntimeWarning,
        )
    return Covariance(bread @ meat @ bread, description)
