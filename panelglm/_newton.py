"""A damped Newton solver for smooth convex objectives.

The solver sees the objective only through :class:`SmoothObjective`, so it
knows nothing of families, panels or penalties. Its phases: evaluate loss,
gradient and Hessian; solve for the Newton step; check the Newton decrement;
halve the step until the objective does not get worse.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

# Armijo's sufficient-decrease constant: any small positive value works for
# Newton steps; 1e-4 is the textbook choice (Nocedal & Wright, sec. 3.1).
ARMIJO = 1e-4
# Relative resolution of a sum of many double-precision terms: two objective
# values closer than this cannot be ordered, so a converged Newton step within
# it counts as "not worse" (its true decrease, about lambda^2 / 2, is below it).
ROUNDOFF = 1e-13
# 2**-40 ~ 1e-12: a step that small no longer moves double-precision
# coefficients of order one, so halving further cannot help.
MAX_HALVINGS = 40


class SmoothObjective(Protocol):
    """What the solver needs from an objective."""

    def loss(self, coef: np.ndarray) -> float:
        """Objective value (``inf`` where undefined)."""

    def loss_grad_hess(self, coef: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Objective value, gradient and Hessian."""

    # Optional: ``roundoff``, the relative resolution of ``loss`` when it is
    # coarser than double precision's (e.g. computed from float32 arrays).


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of :func:`newton_solve`.

    Attributes
    ----------
    coef : ndarray of shape (n_coef,)
        The minimizer found.
    loss : float
        Objective at ``coef``.
    grad : ndarray of shape (n_coef,)
        Gradient at the last iterate where it was evaluated.
    hess : ndarray of shape (n_coef, n_coef)
        Hessian at that iterate.
    n_iter : int
        Newton iterations performed.
    converged : bool
        Whether the Newton decrement fell below the tolerance.
    """

    coef: np.ndarray
    loss: float
    grad: np.ndarray
    hess: np.ndarray
    n_iter: int
    converged: bool


def _newton_step(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), -grad)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        warnings.warn(
            "The Hessian is singular or not positive definite (collinear covariates?); "
            "using a least-squares Newton step.",
            RuntimeWarning,
            stacklevel=3,
        )
        return scipy.linalg.lstsq(hess, -grad)[0]


def newton_solve(
    objective: SmoothObjective,
    coef0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    verbose: int = 0,
) -> NewtonResult:
    """Minimize ``objective`` by Newton's method with step halving.

    Parameters
    ----------
    objective : SmoothObjective
        Convex, twice differentiable objective.
    coef0 : ndarray
        Starting point.
    tol : float
        Converged when half the squared Newton decrement (the decrease a
        Newton step predicts) is at most ``tol * max(|loss|, min(1, |loss0|))``
        (``loss0`` the starting objective); that last step is still taken,
        which makes the result accurate to about ``tol`` relative, thanks to
        Newton's quadratic convergence.
    max_iter : int
        Maximum number of Newton iterations.
    verbose : int
        Print one line per iteration if positive.

    Returns
    -------
    NewtonResult

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached or the line search cannot decrease the
        objective before convergence.
    """
    coef = np.array(coef0, dtype=np.float64)
    # Below the loss's own resolution no decrease can be seen: stop there.
    roundoff = max(ROUNDOFF, float(getattr(objective, "roundoff", 0.0)))
    tol = max(tol, roundoff)
    loss, grad, hess = objective.loss_grad_hess(coef)
    if not np.isfinite(loss):
        raise FloatingPointError("The objective is not finite at the starting point.")
    # The objective carries the units of y (a Poisson fit to flows in
    # trillions has a loss near 1e-12), so an absolute floor of 1 would stop
    # Newton after its first step; the floor is the starting objective's own
    # size instead, capped at 1 so well-scaled problems stop as before.
    floor = min(1.0, abs(loss))
    for it in range(1, max_iter + 1):
        step = _newton_step(grad, hess)
        decrement = float(-grad @ step)  # lambda^2 = g' H^-1 g
        done = 0.5 * decrement <= tol * max(floor, abs(loss))
        t, accepted = 1.0, False
        for k in range(MAX_HALVINGS):
            trial = coef + t * step
            # The full step is almost always taken, so it is evaluated with its
            # gradient and Hessian in one pass over the data; shorter steps
            # only need the loss.
            if k == 0:
                trial_loss, trial_grad, trial_hess = objective.loss_grad_hess(trial)
            else:
                trial_loss = objective.loss(trial)
            # Near the optimum the predicted decrease is below rounding noise,
            # so only "not worse" is asked of the final step.
            bound = (
                loss + roundoff * max(1.0, abs(loss)) if done else (loss - ARMIJO * t * decrement)
            )
            if trial_loss <= bound:
                accepted = True
                break
            if done:
                break
            t *= 0.5
        if verbose:
            print(
                f"[newton] iter {it:3d}  loss {loss:.12g}  decrement {decrement:.3e}  step {t:g}"
            )
        if accepted:
            coef = trial
            if t == 1.0:
                loss, grad, hess = trial_loss, trial_grad, trial_hess
            else:
                loss, grad, hess = objective.loss_grad_hess(coef)
        if done:
            return NewtonResult(coef, loss, grad, hess, it, True)
        if not accepted:
            warnings.warn(
                f"Newton line search could not decrease the objective after {MAX_HALVINGS} "
                f"halvings (iteration {it}, gradient max-norm {np.max(np.abs(grad)):.3e}); "
                "the result may be inaccurate.",
                ConvergenceWarning,
                stacklevel=2,
            )
            return NewtonResult(coef, loss, grad, hess, it, False)
    warnings.warn(
        f"Newton did not converge in max_iter={max_iter} iterations (gradient max-norm "
        f"{np.max(np.abs(grad)):.3e}); increase max_iter or tol.",
        ConvergenceWarning,
        stacklevel=2,
    )
    return NewtonResult(coef, loss, grad, hess, max_iter, False)
