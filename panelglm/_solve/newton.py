"""A damped Newton solver for smooth convex objectives.

The solver sees the objective only through :class:`SmoothObjective`, so it
knows nothing of families, panels or penalties. Its phases: evaluate loss,
gradient and Hessian; solve for the Newton step; check the Newton decrement;
halve the step until the objective does not get worse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
from sklearn.exceptions import ConvergenceWarning

from .._util.warn import warn

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


def _equilibrate(grad: np.ndarray, hess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``H`` scaled to a unit diagonal, ``g`` scaled alike, and the scales ``d``.

    A step ``u`` of the scaled system is ``u / d`` in the original one.
    """
    d = np.sqrt(np.abs(np.diag(hess)))
    d[~(np.isfinite(d) & (d > 0))] = 1.0
    scaled = hess / d[:, None]  # one P x P array: with many fixed-effect levels it is large
    scaled /= d
    return scaled, grad / d, d


def _newton_step(grad: np.ndarray, hess: np.ndarray) -> tuple[np.ndarray, bool]:
    """The Newton step, and whether it solves ``H d = -g`` (up to rounding).

    The Hessian is first scaled to a unit diagonal: curvatures that differ by
    many orders of magnitude (an offset of 50 on one firm makes its cells'
    weights e^50 times the others') then no longer make Cholesky fail on a
    matrix that is well conditioned in the right units. If it still fails,
    the least-squares step may leave part of the gradient unaddressed, which
    the caller must not mistake for convergence.
    """
    scaled, g, d = _equilibrate(grad, hess)
    # Cholesky factor and solve in one LAPACK call: the same dpotrf and dpotrs
    # as cho_factor and cho_solve (the same bits), without their checks.
    # Anything but a finite solution takes the checked path below.
    _, u, info = scipy.linalg.lapack.dposv(scaled, -g)
    if info == 0 and np.isfinite(u).all():
        return u / d, True
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(scaled), -g) / d, True
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
        warn(
            "The Hessian is singular or not positive definite (collinear covariates?); "
            "using a least-squares Newton step.",
            RuntimeWarning,
        )
    u = scipy.linalg.lstsq(scaled, -g)[0]
    # The step solves the system where the gradient lies in the Hessian's
    # range (collinear columns); elsewhere the Newton model says nothing.
    solved = np.linalg.norm(scaled @ u + g) <= 1e-6 * np.linalg.norm(g)
    return u / d, bool(solved)


def _damped_step(
    objective: SmoothObjective, coef: np.ndarray, loss: float, grad: np.ndarray, hess: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """A Levenberg-Marquardt step ``(H + mu D) d = -g`` that decreases the loss, if any.

    ``D`` is the Hessian's diagonal, so the damping respects each coefficient's
    scale; ``mu`` grows from 1e-6 until the step satisfies Armijo's condition.
    """
    scaled, g, d = _equilibrate(grad, hess)
    damped = np.empty_like(scaled)  # one P x P buffer for every damping
    diag = np.einsum("ii->i", damped)
    for mu in 10.0 ** np.arange(-6.0, 17.0):
        np.copyto(damped, scaled)
        diag += mu
        try:
            u = scipy.linalg.solve(damped, -g, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
            continue
        step = u / d
        trial = coef + step
        trial_loss = objective.loss(trial)
        # Armijo's sufficient decrease, and a strict one: rounding must not
        # let a step that changes nothing pass for progress.
        if trial_loss < loss and trial_loss <= loss + ARMIJO * float(grad @ step):
            return trial, trial_loss
    return None


def newton_solve(
    objective: SmoothObjective,
    coef0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    verbose: int = 0,
    penalty: Callable[[np.ndarray], float] | None = None,
    minimize_model: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    name: str = "Newton",
) -> NewtonResult:
    """Minimize ``objective`` (plus an optional non-smooth ``penalty``) by Newton's method.

    Parameters
    ----------
    objective : SmoothObjective
        Convex, twice differentiable objective.
    coef0 : ndarray
        Starting point.
    tol : float
        Converged when the decrease the Newton model predicts (half the
        squared Newton decrement without a penalty) is at most
        ``tol * max(|loss - ref|, min(1, |loss0 - ref|))``, where ``ref`` is
        the objective's ``saturated_loss`` if it has one (else 0) and
        ``loss0`` the starting objective; that last step is still taken,
        which makes the result accurate to about ``tol`` relative, thanks to
        Newton's quadratic convergence.
    max_iter : int
        Maximum number of Newton iterations.
    verbose : int
        Print one line per iteration if positive.
    penalty : callable, optional
        ``penalty(coef)``: a convex non-smooth term added to the objective
        (the L1 part of the elastic net); the line search runs on the sum.
    minimize_model : callable, optional
        ``minimize_model(grad, hess, coef)``: the minimizer of the Newton
        model ``g'd + d'Hd / 2`` plus ``penalty`` at ``coef + d`` (proximal
        Newton). Without it, the plain Newton step ``coef - H^-1 g``.
    name : str
        The solver's name in messages.

    Returns
    -------
    NewtonResult
        ``loss`` includes ``penalty``; ``grad`` and ``hess`` are those of the
        smooth part.

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached or the line search cannot decrease the
        objective before convergence.
    """

    def full(smooth: float, b: np.ndarray) -> float:
        return smooth if penalty is None else smooth + penalty(b)

    coef = np.array(coef0, dtype=np.float64)
    # Below the loss's own resolution no decrease can be seen: stop there.
    roundoff = max(ROUNDOFF, float(getattr(objective, "roundoff", 0.0)))
    tol = max(tol, roundoff)
    smooth, grad, hess = objective.loss_grad_hess(coef)
    loss = full(smooth, coef)
    if not np.isfinite(loss):
        raise FloatingPointError("The objective is not finite at the starting point.")
    if coef.size == 0:
        # Nothing to estimate (an offset-only model): the start is the optimum.
        return NewtonResult(coef, loss, grad, hess, 0, True)
    # Decreases are judged against the loss above its floor (for a GLM, the
    # saturated fit's: the deviance over twice the total weight), not the
    # loss itself, which sum(w y eta) can make as large as offsets and counts
    # like while the coefficients stay no more precise. The objective also
    # carries the units of y (a Poisson fit to flows in trillions has a
    # deviance near 1e-12), so an absolute floor of 1 would stop Newton after
    # its first step; the floor is the starting excess, capped at 1.
    ref = float(getattr(objective, "saturated_loss", 0.0))
    floor = min(1.0, abs(loss - ref))
    # A loss coarser than double precision (float32 work) is noisy in
    # proportion to the loss itself, which sum(w y eta) can make far larger
    # than the deviance: no decrease below that noise can be seen.
    coarse = roundoff > ROUNDOFF
    for it in range(1, max_iter + 1):
        if minimize_model is None:
            # A Hessian kept in factored form (absorbed effects) solves its own system.
            structured = hasattr(hess, "newton_step")
            newton, solved = hess.newton_step(grad) if structured else _newton_step(grad, hess)
            z = coef + newton
        else:
            z, solved = minimize_model(grad, hess, coef), True
        step = z - coef
        # First-order change of the full objective along the step (negative
        # unless converged); the model's predicted decrease adds the curvature.
        slope = float(grad @ step) + (0.0 if penalty is None else penalty(z) - penalty(coef))
        noise = roundoff * abs(loss) if coarse else 0.0
        if minimize_model is None and solved:
            # H d = -g, so the model's decrease is -g'd / 2 (half the squared
            # Newton decrement), free of the rounding of d'Hd when the
            # curvatures span many orders of magnitude.
            predicted = -0.5 * slope
        else:
            predicted = -(slope + 0.5 * float(step @ hess @ step))
        # A step that does not solve the Newton system, or a model that
        # rounding makes predict an increase, is no evidence of a minimum.
        done = solved and abs(predicted) <= max(tol * max(floor, abs(loss - ref)), noise)
        t, accepted = 1.0, False
        # A direction along which the objective does not decrease (rounding in a
        # numerically singular Hessian can make the least-squares step one) would
        # pass Armijo's test with an unchanged loss, step after step, until
        # max_iter: Levenberg-Marquardt steps below take over instead.
        searching = done or slope < 0 or minimize_model is not None
        for k in range(MAX_HALVINGS if searching else 0):
            # The full step is almost always taken, so it is evaluated with its
            # gradient and Hessian in one pass over the data; shorter steps
            # only need the loss.
            if k == 0:
                trial = z  # the full step keeps a proximal model's exact zeros
                trial_smooth, trial_grad, trial_hess = objective.loss_grad_hess(trial)
            else:
                trial = coef + t * step
                trial_smooth = objective.loss(trial)
            trial_loss = full(trial_smooth, trial)
            # Near the optimum the predicted decrease is below rounding noise,
            # so only "not worse" is asked of the final step.
            bound = loss + roundoff * max(1.0, abs(loss)) if done else loss + ARMIJO * t * slope
            if trial_loss <= bound:
                accepted = True
                break
            if done:
                break
            t *= 0.5
        if verbose:
            print(
                f"[{name}] iter {it:3d}  loss {loss:.12g}  "
                f"predicted decrease {predicted:.3e}  step {t:g}"
            )
        if accepted:
            coef, loss = trial, trial_loss
            if t == 1.0:
                grad, hess = trial_grad, trial_hess
            else:
                grad, hess = objective.loss_grad_hess(coef)[1:]
        if done:
            return NewtonResult(coef, loss, grad, hess, it, True)
        if not accepted and not done and minimize_model is None and not structured:
            # Newton's model is wrong far from the minimum when rounding hides
            # curvatures many orders of magnitude below the largest (the
            # Hessian is then numerically singular): Levenberg-Marquardt steps,
            # ever closer to scaled gradient descent, find a decrease instead.
            found = _damped_step(objective, coef, loss, grad, hess)
            if found is not None:
                coef, loss = found
                grad, hess = objective.loss_grad_hess(coef)[1:]
                continue
        if not accepted:
            warn(
                f"{name} line search could not decrease the objective after {MAX_HALVINGS} "
                f"halvings (iteration {it}, gradient max-norm {np.max(np.abs(grad)):.3e}); "
                "the result may be inaccurate.",
                ConvergenceWarning,
            )
            return NewtonResult(coef, loss, grad, hess, it, False)
    warn(
        f"{name} did not converge in max_iter={max_iter} iterations (gradient max-norm "
        f"{np.max(np.abs(grad)):.3e}); increase max_iter or tol.",
        ConvergenceWarning,
    )
    return NewtonResult(coef, loss, grad, hess, max_iter, False)
