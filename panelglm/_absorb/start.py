"""Where Newton starts with absorbed effects: a few sweeps over the effects alone.

From the null model's constant the Newton steps over (covariates, effects)
are long and halved; after a few updates of each effect in turn (the
covariates at zero) they start near the effects' optimum and are full.
"""

from __future__ import annotations

import numpy as np

from .._engine.objective import PanelProblem, null_intercept
from .._model.families import Family
from .effects import AbsorbedEffects

# Sweeps over the effects before Newton starts: closed-form ones (Poisson)
# are cheap and exact; a level's Newton step costs a pass of the family's
# derivatives, and one sweep of them already makes Newton's first step full.
START_SWEEPS = 3
NEWTON_SWEEPS = 1
# The largest linear predictor the closed-form sweeps exponentiate (exp(709)
# is double's limit).
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
    if fam.curvature_is_mean:
        wy = effects.reduce(problem.weighted(np.asarray(problem.y, dtype=np.float64)))

    def level_sums(r: int, arr: np.ndarray) -> np.ndarray:
        other = tuple(d for d in range(eta.ndim) if d not in effects.axes[r])
        return np.broadcast_to(problem.weighted(arr), eta.shape).sum(axis=other)

    buf = np.empty_like(eta) if fam.curvature_is_mean else None

    for _ in range(START_SWEEPS if fam.curvature_is_mean else NEWTON_SWEEPS):
        for r in range(len(a)):
            if fam.curvature_is_mean:
                np.minimum(eta, EXP_MAX, out=buf)
                mu = level_sums(r, np.exp(buf, out=buf))
                ok = (wy[r] > 0) & (mu > 0)
                step = np.zeros_like(mu)
                step[ok] = np.log(wy[r][ok] / mu[ok])
            else:
                g, h = fam.grad_hess(problem.y, eta, problem.m)
                num, den = level_sums(r, g), -level_sums(r, h)
                step = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
                np.clip(step, -MAX_START_STEP, MAX_START_STEP, out=step)
            a[r] += step
            eta += effects.broadcastable(r, step)
    return a
