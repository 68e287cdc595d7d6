"""The Newton solver on small objectives with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from panelglm._newton import newton_solve


class Quadratic:
    """0.5 (x - c)' A (x - c): Newton's method converges in one step."""

    def __init__(self, A, c):
        self.A, self.c, self.calls = A, c, []

    def loss(self, x):
        d = x - self.c
        self.calls.append(x.copy())
        return 0.5 * d @ self.A @ d

    def loss_grad_hess(self, x):
        d = x - self.c
        return 0.5 * d @ self.A @ d, self.A @ d, self.A


class SoftPlusSum:
    """sum(log(1 + exp(x_i)) - t_i x_i): full Newton steps overshoot from far away."""

    def __init__(self, t):
        self.t = np.asarray(t, dtype=float)
        self.values = []

    def loss(self, x):
        v = float(np.sum(np.logaddexp(0, x) - self.t * x))
        self.values.append(v)
        return v

    def loss_grad_hess(self, x):
        p = expit(x)
        return self.loss(x), p - self.t, np.diag(p * (1 - p))


def test_quadratic_solved_exactly():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(4, 4))
    obj = Quadratic(B @ B.T + np.eye(4), rng.normal(size=4))
    res = newton_solve(obj, np.zeros(4), tol=1e-12, max_iter=10)
    assert res.converged
    np.testing.assert_allclose(res.coef, obj.c, rtol=1e-12)
    assert res.n_iter <= 2


def test_line_search_never_accepts_worse_objective(capsys):
    t = np.array([0.9, 0.1, 0.999])
    obj = SoftPlusSum(t)
    start = np.array([8.0, -9.0, 12.0])  # far from the optimum log(t / (1 - t))
    # The solver evaluates the full step's gradient and Hessian with its loss
    # even when the line search rejects it, so the accepted objective values
    # are read from the per-iteration lines (each is the loss of the iterate
    # the iteration starts from) and the result.
    res = newton_solve(obj, start, tol=1e-12, max_iter=100, verbose=1)
    assert res.converged
    np.testing.assert_allclose(res.coef, np.log(t / (1 - t)), rtol=1e-8)
    lines = capsys.readouterr().out.splitlines()
    accepted = [float(line.split("loss")[1].split()[0]) for line in lines] + [res.loss]
    assert len(accepted) == res.n_iter + 1
    # The lines show 12 significant digits; the last decreases are smaller.
    assert np.all(np.diff(accepted) <= 1e-11 * np.abs(accepted[:-1]))


def test_max_iter_warns():
    obj = SoftPlusSum([0.999999])
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        res = newton_solve(obj, np.array([30.0]), tol=1e-14, max_iter=2)
    assert not res.converged and res.n_iter == 2


def test_no_warning_when_converged():
    obj = SoftPlusSum([0.3, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        newton_solve(obj, np.zeros(2), tol=1e-10, max_iter=50)
