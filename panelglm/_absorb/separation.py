"""Separation by a direction of the covariates and absorbed effects (ppmlhdfe's "ir" check).

A covariate that is positive only where ``y = 0`` (within the effects' levels)
pushes those cells' linear predictor to the boundary: their maximum-likelihood
fit is at infinity, and the rest is found by dropping them. As without absorbed
effects (:mod:`panelglm._ident.certificate`), Newton's last step reveals it (it
still moves those cells by about one unit), and the iterative rectifier of
Correia, Guimaraes & Zylkin (2021) certifies it: a direction of the
covariates and effects that is zero on the cells off the boundary and points
to the boundary on the separated ones. Its least-squares fits are solved
through the same factored Hessian as the Newton steps, with weights that make
the cells off the boundary count :data:`INTERIOR_WEIGHT` times more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._ident.certificate import RECTIFIER_MAX_ITER, STEP_TRIGGER, ZERO_TOL
from .._ident.separation import boundary_signs
from .effects import EffectSystem
from .ident import observed
from .objective import AbsorbedHessian, AbsorbedObjective, cross_blocks

# Weight of a cell off the boundary against one on it in the rectifier's
# least squares: large enough that the fit there is zero to about its inverse
# (ppmlhdfe's device), small enough to keep the effects' solves well scaled.
INTERIOR_WEIGHT = 1e8
# A fit off the boundary larger than this, relative to the largest on it, is
# no certificate: the direction is only nearly in the null space.
INTERIOR_TOL = 1e-5


def separated_cells(
    objective: AbsorbedObjective, result: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """Cells separated by a direction of the coefficients, certified; ``None`` if none.

    Parameters
    ----------
    objective : AbsorbedObjective
        The solve's objective.
    result : NewtonResult
        The converged solve (its gradient and factored Hessian).

    Returns
    -------
    (cells, gamma) or None
        The separated cells (a boolean grid) and the covariates' part of the
        certifying direction.
    """
    family, problem = objective.family, objective.problem
    s = boundary_signs(family, problem)
    if s is None or not s.any():
        return None
    step, _ = result.hess.newton_step(result.grad)
    push = s * objective.eta(step, offset=False)
    if not np.any(push > STEP_TRIGGER):
        return None  # the common case: a converged step moves no cell
    obs = observed(problem)
    boundary = obs & (s != 0)
    interior = obs & (s == 0)
    omega = np.where(interior, INTERIOR_WEIGHT, np.where(boundary, 1.0, 0.0))
    design, effects = objective.design, objective.effects
    hess = AbsorbedHessian(
        design.hessian(omega),
        cross_blocks(design, omega, effects),
        EffectSystem(effects, omega),
        objective.rtol,
        [None, None],
    )
    u = np.where(boundary, np.clip(push, 0.0, None), 0.0)
    start = float(u.max())
    for _ in range(RECTIFIER_MAX_ITER):
        target = omega * s * u
        rhs = np.concatenate([design.gradient(target), effects.join(effects.reduce(target))])
        gamma = hess.newton_step(-rhs)[0]
        fit = objective.eta(gamma, offset=False)
        z = np.where(boundary, s * fit, 0.0)
        zmax = float(z.max())
        if zmax <= ZERO_TOL * start:
            return None  # the target shrank to nothing: no separation
        if np.max(np.abs(fit[interior]), initial=0.0) > INTERIOR_TOL * zmax:
            return None  # only nearly a direction of separation
        z[np.abs(z) <= ZERO_TOL * zmax] = 0.0
        if z.min() >= 0.0:
            return z > 0, gamma[: objective.n_beta]
        u = np.maximum(z, 0.0)
    return None
