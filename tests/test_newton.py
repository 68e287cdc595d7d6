"""The Newton solver on small objectives with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

from panelglm._solve.newton import _newton_step, newton_solve


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


def test_curvatures_spanning_many_orders_reach_the_optimum_or_warn():
    """One firm with a log-exposure of 50: its cells' curvature is e^50 times the
    others', so the Hessian is numerically singular at the start. The solver must
    not take a least-squares step's small predicted decrease for convergence; it
    reaches the optimum (a trust-region reference on the dense problem agrees)."""
    import pandas as pd
    import scipy.optimize

    from panelglm import PanelPoissonRegressor

    rng = np.random.default_rng(0)
    f, t = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    df = pd.DataFrame({"firm": f.ravel(), "year": t.ravel()})
    df["size"] = rng.normal(size=5)[df.firm]
    df["x"] = rng.normal(size=20)
    y = rng.poisson(np.exp(0.3 + 0.5 * df.x + 0.2 * df["size"])).astype(float)
    df["off"] = np.where(df.firm == 0, 50.0, 0.0)
    Z = np.c_[np.ones(20), df[["size", "x"]]]
    off = df["off"].to_numpy()

    def nll(b):
        eta = Z @ b + off
        return np.sum(np.exp(eta) - y * eta)

    def grad(b):
        return Z.T @ (np.exp(Z @ b + off) - y)

    def hess(b):
        return Z.T @ (Z * np.exp(Z @ b + off)[:, None])

    ref = scipy.optimize.minimize(nll, np.zeros(3), jac=grad, hess=hess, method="trust-exact")
    assert ref.success
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the singular-Hessian notice
        warnings.simplefilter("error", ConvergenceWarning)
        est = PanelPoissonRegressor(dims=["firm", "year"], offset="off").fit(df, y)
    b = np.r_[est.intercept_, est.coef_]
    assert est.converged_
    np.testing.assert_allclose(b, ref.x, rtol=1e-6)
    assert nll(b) <= nll(ref.x) + 1e-9 * abs(nll(ref.x))
    assert np.max(np.abs(grad(b))) < 1e-6


def test_newton_step_solves_the_system_and_flags_what_it_cannot():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((60, 8))
    scale = np.logspace(0, 3, 8)  # curvatures over six orders of magnitude
    hess, grad = scale[:, None] * (a.T @ a) * scale, rng.standard_normal(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step, solved = _newton_step(grad, hess)
    assert solved
    np.testing.assert_allclose(step, np.linalg.solve(hess, -grad), rtol=1e-9)
    # Two equal columns: no Cholesky factor; the least-squares step is
    # flagged unless the gradient lies in the Hessian's range.
    singular = hess.copy()
    singular[:, 1], singular[1, :] = singular[:, 0], singular[0, :]
    with pytest.warns(RuntimeWarning, match="singular"):
        _, solved = _newton_step(grad, singular)
    assert not solved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the same notice, then the error
        with pytest.raises(ValueError, match="infs or NaNs"):
            _newton_step(grad, np.where(np.eye(8) == 1, np.nan, hess))


class BlindCurvature(Quadratic):
    """A quadratic whose Hessian misses the curvature along its last coordinate:
    the least-squares Newton step does not move it, so it is not a descent
    direction once the other coordinates are solved."""

    def loss_grad_hess(self, x):
        loss, grad, hess = super().loss_grad_hess(x)
        blind = hess.copy()
        blind[-1, :] = blind[:, -1] = 0.0
        return loss, grad, blind


def test_a_step_that_does_not_descend_hands_over_to_damped_steps():
    """Armijo's test passes an unchanged loss along a direction with a zero slope:
    the solver must not take such steps until max_iter, but find decreases. (It
    cannot certify convergence without a Hessian that solves its system.)"""
    A, c = np.diag([2.0, 3.0]), np.array([1.0, -2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the singular-Hessian notice
        with pytest.warns(ConvergenceWarning, match="max_iter=50"):
            res = newton_solve(BlindCurvature(A, c), np.zeros(2), tol=1e-12, max_iter=50)
    np.testing.assert_allclose(res.coef, c, atol=1e-5)
