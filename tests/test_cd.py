"""The proximal-Newton solver: its inner L1 quadratic solve and its outer loop."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import make_panel
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning

from panelglm import PanelDesign
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.families import POISSON
from panelglm._model.terms import build_design, build_model_spec
from panelglm._solve.cd import minimize_l1_quadratic, prox_newton_solve


def random_problem(seed, p=8, condition=1e3):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    hess = q @ np.diag(np.geomspace(1.0, condition, p)) @ q.T
    grad, coef = rng.normal(size=p) * 5, rng.normal(size=p)
    l1 = np.full(p, 6.0)  # large enough that every seed zeroes some coefficients
    l1[0] = 0.0  # an unpenalized coefficient, like the intercept
    return grad, hess, coef, l1


@pytest.mark.parametrize("seed", range(4))
def test_l1_quadratic_minimizer_meets_kkt_and_matches_a_bound_constrained_solve(seed):
    grad, hess, coef, l1 = random_problem(seed)
    z = minimize_l1_quadratic(grad, hess, coef, l1)
    model_grad = grad + hess @ (z - coef)
    zero = z == 0.0
    assert zero.any() and not zero[0]
    assert np.all(np.abs(model_grad[zero]) <= l1[zero] + 1e-10)
    np.testing.assert_allclose(model_grad[~zero], -l1[~zero] * np.sign(z[~zero]), atol=1e-10)

    # Independent reference: z = u - v with u, v >= 0 makes the problem smooth.
    p = len(z)

    def f(uv):
        d = uv[:p] - uv[p:] - coef
        return grad @ d + 0.5 * d @ hess @ d + l1 @ (uv[:p] + uv[p:])

    def fprime(uv):
        g = grad + hess @ (uv[:p] - uv[p:] - coef)
        return np.r_[g + l1, -g + l1]

    start = np.r_[np.maximum(coef, 0), np.maximum(-coef, 0)]
    bounds = [(0, None)] * p + [(0, None)] * p
    bounds[p] = (0, 0)  # the unpenalized coefficient needs only u (it may be negative)
    bounds[0] = (None, None)
    ref = minimize(
        f,
        start,
        jac=fprime,
        bounds=bounds,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
    )
    np.testing.assert_allclose(z, ref.x[:p] - ref.x[p:], atol=1e-5)


def poisson_objective(alpha_l2=0.0):
    df, dims, names, y = make_panel((6, 5, 4), seed=31, scale=0.5)
    data = PanelDesign(dims=dims, covariates=names).fit_transform(df)
    spec = build_model_spec(data, True, set())
    design, _ = build_design(spec, data)
    problem = PanelProblem(shape=data.shape, y=data.to_grid(y))
    pen = np.r_[0.0, np.ones(design.n_coef - 1)]
    return PenalizedObjective(design, POISSON, problem, alpha_l2, pen), pen


def test_outer_loop_never_increases_the_objective(capsys):
    objective, pen = poisson_objective(alpha_l2=0.01)
    far = np.r_[-3.0, np.full(len(pen) - 1, -1.5)]  # full Newton steps overshoot here
    result = prox_newton_solve(objective, 0.02 * pen, far, tol=1e-12, max_iter=100, verbose=1)
    printed = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"loss (\S+)", printed)]
    steps = [float(v) for v in re.findall(r"step (\S+)", printed)]
    assert result.converged and len(losses) >= 4
    assert min(steps) < 1.0  # the line search was exercised
    assert np.all(np.diff([*losses, result.loss]) <= 1e-13 * abs(result.loss))
    full = objective.loss(result.coef) + 0.02 * pen @ np.abs(result.coef)
    assert result.loss == pytest.approx(full, rel=1e-14)


def test_warns_when_max_iter_is_reached():
    objective, pen = poisson_objective()
    far = np.r_[0.0, np.full(len(pen) - 1, 1.5)]
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        result = prox_newton_solve(objective, 0.02 * pen, far, tol=1e-12, max_iter=2)
    assert not result.converged
