"""The penalized objective: where a family meets a factored design.

With cell weights ``w`` and coefficients ``beta`` the objective minimized is
scikit-learn's GLM convention::

    (1 / sum(w)) * sum_c w_c * (-f_c)  +  (alpha / 2) * ||beta_penalized||^2

where ``f_c`` is the family's log-likelihood of cell ``c``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .._model.factored import FactoredDesign
from .._model.families import Family, profiled_gaussian_loglik
from .._model.statistics import y_sums
from .engines import PassEngine, make_engine
from .problem import FitStatistics, PanelProblem
from .tally import merge_tallies, tally, tally_part

__all__ = ["FitStatistics", "PanelProblem", "PenalizedObjective", "null_intercept"]

# Largest ratio of the response sums to the deviance at which their
# difference still gives the deviance to about 1e-11 relative.
CANCELLATION = 1e4


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
    engine : PassEngine or str, optional
        The pass engine, or the name of one (``"compiled"``, ``"numpy"``,
        ``"plain"``); by default :func:`~panelglm._engine.engines.make_engine` chooses.
    n_threads : int or None, default=None
        Threads of a chunked engine's passes (None: the engine's default).

    Notes
    -----
    Every sum over the cells comes from the pass engine
    (:class:`~panelglm._engine.engines.PassEngine`); the objective scales them by the
    total weight and adds the penalty.
    """

    def __init__(
        self,
        design: FactoredDesign,
        family: Family,
        problem: PanelProblem,
        alpha: float,
        penalized: np.ndarray,
        dtype: type | np.dtype = np.float64,
        engine: PassEngine | str | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.design = design
        self.family = family
        self.problem = problem
        self.alpha = float(alpha)
        self.pen = np.asarray(penalized, dtype=np.float64)
        self._scale = 1.0 / problem.sum_w
        self._y_sums: tuple[float, float] | None = None  # see _y_totals
        self._counts: np.ndarray | bool | None = True  # see _y_counts; True: not tallied yet
        # The unscaled loss sum of the last point evaluated, with that point: the
        # statistics at the solution take it instead of a pass of their own.
        self._last_total: tuple[np.ndarray, float] | None = None
        # The last point of loss_grad_hess and its result: the collinearity
        # screen's evaluation at the start is Newton's first.
        self._last_point: tuple[np.ndarray, tuple] | None = None
        self._float64 = np.dtype(dtype) == np.float64
        # A float32 linear predictor makes the loss noisy at about float32's
        # resolution; the solver must not chase decreases below it.
        self.roundoff = 0.0 if np.dtype(dtype) == np.float64 else float(np.finfo(np.float32).eps)
        if engine is None or isinstance(engine, str):
            engine = make_engine(design, family, problem, dtype, kind=engine, n_threads=n_threads)
        self.engine: PassEngine = engine

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

        Taken together, once: counts are tallied by value for both in one go,
        for the stopping rule and the statistics.
        """
        if self._y_sums is None:
            fam, p = self.family, self.problem
            const_f = fam.loglik_const if fam.dispersion != "profiled" else None
            funcs = [f for f in (fam.saturated, const_f) if f is not None]
            if not funcs or p.y is None:
                sums = iter([])
            else:
                sums = iter(self._response_sums(funcs))
            sat = next(sums, 0.0) if fam.saturated is not None else 0.0
            const = next(sums, 0.0) if const_f is not None else 0.0
            self._y_sums = (sat, const)
        return self._y_sums

    @property
    def total_weight(self) -> float:
        """The total weight ``sum w`` the loss is divided by."""
        return 1.0 / self._scale

    def _y_counts(self) -> np.ndarray | None:
        """The response tallied by value (:func:`~panelglm._engine.tally.tally`), once."""
        if self._counts is True:
            p = self.problem
            if hasattr(self.engine, "slab_sums"):  # Dask: each slab tallies its own cells
                self._counts = self.engine.slab_sums(_slab_tally, combine=merge_tallies)
            elif self._counts_with_response_score():
                # X'(w y), which the mean's gradients need, is one pass over y
                # too: the counts are taken in its chunks, on its threads.
                parts: dict[int, np.ndarray | None] = {}
                self.engine.response_score(lambda y, w, s: parts.__setitem__(s, tally_part(y, w)))
                self._counts = merge_tallies([parts[s] for s in sorted(parts)])
            else:
                self._counts = tally(p.y, p.m, p.w)
        return self._counts

    def _counts_with_response_score(self) -> bool:
        """Whether the counts of y are still to take, in the pass for ``X'(w y)``."""
        spec = getattr(self.engine, "spec", None)
        return (
            self._counts is True
            and self._float64
            and np.ndim(self.problem.m) == 0
            and getattr(spec, "mean_trick", False)
            and not self.engine.has_response_score
        )

    def response_sum(self, func: Callable[[np.ndarray, np.ndarray | float], np.ndarray]) -> float:
        """``sum w func(y, m)``: by the counts of ``y`` where it is small counts."""
        return self._response_sums([func])[0]

    def _response_sums(self, funcs: list[Callable]) -> list[float]:
        """``sum w func(y, m)`` for each of ``funcs``, from the counts of ``y`` if it has them."""
        p, counts = self.problem, self._y_counts()
        if counts is None and hasattr(self.engine, "slab_sums"):  # Dask: summed slab by slab
            return list(self.engine.slab_sums(functools.partial(_slab_y_sums, funcs)))
        return y_sums(funcs, p.y, p.m, p.w, counts)

    def _remember(self, beta: np.ndarray, total: float) -> None:
        # Only a float64 pass's sum is one the statistics would compute themselves.
        if self._float64:
            self._last_total = (np.array(beta, dtype=np.float64), float(total))

    def _total_at(self, beta: np.ndarray) -> float | None:
        """``sum w f`` at ``beta`` if it is the last point evaluated, else None."""
        last = self._last_total
        if last is None or not np.array_equal(last[0], beta):
            return None
        return last[1]

    def eta(self, beta: np.ndarray) -> np.ndarray:
        """The linear predictor on the grid."""
        return self.design.linear_predictor(beta, self.problem.offset)

    def _penalty(self, beta: np.ndarray) -> float:
        return 0.5 * self.alpha * float(np.sum(self.pen * beta * beta))

    def loss(self, beta: np.ndarray) -> float:
        """Objective value at ``beta`` (``inf`` where it overflows)."""
        total = self.engine.loss(beta)
        self._remember(beta, total)
        if not np.isfinite(total):
            return np.inf
        return -self._scale * total + self._penalty(beta)

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient and Hessian at ``beta`` (the last point's are kept)."""
        last = self._last_point
        if last is not None and np.array_equal(last[0], beta):
            return last[1]
        out = self._loss_grad_hess(beta)
        self._last_point = (np.array(beta, dtype=np.float64), out)
        return out

    def remember(self, beta: np.ndarray, value: tuple[float, np.ndarray, np.ndarray]) -> None:
        """Take ``value`` as :meth:`loss_grad_hess` at ``beta``, evaluated elsewhere.

        For a point whose sums another objective already has: that of a
        design with more columns, at a point where those columns' coefficients
        are zero, restricted to this design's.
        """
        self._last_point = (np.array(beta, dtype=np.float64), value)

    def _loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        if self._counts_with_response_score():
            self._y_counts()  # the gradient's X'(w y) and the counts of y in one pass
        total, score, info = self.engine.loss_grad_hess(beta)
        self._remember(beta, total)
        if not np.isfinite(total):
            n = self.design.n_coef
            return np.inf, np.full(n, np.nan), np.full((n, n), np.nan)
        grad = -self._scale * score + self.alpha * self.pen * beta
        hess = self._scale * info
        hess[np.diag_indices_from(hess)] += self.alpha * self.pen
        return -self._scale * total + self._penalty(beta), grad, hess

    def release(self) -> None:
        """Free what the passes keep for the next one; the objective still works after."""
        self.engine.release()

    def chunk_sums(
        self, beta: np.ndarray, fn: Callable[[PanelProblem, np.ndarray], tuple[float, ...]]
    ) -> tuple[float, ...]:
        """Sum ``fn(sub_problem, eta)`` over parts of the grid (eta in float64).

        For statistics at the solution (deviance, log-likelihood) without
        any array of size N where the engine works in chunks.
        """
        return self.engine.chunk_sums(beta, fn)

    def information(self, beta: np.ndarray) -> np.ndarray:
        """Fisher information ``X' diag(-w h) X`` of the unpenalized log-likelihood at ``beta``."""
        return self.engine.information(beta)

    def score_outer(self, beta: np.ndarray) -> np.ndarray:
        """``X' diag(u^2) X`` with ``u = w g`` at ``beta`` (the HC meat)."""
        return self.engine.score_outer(beta)

    def fit_statistics(self, beta: np.ndarray, intercept0: float) -> FitStatistics:
        """Statistics of the fit at ``beta`` and of the null model.

        The null model's linear predictor is ``intercept0`` plus the offset.
        ``sum w f`` of the fit is the solver's last pass's when it ended at
        ``beta``, and that of the null model, without an offset, a sum over
        the response alone (its counts are tallied for the stopping rule);
        otherwise one float64 pass gives both. The rest are sums over the
        response alone (see :mod:`panelglm._model.statistics`).
        """
        fam, p = self.family, self.problem

        def wsum(sub: PanelProblem, f: np.ndarray) -> float:
            return float(np.sum(f) if sub.w is None else np.vdot(sub.w, f))

        def lsums(sub: PanelProblem, eta: np.ndarray) -> tuple[float, float]:
            # The null model's eta stays at the offset's own shape (a scalar
            # without one): the family's exp or log runs on that, not per cell.
            eta0 = intercept0 + sub.offset_grid()
            f0 = np.broadcast_to(fam.loglik(sub.y, eta0, sub.m), sub.shape)
            return wsum(sub, fam.loglik(sub.y, eta, sub.m)), wsum(sub, f0)

        total = self._total_at(beta)
        # Without an offset the null model's linear predictor is one number, so
        # its log-likelihood is a function of y alone: a dot product with the
        # counts of y where y is small counts.
        counts = self._y_counts() if p.offset is None and total is not None else None
        if counts is not None:

            def f0(values: np.ndarray, m: float) -> np.ndarray:
                return np.broadcast_to(fam.loglik(values, intercept0, m), values.shape)

            total0 = y_sums([f0], p.y, p.m, p.w, counts)[0]
        else:
            total, total0 = self.chunk_sums(beta, lsums)
        const = self._y_totals()[1]
        # A family without the saturated model's log-likelihood in closed form
        # sums its deviance cell by cell.
        by_cell = fam.saturated is None
        if not by_cell:
            # sum w f_saturated(y): already summed for the solver's stopping rule.
            sat = -self.saturated_loss / self._scale
            dev, dev0 = 2.0 * (sat - total), 2.0 * (sat - total0)
            # The sums over y cost no special function per cell, but each is far
            # larger than the deviance when counts are large (y log y for flows
            # in dollars): past a ratio of 1e4 their difference has lost the
            # digits a deviance needs, so it is summed cell by cell instead.
            size = abs(sat) + max(abs(total), abs(total0))
            by_cell = size > CANCELLATION * min(abs(dev), abs(dev0))
        if by_cell:
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


def _slab_y_sums(funcs: list, design: FactoredDesign, problem: PanelProblem) -> np.ndarray:
    """:func:`y_sums` of one slab of a Dask-backed panel (the slabs' add up)."""
    return np.asarray(y_sums(funcs, problem.y, problem.m, problem.w))


def _slab_tally(design: FactoredDesign, problem: PanelProblem) -> np.ndarray | None:
    """:func:`tally` of one slab of a Dask-backed panel (merged by ``merge_tallies``)."""
    return tally(problem.y, problem.m, problem.w)


def null_intercept(family: Family, problem: PanelProblem) -> float:
    """Maximum-likelihood intercept of the model with no covariates.

    Used to start Newton and as the reference model of D^2.
    """
    p = problem
    return family.null_intercept(p.y, p.offset_grid(), p.m, 1.0 if p.w is None else p.w)
