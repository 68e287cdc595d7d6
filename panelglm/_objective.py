"""The penalized objective: where a family meets a factored design.

With cell weights ``w`` and coefficients ``beta`` the objective minimized is
scikit-learn's GLM convention::

    (1 / sum(w)) * sum_c w_c * (-f_c)  +  (alpha / 2) * ||beta_penalized||^2

where ``f_c`` is the family's log-likelihood of cell ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._factored import Axes, FactoredDesign
from ._families import Family


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
        return float(np.sum(dev) if self.w is None else np.vdot(self.w, dev))

    @property
    def sum_w(self) -> float:
        """Total weight."""
        return float(np.prod(self.shape) if self.w is None else self.w.sum())

    def weighted(self, arr: np.ndarray) -> np.ndarray:
        """``w * arr`` (``arr`` itself when there are no weights)."""
        return arr if self.w is None else arr * self.w


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
    """

    def __init__(
        self,
        design: FactoredDesign,
        family: Family,
        problem: PanelProblem,
        alpha: float,
        penalized: np.ndarray,
    ) -> None:
        self.design = design
        self.family = family
        self.problem = problem
        self.alpha = float(alpha)
        self.pen = np.asarray(penalized, dtype=np.float64)
        self._scale = 1.0 / problem.sum_w

    def eta(self, beta: np.ndarray) -> np.ndarray:
        """The linear predictor on the grid."""
        return self.design.linear_predictor(beta, self.problem.offset)

    def _penalty(self, beta: np.ndarray) -> float:
        return 0.5 * self.alpha * float(np.sum(self.pen * beta * beta))

    def loss(self, beta: np.ndarray) -> float:
        """Objective value at ``beta`` (``inf`` where it overflows)."""
        p = self.problem
        f = self.family.loglik(p.y, self.eta(beta), p.m)
        total = float(np.sum(f) if p.w is None else np.vdot(p.w, f))
        if not np.isfinite(total):
            return np.inf
        return -self._scale * total + self._penalty(beta)

    def loss_grad_hess(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective, gradient and Hessian at ``beta``."""
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


def null_intercept(family: Family, problem: PanelProblem) -> float:
    """Maximum-likelihood intercept of the model with no covariates.

    Used to start Newton and as the reference model of D^2.
    """
    p = problem
    return family.null_intercept(p.y, p.offset_grid(), p.m, 1.0 if p.w is None else p.w)
