"""The pass engines: one interface, three implementations, chosen in one place.

A *pass engine* computes, for a GLM family on a factored design, the sums over
the cells that the solver and the statistics at the solution need
(:class:`PassEngine`). Three implementations give the same numbers to
rounding:

``"plain"``
    :class:`PlainEngine`, the reference: the factored design's own kernels on
    arrays over the whole grid. The only engine for a design without a plan
    (:func:`~panelglm._engine.plan.make_plan`), or when predicting.
``"numpy"``
    :class:`~panelglm._engine.kernels.NumpyEngine`: fused passes in chunks of the
    first axis, nothing of size ``N`` allocated.
``"compiled"``
    :class:`~panelglm._engine.compiled_engine.CompiledEngine`: the same, with the
    loss and full passes run by the compiled sweep where it is built and
    supports the family and precision.

:func:`make_engine` is the one place that chooses: the compiled engine where
it can run, else the numpy one, else the plain one. Setting the environment
variable ``PANELGLM_NUMPY_PASS=1`` runs every pass with numpy instead of the
compiled sweep (:func:`panelglm._engine.compiled.enabled`); it is read when an
engine is made, that is at each fit. Tests ask for an engine by name
(``kind=``).

This module imports the engines, the plan and the problem; the objective
(:mod:`panelglm._engine.objective`) imports it, and nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from .._model.factored import FactoredDesign
from .._model.families import Family
from . import compiled as _compiled
from .compiled_engine import CompiledEngine
from .dask_engine import is_lazy_fit
from .kernels import NumpyEngine
from .pass_spec import PassSpec
from .plan import make_plan
from .problem import PanelProblem

ENGINES = ("compiled", "numpy", "plain")


@runtime_checkable
class PassEngine(Protocol):
    """The sums over the cells of a GLM on a factored design, as functions of ``beta``.

    Every sum is unscaled and unpenalized: ``f``, ``g`` and ``h`` are the
    family's per-cell log-likelihood and its first two derivatives in the
    linear predictor, ``w`` the cell weights.
    """

    name: str

    def loss(self, beta: np.ndarray) -> float:
        """``sum_c w_c f_c`` (not finite where it overflows)."""

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``sum w f``, the score ``X'(w g)`` and the information ``X' diag(-w h) X``.

        Gradient and information are NaN where the sum is not finite.
        """

    def information(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(-w h) X``."""

    def score_outer(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(u^2) X`` with ``u = w g``: the robust (HC) meat."""

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        """``fn(sub_problem, eta)`` summed over parts of the grid (``eta`` in float64)."""

    def release(self) -> None:
        """Free what is kept for the next pass; the engine still works after."""


class PlainEngine:
    """The reference engine: the factored design's kernels on whole-grid arrays.

    Parameters
    ----------
    design : FactoredDesign
        The factored model matrix.
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset.
    """

    name = "plain"

    def __init__(self, design: FactoredDesign, family: Family, problem: PanelProblem) -> None:
        self.design, self.family, self.problem = design, family, problem

    def _eta(self, beta: np.ndarray) -> np.ndarray:
        return self.design.linear_predictor(beta, self.problem.offset)

    def _sum(self, f: np.ndarray) -> float:
        w = self.problem.w
        return float(np.sum(f) if w is None else np.vdot(w, f))

    def loss(self, beta: np.ndarray) -> float:
        p = self.problem
        return self._sum(self.family.loglik(p.y, self._eta(beta), p.m))

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        p = self.problem
        eta = self._eta(beta)
        total = self._sum(self.family.loglik(p.y, eta, p.m))
        if not np.isfinite(total):
            n = self.design.n_coef
            return total, np.full(n, np.nan), np.full((n, n), np.nan)
        g, h = self.family.grad_hess(p.y, eta, p.m)
        del eta
        score = self.design.gradient(p.weighted(g))
        del g
        # Negated after the sum: no grid-sized copy of a broadcast curvature.
        return total, score, -self.design.hessian(p.weighted(np.asarray(h)))

    def information(self, beta: np.ndarray) -> np.ndarray:
        p = self.problem
        h = self.family.grad_hess(p.y, self._eta(beta), p.m)[1]
        return self.design.hessian(p.weighted(-np.broadcast_to(h, p.shape)))

    def score_outer(self, beta: np.ndarray) -> np.ndarray:
        p = self.problem
        u = p.weighted(self.family.grad_hess(p.y, self._eta(beta), p.m)[0])
        u = np.broadcast_to(u, p.shape)
        return self.design.hessian(u * u)

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        return fn(self.problem, np.asarray(self._eta(beta), dtype=np.float64))

    def release(self) -> None:
        """Nothing is kept between passes."""


def make_engine(
    design: FactoredDesign,
    family: Family,
    problem: PanelProblem,
    dtype: type | np.dtype = np.float64,
    kind: str | None = None,
    **options,
) -> PassEngine:
    """The pass engine of a fit: ``kind`` if given, else the fastest that can run.

    The compiled engine falls back to the numpy one where the sweep cannot
    run (not built, switched off, float32, a family or a number of dimensions
    it lacks), and both to the plain one where the design has no plan or
    there is no response. ``options`` (``chunk_cells``, ``n_threads``) go to
    the chunked engines.

    Returns
    -------
    PassEngine
    """
    if is_lazy_fit(design, problem):  # Dask arrays: each slab's engine made in its task
        from .dask_engine import DaskEngine

        return DaskEngine(design, family, problem, make_engine, dtype, **options)
    kind = "compiled" if kind is None else kind
    if kind not in ENGINES:
        raise ValueError(f"unknown pass engine {kind!r}: expected one of {', '.join(ENGINES)}")
    plan = make_plan(design) if problem.y is not None and kind != "plain" else None
    if plan is None:
        return PlainEngine(design, family, problem)
    p = problem
    spec = PassSpec.build(design, plan, family, p.y, p.w, p.m, p.offset, dtype)
    if kind == "compiled" and _compiled.usable(spec):
        return CompiledEngine(spec, problem, **options)
    return NumpyEngine(spec, problem, **options)
