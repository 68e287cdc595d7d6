"""Where Newton starts with absorbed effects: a few sweeps over the effects alone.

From the null model's constant the Newton steps over (covariates, effects)
are long and halved; after a few updates of each effect in turn (the
covariates at zero) they start near the effects' optimum and are full.
"""

from __future__ import annotations

import numpy as np

from ._absorb import AbsorbedEffects
from ._families import Family
from ._objective import PanelProblem, null_intercept

# Sweeps over the effects before Newton starts, and the largest linear
# predictor they exponentiate (exp(709) is double's limit).
START_SWEEPS = 3
EXP_MAX = 700.0
# Largest change of one level's effect in one sweep of families without a
# closed-form update: a level's Newton step can overshoot far from its optimum.
MAX_START_STEP = 1.0


def absorbed_start(
    family: Family, problem: PanelProblem, effects: AbsorbedEffects, n_beta: int
) -> np.ndarray:
    """Newton's starting point: the covariates at zero, the effects near their optimum.

    Parameters
    ----------
    family : Family
        The GLM family.
    problem : PanelProblem
        Response, trials, weights and offset.
    effects : AbsorbedEffects
        The absorbed effects.
    n_beta : int
        Number of covariates.

    Returns
    -------
    ndarray of shape (n_beta + effects.total,)
    """
    coef = np.zeros(n_beta + effects.total)
    coef[n_beta : n_beta + effects.n_levels[0]] = null_intercept(family, problem)
    if problem.y is not None:
        coef[n_beta:] = effects.join(_sweeps(family, problem, effects, coef[n_beta:]))
    return coef


def _sweeps(
    fam: Family, problem: PanelProblem, effects: AbsorbedEffects, start: np.ndarray
) -> list[np.ndarray]:
    """A few updates of each effect in turn, the covariates at zero.

    Each level's own Newton step, given the other effects; with a log
    link and the mean as curvature (Poisson) the level's exact optimum,
    ``a_r += log(sum w y / sum w mu)``, instead. From there Newton starts
    near the effects' optimum and needs fewer (and full) steps.
    """
    a = [np.array(v) for v in effects.split(start)]
    eta = effects.expand(a) + problem.offset_grid()
    wy = effects.reduce(problem.weighted(np.asarray(problem.y, dtype=np.float64)))
    for _ in range(START_SWEEPS):
        for r in range(len(a)):
            if fam.curvature_is_mean:
                mu = effects.reduce(problem.weighted(np.exp(np.minimum(eta, EXP_MAX))))[r]
                ok = (wy[r] > 0) & (mu > 0)
                step = np.zeros_like(mu)
                step[ok] = np.log(wy[r][ok] / mu[ok])
            else:
                g, h = fam.grad_hess(problem.y, eta, problem.m)
                num = effects.reduce(problem.weighted(g))[r]
                den = -effects.reduce(np.broadcast_to(problem.weighted(h), eta.shape))[r]
                step = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
                np.clip(step, -MAX_START_STEP, MAX_START_STEP, out=step)
            a[r] += step
            eta += effects.broadcastable(r, step)
    return a
