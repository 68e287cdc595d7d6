"""The penalized objective: where a family meets a factored design.

With cell weights ``w`` and coefficients ``beta`` the objective minimized is
scikit-learn's GLM convention::

    (1 / sum(w)) * sum_c w_c * (-f_c)  +  (alpha / 2) * ||beta_penalized||^2

where ``f_c`` is the family's log-likelihood of cell ``c``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ._factored import Axes, FactoredDesign
from ._families import Family, profiled_gaussian_loglik
from ._kernels import ChunkKernels
from ._plan import make_plan
from ._statistics import y_sums
from ._threads import blas_limit

# Largest ratio of the response sums to the deviance at which their
# difference still gives the deviance to about 1e-11 relative.
CANCELLATION = 1e4


@dataclass
class PanelProblem:
    """The arrays of one fit, all laid out on the panel grid.

    Attributes
    ----------
    shape : tuple of int
        The panel's shape.
    y : ndarray or None
        Response on the full grid (``None`` when predicting).
    m : ndarray or float
        Binomial trials, broadcastable to the grid (``1.0`` otherwise).
    w : ndarray or None
        Cell weights on the grid; ``None`` means all ones.
    offset : (ndarray, axes) or None
        Offset laid out over ``axes``.
    """

    shape: tuple[int, ...]
    y: np.ndarray | None = None
    m: np.ndarray | float = 1.0
    w: np.ndarray | None = None
    offset: tuple[np.ndarray, Axes] | None = None

    def offset_grid(self) -> np.ndarray | float:
        """The offset broadcastable to the grid (``0.0`` without one)."""
        if self.offset is None:
            return 0.0
        arr, axes = self.offset
        return arr.reshape([n if d in axes else 1 for d, n in enumerate(self.shape)])

    def deviance(self, family: Family, eta: np.ndarray | float) -> float:
        """Weighted total deviance of the model with linear predictor ``eta``."""
        mu = np.broadcast_to(family.mean(np.asarray(eta, dtype=np.float64), self.m), self.y.shape)
        dev = family.unit_deviance(self.y, mu, self.m)
        if self.w is None:
            return float(np.sum(dev))
        # Cells of weight zero (no row; a separated level's) count nothing, even
        # where their filler y meets an infinite effect or an unseen level's NaN.
        return float(np.vdot(self.w, np.where(self.w > 0, dev, 0.0)))

    @property
    def sum_w(self) -> float:
        """Total weight."""
        return float(np.prod(self.shape) if self.w is None else self.w.sum())

    def weighted(self, arr: np.ndarray) -> np.ndarray:
        """``w * arr`` (``arr`` itself when there are no weights)."""
        return arr if self.w is None else arr * self.w

    def rows(self, start: int, stop: int) -> PanelProblem:
        """The sub-problem of first-axis positions ``start:stop`` (views, no copies)."""
        return self.along(0, start, stop)

    def along(self, axis: int, start: int, stop: int) -> PanelProblem:
        """The sub-problem of positions ``start:stop`` of ``axis`` (views, no copies)."""
        n = self.shape[axis]
        cut = (slice(None),) * axis + (slice(start, stop),)

        def part(value):
            if isinstance(value, np.ndarray) and value.ndim == len(self.shape):
                return value[cut] if value.shape[axis] == n and n > 1 else value
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
                arr, axes = value
                if axis not in axes:
                    return value
                return (arr[(slice(None),) * axes.index(axis) + (slice(start, stop),)], axes)
            return value

        changes = {f.name: part(getattr(self, f.name)) for f in dataclasses.fields(self)}
        shape = list(self.shape)
        shape[axis] = stop - start
        changes["shape"] = tuple(shape)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FitStatistics:
    """Deviance and log-likelihood of a fit and of its intercept-only (null) model."""

    deviance: float
    loglik: float
    null_deviance: float
    null_loglik: float


class PenalizedObjective:
    """Loss, gradient and Hessian of a penalized GLM as functions of ``beta``.

    Parameters
    ----------
    design : FactoredDesign
        The factored model matrix.
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset.
    alpha : float
        L2 penalty strength.
    penalized : ndarray of bool
        Which coefficients are penalized (all but the intercept).
    dtype : numpy dtype, default=np.float64
        Precision of the work over the cells (float64 or float32).

    Notes
    -----
    Loss, gradient and Hessian come from one fused, chunked pass over the
    cells (:class:`~panelglm._kernels.ChunkKernels`) whenever the design has
    a plan (:func:`~panelglm._plan.make_plan`); otherwise from the plain
    kernels of :class:`~panelglm._factored.FactoredDesign`.
    """

    def __init__(
        self,
        design: FactoredDesign,
        family: Family,
        problem: PanelProblem,
        alpha: float,
        penalized: np.ndarray,
        dtype: type | np.dtype = np.float64,
    ) -> None:
        self.design = design
        self.family = family
        self.problem = problem
        self.alpha = float(alpha)
        self.pen = np.asarray(penalized, dtype=np.float64)
        self._scale = 1.0 / problem.sum_w
        self._y_sums: tuple[float, float] | None = None  # see _y_totals
        # A float32 linear predictor makes the loss noisy at about float32's
        # resolution; the solver must not chase decreases below it.
        self.roundoff = 0.0 if np.dtype(dtype) == np.float64 else float(np.finfo(np.float32).eps)
        plan = make_plan(design) if problem.y is not None else None
        self.kernels = (
            None
            if plan is None
            else ChunkKernels(
                design, plan, problem.y, problem.w, problem.m, problem.offset, dtype, family
            )
        )

    @property
    def saturated_loss(self) -> float:
        """The objective's value at the saturated fit (each cell's mean at its ``y``).

        The loss less this is the deviance over twice the total weight: the
        scale on which the solver judges a decrease small. The loss itself
        carries ``sum w y eta``, which offsets, units and large counts make
        arbitrarily large without making the fit any more precise.
        """
        return -self._scale * self._y_totals()[0]

    def _y_totals(self) -> tuple[float, float]:
        """``sum w f_saturated(y)`` and ``sum w const(y)``: sums over the response alone.

        Taken together, once: counts are tallied by value for both in one go
        (a few ms at a million cells), for the stopping rule and the statistics.
        """
        if self._y_sums is None:
            fam, p = self.family, self.problem
            const_f = fam.loglik_const if fam.dispersion != "profiled" else None
            funcs = [f for f in (fam.saturated, const_f) if f is not None]
            sums = iter(y_sums(funcs, p.y, p.m, p.w) if funcs and p.y is not None else [])
            sat = next(sums, 0.0) if fam.saturated is not None else 0.0
            const = next(sums, 0.0) if const_f is not None else 0.0
            self._y_sums = (sat, const)
        return self._y_sums

    def eta(self, beta: np.ndarray) -> np.ndarray:
        """The linear predictor on the grid."""
        return self.design.linear_predictor(beta, self.problem.offset)

    def _penalty(self, beta: np.ndarray) -> float:
        return 0.5 * self.alpha * float(np.sum(self.pen * beta * beta))

    def loss(self, beta: np.ndarray) -> float:
        """Objective value at ``beta`` (``inf`` where it overflows)."""
        if self.kernels is not None:
            total = self.kernels.loss_sum(beta)
        else:
            p = self.problem
            f = self.family.loglik(p.y, self.eta(beta), p.m)
            total = float(np.sum(f) if p.w is None else np.vdot(p.w, f))
        if not np.isfinite(total):
            return np.inf
        return -self._scale * total + self._penalty(beta)

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient and Hessian at ``beta``."""
        if self.kernels is not None:
            acc = self.kernels.full_pass(beta)
            total = acc.lsum
            if not np.isfinite(total):
                n = self.design.n_coef
                return np.inf, np.full(n, np.nan), np.full((n, n), np.nan)
            grad = -self._scale * self.kernels.gradient(acc) + self.alpha * self.pen * beta
            hess = self._scale * self.kernels.hessian(acc)
            hess[np.diag_indices_from(hess)] += self.alpha * self.pen
            return -self._scale * total + self._penalty(beta), grad, hess
        p = self.problem
        eta = self.eta(beta)
        f = self.family.loglik(p.y, eta, p.m)
        total = float(np.sum(f) if p.w is None else np.vdot(p.w, f))
        g, h = self.family.grad_hess(p.y, eta, p.m)
        del eta, f
        grad = -self._scale * self.design.gradient(p.weighted(g)) + self.alpha * self.pen * beta
        del g
        hess = -self._scale * self.design.hessian(p.weighted(np.asarray(h)))
        hess[np.diag_indices_from(hess)] += self.alpha * self.pen
        loss = -self._scale * total + self._penalty(beta) if np.isfinite(total) else np.inf
        return loss, grad, hess

    def release(self) -> None:
        """Free what the passes keep for the next one; the objective still works after."""
        if self.kernels is not None and self.kernels.compiled is not None:
            self.kernels.compiled.release()

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        """Sum ``fn(sub_problem, eta)`` over chunks of the first axis (eta in float64).

        For statistics at the solution (deviance, log-likelihood) without
        any array of size N.
        """
        totals = None
        with blas_limit():  # many small BLAS calls: more threads would only spin
            for sub, eta in self._eta_chunks(beta):
                vals = fn(sub, eta)
                if totals is not None:
                    vals = tuple(a + b for a, b in zip(totals, vals, strict=True))
                totals = vals
        return totals

    def information(self, beta: np.ndarray) -> np.ndarray:
        """Fisher information ``X' diag(-w h) X`` of the unpenalized log-likelihood at ``beta``.

        One fused pass when the design has a plan (as a Newton step costs);
        otherwise the plain kernels on the full grid.
        """
        if self.kernels is not None:
            return self.kernels.hessian(self.kernels.full_pass(beta))
        p = self.problem
        h = self.family.grad_hess(p.y, self.eta(beta), p.m)[1]
        return self.design.hessian(p.weighted(-np.broadcast_to(h, p.shape)))

    def score_outer(self, beta: np.ndarray) -> np.ndarray | None:
        """``X' diag(u^2) X`` with ``u = w g`` at ``beta`` (the HC meat), or None.

        One fused pass with ``u^2`` in place of the curvature; None when the
        design has no plan (the caller then uses the plain kernels).
        """
        if self.kernels is None:
            return None
        family = self.family

        def squared_scores(y, eta, m, w, out):
            g = family.grad_hess(y, eta, m)[0]
            if w is not None:
                g = g * w
            np.multiply(g, g, out=out)

        return self.kernels.hessian(self.kernels.full_pass(beta, squared_scores))

    def fit_statistics(self, beta: np.ndarray, intercept0: float) -> FitStatistics | None:
        """Statistics of the fit at ``beta`` and of the null model, or None if unavailable.

        The null model's linear predictor is ``intercept0`` plus the offset.
        One float64 pass for ``sum w f`` of both models, then sums over the
        response alone (see :mod:`panelglm._statistics`).
        """
        fam, p = self.family, self.problem
        if self.kernels is None or fam.saturated is None:
            return None

        def wsum(sub: PanelProblem, f: np.ndarray) -> float:
            return float(np.sum(f) if sub.w is None else np.vdot(sub.w, f))

        def lsums(sub: PanelProblem, eta: np.ndarray) -> tuple[float, float]:
            # The null model's eta stays at the offset's own shape (a scalar
            # without one): the family's exp or log runs on that, not per cell.
            eta0 = intercept0 + sub.offset_grid()
            f0 = np.broadcast_to(fam.loglik(sub.y, eta0, sub.m), sub.shape)
            return wsum(sub, fam.loglik(sub.y, eta, sub.m)), wsum(sub, f0)

        total, total0 = self.chunk_sums(beta, lsums)
        # sum w f_saturated(y): already summed for the solver's stopping rule.
        sat = -self.saturated_loss / self._scale
        const = self._y_totals()[1]
        dev, dev0 = 2.0 * (sat - total), 2.0 * (sat - total0)
        # The sums over y cost no special function per cell, but each is far
        # larger than the deviance when counts are large (y log y for flows
        # in dollars): past a ratio of 1e4 their difference has lost the
        # digits a deviance needs, so it is summed cell by cell instead.
        size = abs(sat) + max(abs(total), abs(total0))
        if size > CANCELLATION * min(abs(dev), abs(dev0)):
            dev, dev0 = self.chunk_sums(
                beta,
                lambda sub, eta: (
                    sub.deviance(fam, eta),
                    sub.deviance(fam, intercept0 + sub.offset_grid()),
                ),
            )
        if fam.dispersion == "profiled":  # Gaussian: the variance is profiled out
            ll, ll0 = (profiled_gaussian_loglik(d, p.sum_w) for d in (dev, dev0))
            return FitStatistics(dev, ll, dev0, ll0)
        return FitStatistics(dev, total + const, dev0, total0 + const)

    def _eta_chunks(self, beta: np.ndarray) -> Iterator[tuple[PanelProblem, np.ndarray]]:
        kern = self.kernels
        if kern is None:
            yield self.problem, self.eta(beta)
            return
        small, cell = kern.eta_parts(beta)
        small = [np.asarray(a, dtype=np.float64) for a in small]
        cell = [np.asarray(b, dtype=np.float64) for b in cell]
        for s, e in kern.chunks:
            eta = np.empty((e - s, *self.problem.shape[1:]))
            kern.fill_eta(eta, s, e, small, cell)
            yield self.problem.rows(s, e), eta


def null_intercept(family: Family, problem: PanelProblem) -> float:
    """Maximum-likelihood intercept of the model with no covariates.

    Used to start Newton and as the reference model of D^2.
    """
    p = problem
    return family.null_intercept(p.y, p.offset_grid(), p.m, 1.0 if p.w is None else p.w)
