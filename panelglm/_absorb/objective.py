"""The penalized objective over covariates and absorbed effects, and its Newton step.

The coefficients are ``theta = (beta, a)``: the covariates' ``beta`` (the
factored design's order) then every absorbed effect's values, stacked. The
objective is the same as :class:`~panelglm._engine.objective.PenalizedObjective`'s,
the effects unpenalized. Its Hessian is never formed: :class:`AbsorbedHessian`
keeps the covariates' block ``A``, the cross blocks ``B'`` (levels x
covariates) and the effects' block ``D`` as an :class:`EffectSystem`, and
solves the Newton system through the Schur complement ``S = A - B D^-1 B'``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .._engine.objective import PanelProblem
from .._engine.tally import tally
from .._model.blocks import DenseBlock
from .._model.factored import FactoredDesign
from .._model.families import Family
from .._model.reduce import Reducer, letters
from .._model.statistics import y_sums
from .._solve.newton import _newton_step
from .effects import AbsorbedEffects, EffectSystem


def _scaled(arr: np.ndarray, w: np.ndarray | None, c: float, shape: tuple) -> np.ndarray:
    """``c * w * arr`` on the grid, in ``arr``'s memory when it owns a writable grid array.

    The families' derivatives are fresh arrays (or broadcast constants), so
    scaling them in place saves a grid-sized array at each Newton step.
    """
    own = isinstance(arr, np.ndarray) and arr.shape == shape and arr.flags.owndata
    out = arr if own and arr.flags.writeable else np.array(np.broadcast_to(arr, shape))
    if c != 1.0:
        out *= c
    if w is not None:
        out *= w
    return out


def cross_blocks(
    design: FactoredDesign, t: np.ndarray, effects: AbsorbedEffects
) -> list[np.ndarray]:
    """Each effect's cross block with the covariates: ``t`` times a column, summed to levels.

    A dense block's columns are contracted with ``t`` summed to the block's
    and the effect's axes in one direct loop (no batched products of tiny
    matrices, which is what a planned contraction makes of a cell-level block);
    indicator blocks use the design's own scores.
    """
    red = Reducer(t)
    out = []
    for r, keep in enumerate(effects.axes):
        cols = []
        for blk in design.blocks:
            if isinstance(blk, DenseBlock):
                u = tuple(sorted(set(blk.axes) | set(keep)))
                sub = f"{letters(u)},{letters(blk.axes)}z->{letters(keep)}z"
                cols.append(np.einsum(sub, red.get(u), blk.values))
            else:
                one = FactoredDesign(design.shape, [blk])
                cols.append(one.scores(t, keep).reshape((*effects.sub_shape(r), blk.n_cols)))
        shape = (*effects.sub_shape(r), 0)
        out.append(np.concatenate(cols, axis=-1) if cols else np.zeros(shape))
    return out


def _cross_t(bt: list[np.ndarray], z: list[np.ndarray]) -> np.ndarray:
    """``sum_r B_r' z_r``: blocks of levels x covariates against levels x columns."""
    out = 0.0
    for b, v in zip(bt, z, strict=True):
        out = out + b.reshape(-1, b.shape[-1]).T @ v.reshape(-1, v.shape[-1])
    return np.asarray(out)


class AbsorbedHessian:
    """The Hessian of :class:`AbsorbedObjective` at one point, in factored form.

    Parameters
    ----------
    a : ndarray of shape (p, p)
        The covariates' block (penalty included).
    bt : list of ndarray
        For each effect, its levels' cross block with the covariates, shaped
        ``levels + (p,)``.
    system : EffectSystem
        The effects' block.
    rtol : float
        Relative residual of the iterative effect solves for the projections
        ``Z`` that the covariances use, and the floor of the Newton steps'.
    warm : list
        A two-item box shared by the objective's Hessians: the last solve's
        ``D^-1 [B', g_a]``, which starts the next one (the effects' fits change
        little from one Newton iterate to the next), and the last Newton
        decrement.
    """

    # ndarray @ AbsorbedHessian must reach __rmatmul__, not numpy's conversion.
    __array_ufunc__ = None

    def __init__(
        self,
        a: np.ndarray,
        bt: list[np.ndarray],
        system: EffectSystem,
        rtol: float,
        warm: list,
    ) -> None:
        self.a, self.bt, self.rtol, self.warm = a, bt, rtol, warm
        self._system: EffectSystem | None = system
        self._effects = system.effects
        self._rebuild: Callable[[], EffectSystem] | None = None
        self.p = a.shape[0]
        self._z: list[np.ndarray] | None = None
        self.schur: np.ndarray | None = None

    @property
    def system(self) -> EffectSystem:
        """The effects' block, rebuilt by a pass over the data if it was spilled."""
        if self._system is None:
            self._system, self._rebuild = self._rebuild(), None
        return self._system

    def spill(self, rebuild: Callable[[], EffectSystem]) -> None:
        """Drop the effects' block, to be made again by ``rebuild()`` if it is asked for.

        When two effects span every axis, their cross block is the grid-sized
        curvature itself; a Newton iterate's block is rarely needed once the
        next point is evaluated, and keeping both raised a large fit's peak
        memory by one grid-sized array.
        """
        if self._system is not None:
            self._system, self._rebuild = None, rebuild

    @property
    def effects(self) -> AbsorbedEffects:
        """The absorbed effects."""
        return self._effects

    def projections(self) -> list[np.ndarray]:
        """``Z = D^-1 B'``: each covariate's least-squares fit by the effects."""
        if self._z is None:
            self._solve_with(None, self.rtol)
        return [z[..., : self.p] for z in self._z]

    def _solve_with(self, ga: list[np.ndarray] | None, rtol: float) -> list[np.ndarray]:
        """``D^-1 [B', g_a]`` (the gradient column only if given); sets ``Z`` and ``S``."""
        rhs = (
            self.bt
            if ga is None
            else [
                np.concatenate([b, g[..., None]], axis=-1)
                for b, g in zip(self.bt, ga, strict=True)
            ]
        )
        warm = self.warm[0]
        k = rhs[0].shape[-1]
        if warm is not None and warm[0].shape[-1] > k:
            warm = [w[..., :k] for w in warm]
        elif warm is not None and warm[0].shape[-1] < k:  # no gradient column yet
            warm = [
                np.concatenate([w, np.zeros((*w.shape[:-1], k - w.shape[-1]))], -1) for w in warm
            ]
        sol, _ = self.system.solve(rhs, warm, rtol)
        self._z = self.warm[0] = sol
        z = [s[..., : self.p] for s in sol]
        self.schur = self.a - _cross_t(self.bt, z)
        self.schur = 0.5 * (self.schur + self.schur.T)
        return sol

    def newton_step(self, grad: np.ndarray) -> tuple[np.ndarray, bool]:
        """The Newton step ``-H^-1 grad``, and whether it solves the system."""
        p, eff = self.p, self.effects
        gb, ga = grad[:p], eff.split(grad[p:])
        # Inexact Newton (Dembo, Eisenstat & Steihaug): far from the optimum a
        # step solved to a relative residual of about the last decrement keeps
        # the iteration superlinear; near it the floor makes the step exact.
        last = self.warm[1]
        rtol = self.rtol if last is None else max(self.rtol, min(1e-4, last))
        sol = self._solve_with(ga, rtol)
        zg = [s[..., p] for s in sol]
        if p:
            rhs = gb - _cross_t(self.bt, [v[..., None] for v in zg])[:, 0]
            db, solved = _newton_step(rhs, self.schur)
        else:
            db, solved = np.zeros(0), True
        da = [-g - s[..., :p] @ db for g, s in zip(zg, sol, strict=True)]
        step = np.concatenate([db, eff.join(da)])
        self.warm[1] = float(np.sqrt(max(-float(grad @ step), 0.0)))
        return step, solved

    def __rmatmul__(self, v: np.ndarray) -> np.ndarray:
        """``H v`` (``H`` is symmetric, so ``v @ H`` is the same)."""
        p, eff = self.p, self.effects
        vb, va = v[:p], eff.split(v[p:])
        top = self.a @ vb + _cross_t(self.bt, [x[..., None] for x in va])[:, 0]
        dv = self.system.matvec([x[..., None] for x in va])
        bottom = [d[..., 0] + b @ vb for d, b in zip(dv, self.bt, strict=True)]
        return np.concatenate([top, eff.join(bottom)])


class AbsorbedObjective:
    """Loss, gradient and factored Hessian over ``(beta, a)``.

    Parameters
    ----------
    design : FactoredDesign
        The covariates' factored design (no intercept: the effects hold it).
    effects : AbsorbedEffects
        The absorbed effects.
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset.
    alpha : float
        L2 penalty on the covariates.
    penalized : ndarray
        1 for each penalized covariate.
    tol : float
        The Newton tolerance; the effect solves are made tighter than it.
    """

    def __init__(
        self,
        design: FactoredDesign,
        effects: AbsorbedEffects,
        family: Family,
        problem: PanelProblem,
        alpha: float,
        penalized: np.ndarray,
        tol: float,
    ) -> None:
        self.design, self.effects, self.family, self.problem = design, effects, family, problem
        self.alpha = float(alpha)
        self.pen = np.asarray(penalized, dtype=np.float64)
        self.n_beta = design.n_coef
        self._scale = 1.0 / problem.sum_w
        # Inexact Newton: a step accurate to far below the tolerance changes
        # neither the iterates' path nor the optimum, which the exact gradient fixes.
        self.rtol = min(1e-8, max(1e-11, 1e-3 * tol))
        self._warm: list = [None, None]
        self._last: tuple | None = None
        # The family's fused pass (loss and curvature in place) applies when
        # the curvature is the mean (Poisson), so the residual is y - curvature.
        self._fused = (
            family.fused is not None
            and family.curvature_is_mean
            and problem.y is not None
            and np.ndim(problem.y) == len(problem.shape)
        )
        funcs = [f for f in (family.saturated,) if f is not None]
        y, m, w = problem.y, problem.m, problem.w
        sat = y_sums(funcs, y, m, w, tally(y, m, w))[0] if funcs else 0.0
        self.saturated_loss = -self._scale * sat

    def split(self, coef: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``beta`` and each effect's values."""
        return coef[: self.n_beta], self.effects.split(coef[self.n_beta :])

    def eta(self, coef: np.ndarray, offset: bool = True) -> np.ndarray:
        """The linear predictor on the grid (without the offset: how ``coef`` moves it)."""
        beta, a = self.split(coef)
        off = self.problem.offset if offset else None
        return self.effects.expand(a, self.design.linear_predictor(beta, off))

    def _penalty(self, beta: np.ndarray) -> float:
        return 0.5 * self.alpha * float(np.sum(self.pen * beta * beta))

    def _total(self, f: np.ndarray) -> float:
        w = self.problem.w
        return float(np.sum(f) if w is None else np.vdot(w, f))

    def loss(self, coef: np.ndarray) -> float:
        """Objective value (``inf`` where it overflows)."""
        p = self.problem
        eta = self.eta(coef)
        if self._fused:
            total = self.family.fused(p.y, eta, p.m, p.w, np.empty_like(eta), None, None)
        else:
            total = self._total(self.family.loglik(p.y, eta, p.m))
        del eta
        if not np.isfinite(total):
            return np.inf
        return -self._scale * total + self._penalty(coef[: self.n_beta])

    def loss_grad_hess(self, coef: np.ndarray) -> tuple[float, np.ndarray, AbsorbedHessian]:
        """Objective, gradient and factored Hessian.

        The last point's are kept: the collinearity screen and Newton's first
        step evaluate the same start.
        """
        if self._last is not None and np.array_equal(self._last[0], coef):
            return self._last[1]
        if self._last is not None:
            self._last[1][2].spill(partial(self._system_at, self._last[0]))
        out = self._loss_grad_hess(coef)
        self._last = (np.array(coef), out)
        return out

    def _system_at(self, coef: np.ndarray) -> EffectSystem:
        """The effects' block at ``coef``: one pass for the curvature alone."""
        return EffectSystem(self.effects, self._derivatives(coef, residual=False)[2])

    def _derivatives(
        self, coef: np.ndarray, residual: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray]:
        """The loss sum, the residual ``w g`` (if asked for) and the curvature ``-s w h``."""
        p, s = self.problem, self._scale
        eta = self.eta(coef)
        if self._fused:
            # The loss and the curvature w mu into one buffer, the residual
            # w (y - mu) into eta's: two grid-sized arrays for the whole pass
            # (the separate functions make five).
            t = np.empty_like(eta)
            total = self.family.fused(p.y, eta, p.m, p.w, t, None, None)
            u = None
            if residual:
                u = np.multiply(p.y, 1.0 if p.w is None else p.w, out=eta)
                u -= t
            del eta
            t *= s
            return total, u, t
        total = self._total(self.family.loglik(p.y, eta, p.m)) if residual else np.nan
        g, h = self.family.grad_hess(p.y, eta, p.m)
        del eta
        # In place where the family's arrays are fresh: a grid-sized array
        # fewer at each step of a panel of 1e8 cells.
        u = _scaled(g, p.w, 1.0, p.shape) if residual else None
        del g
        t = _scaled(h, p.w, -s, p.shape)
        return total, u, t

    def _loss_grad_hess(self, coef: np.ndarray) -> tuple[float, np.ndarray, AbsorbedHessian]:
        s = self._scale
        beta = coef[: self.n_beta]
        total, u, t = self._derivatives(coef)
        grad = np.concatenate(
            [
                -s * self.design.gradient(u) + self.alpha * self.pen * beta,
                -s * self.effects.join(self.effects.reduce(u)),
            ]
        )
        del u
        a = self.design.hessian(t)
        a[np.diag_indices_from(a)] += self.alpha * self.pen
        bt = cross_blocks(self.design, t, self.effects)
        hess = AbsorbedHessian(a, bt, EffectSystem(self.effects, t), self.rtol, self._warm)
        loss = -s * total + self._penalty(beta) if np.isfinite(total) else np.inf
        return loss, grad, hess
