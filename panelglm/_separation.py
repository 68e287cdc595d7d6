"""Separation: cells whose likelihood is maximized only at an infinite coefficient.

A Poisson cell with ``y = 0`` (a binomial cell with ``y = 0`` or ``y = M``) is
*separated* when some direction of the coefficients pushes its linear
predictor to the boundary without changing the fit anywhere else
(Santos Silva & Tenreyro 2010; Correia, Guimaraes & Zylkin 2021). The maximum
likelihood estimate then does not exist; that of the other cells does, and is
found by dropping the separated cells. Two detectors:

* :func:`separated_levels` -- the "fe" check of ppmlhdfe: a level of a fixed
  effect (or categorical covariate) whose observed ``y`` are all at the same
  boundary. Exact and cheap; run before the solve.
* :func:`separating_cells` -- any other direction, e.g. a covariate that is
  positive only where ``y = 0``. Newton's last step reveals it (it still moves
  the separated cells' linear predictor by about one unit, where a converged
  fit moves nothing), and the "iterative rectifier" of Correia et al.
  certifies it exactly before anything is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from ._collinearity import null_space_basis
from ._factored import FactoredDesign
from ._families import Family
from ._layout import show_value
from ._objective import PanelProblem
from ._panel import PanelData
from ._terms import ModelSpec, Term, _fe_codes

# At a separated direction each Newton step moves the separated cells' linear
# predictor by about -1 (g / h = -mu / mu for Poisson, -1 / (1 - p) for the
# logit), however close to convergence the objective looks; in a converged fit
# without separation the last step is of order sqrt(tol). Half a unit tells
# the two apart with a wide margin on both sides.
STEP_TRIGGER = 0.5
# Iterations of the rectifier. Started from Newton's own direction it usually
# certifies separation in one or two; the bound only limits the cost (two
# passes over the grid each) of an inconclusive search.
RECTIFIER_MAX_ITER = 50
# Relative size below which an entry of the rectifier's fit counts as zero.
ZERO_TOL = 1e-6


@dataclass(frozen=True)
class SeparatedLevels:
    """Levels of one indicator term dropped as separated.

    Attributes
    ----------
    term : int
        Position of the term in ``ModelSpec.terms``.
    sign : ndarray of int8
        Per level of the term (all levels, reference included): ``-1`` if
        its ``y`` are all zero (the mean tends to 0), ``+1`` if all equal to
        the trials (the mean tends to M), ``0`` if not separated.
    """

    term: int
    sign: np.ndarray


def boundary_signs(family: Family, problem: PanelProblem) -> np.ndarray | None:
    """Per cell: -1 at the lower boundary of ``y``, +1 at the upper one, else 0.

    ``None`` for a family without boundary (Gaussian). Cells of zero weight get 0.
    """
    if family.name not in ("poisson", "binomial"):
        return None
    y = problem.y
    s = np.zeros(y.shape, np.int8)  # one byte per cell, and no wider temporary
    s[y == 0] = -1
    if family.name == "binomial":
        s[np.broadcast_to(y == problem.m, y.shape)] = 1
    if problem.w is not None:
        s[problem.w <= 0] = 0
    return s


def check_not_all_boundary(family: Family, problem: PanelProblem) -> None:
    """Reject a target at one boundary on every observed cell (no finite intercept)."""
    if family.name not in ("poisson", "binomial"):
        return
    y, obs = problem.y, None if problem.w is None else problem.w > 0
    sides = [(0.0, "0")]
    if family.name == "binomial":
        sides.append((problem.m, "equal to the number of trials"))
    for bound, what in sides:
        off = np.broadcast_to(y != bound, y.shape)  # cells off this boundary
        if not (off.any() if obs is None else np.any(off & obs)):
            raise ValueError(
                f"The target y is {what} on every row (of positive weight): the "
                f"{family.name} model's intercept would be infinite, so it has no maximum "
                "likelihood estimate."
            )


def _term_levels(
    term: Term, spec: ModelSpec, data: PanelData
) -> tuple[tuple[int, ...], np.ndarray]:
    """Axes of an indicator term and, over them, each cell's level position."""
    if term.kind == "fixed_effect":
        axes, codes = _fe_codes(term, data)
        return axes, codes + 1 if term.drop_first else codes
    codes, axes = data.category_codes(term.source[0])
    return axes, codes


def _n_levels(term: Term) -> int:
    return int(np.prod([len(lv) for lv in term.levels]))


def _level_name(term: Term, pos: int) -> str:
    combo = np.unravel_index(pos, tuple(len(lv) for lv in term.levels))
    return ", ".join(
        f"{d}={show_value(lv[i])}"
        for d, lv, i in zip(term.source, term.levels, combo, strict=True)
    )


def _expand(arr: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    return arr.reshape([n if d in axes else 1 for d, n in enumerate(shape)])


def _reduce(arr: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return arr.sum(axis=tuple(d for d in range(arr.ndim) if d not in axes))


def separated_levels(
    spec: ModelSpec, data: PanelData, family: Family, problem: PanelProblem
) -> tuple[list[SeparatedLevels], np.ndarray | None, list[str]]:
    """Find levels of indicator terms whose observed ``y`` all sit at one boundary.

    Dropping a level's cells can leave a level of another term with only
    boundary values (binomial), so the search repeats until nothing changes.

    Parameters
    ----------
    spec : ModelSpec
        The model's terms; fixed effects and categorical covariates are checked.
    data : PanelData
        The rows.
    family : Family
        Poisson or binomial (others have no boundary).
    problem : PanelProblem
        Response, trials and weights on the grid.

    Returns
    -------
    levels : list of SeparatedLevels
        The separated levels of each term that has any.
    dropped : ndarray of bool or None
        Cells to drop (``None`` if there are none).
    messages : list of str
        One line per term, naming its separated levels.
    """
    terms = [(i, t) for i, t in enumerate(spec.terms) if t.kind in ("fixed_effect", "categorical")]
    s = boundary_signs(family, problem) if terms else None
    if s is None:
        return [], None, []
    # Without weights every cell is observed (a balanced panel).
    obs = None if problem.w is None else problem.w > 0
    layouts = {i: _term_levels(t, spec, data) for i, t in terms}
    signs = {i: np.zeros(_n_levels(t), np.int8) for i, t in terms}
    changed = True
    while changed:
        changed = False
        interior_low = s != -1  # cells that keep a level off the lower boundary
        interior_high = s != 1 if family.name == "binomial" else None
        if obs is not None:
            interior_low &= obs
            if interior_high is not None:
                interior_high &= obs
        for i, _ in terms:
            axes, codes = layouts[i]
            flat = codes.ravel()
            n_lev = signs[i].size
            count = (
                np.bincount(flat, minlength=n_lev) * (s.size // max(flat.size, 1))
                if obs is None
                else np.bincount(flat, _reduce(obs, axes).ravel(), n_lev)
            )
            low = np.bincount(flat, _reduce(interior_low, axes).ravel(), n_lev)
            new = (count > 0) & (low == 0)
            side = np.where(new, -1, 0).astype(np.int8)
            if family.name == "binomial":
                high = np.bincount(flat, _reduce(interior_high, axes).ravel(), n_lev)
                up = (count > 0) & (high == 0)
                side[up] = 1
                new |= up
            if not new.any():
                continue
            signs[i][new] = side[new]
            cells = _expand(new[codes], axes, problem.shape)
            obs = ~np.broadcast_to(cells, problem.shape) if obs is None else obs & ~cells
            changed = True
            break  # recount every term on the smaller sample
    levels = [SeparatedLevels(i, sg) for i, sg in signs.items() if sg.any()]
    if not levels:
        return [], None, []
    before = True if problem.w is None else problem.w > 0
    messages = []
    for lv in levels:
        t = spec.terms[lv.term]
        pos = np.flatnonzero(lv.sign)
        what = "fixed effect" if t.kind == "fixed_effect" else "categorical covariate"
        shown = "; ".join(
            f"{_level_name(t, int(p))} (y all {'0' if lv.sign[p] < 0 else 'at the trials'})"
            for p in pos[:10]
        )
        more = f"; and {pos.size - 10} more" if pos.size > 10 else ""
        messages.append(f"{pos.size} level(s) of {what} {':'.join(t.source)!r}: {shown}{more}")
    return levels, before & ~obs, messages


@dataclass(frozen=True)
class UnobservedLevels:
    """Levels of one indicator term that no row of positive weight had at fit.

    Attributes
    ----------
    term : int
        Position of the term in ``ModelSpec.terms``.
    mask : ndarray of bool
        Per level of the term (reference included): True if unobserved.
    """

    term: int
    mask: np.ndarray


def unobserved_levels(
    spec: ModelSpec, data: PanelData, problem: PanelProblem
) -> list[UnobservedLevels]:
    """Levels of fixed effects and categorical covariates without any row of positive weight.

    In an unbalanced panel a tuple fixed effect has level combinations that no
    row has; their effect is not estimated (NaN), so a prediction there must
    not quietly use zero.
    """
    if problem.w is None:
        return []  # every cell is observed, so is every level
    obs = problem.w > 0
    out = []
    for i, t in enumerate(spec.terms):
        if t.kind not in ("fixed_effect", "categorical"):
            continue
        axes, codes = _term_levels(t, spec, data)
        count = np.bincount(codes.ravel(), _reduce(obs, axes).ravel(), _n_levels(t))
        if np.any(count == 0):
            out.append(UnobservedLevels(i, count == 0))
    return out


def check_observed(levels: list[UnobservedLevels], spec: ModelSpec, data: PanelData) -> None:
    """Raise if a row of ``data`` sits at a level that had no row when fitting."""
    for lv in levels:
        t = spec.terms[lv.term]
        axes, codes = _term_levels(t, spec, data)
        pos = codes.ravel()[data.grid.flat_index(axes)]
        bad = np.flatnonzero(lv.mask[pos])
        if bad.size:
            shown = "; ".join(_level_name(t, int(p)) for p in pd.unique(pos[bad])[:10])
            what = "fixed effect" if t.kind == "fixed_effect" else "categorical covariate"
            raise ValueError(
                f"{bad.size} row(s) are at level(s) of {what} {':'.join(t.source)!r} that had "
                f"no row of positive weight when fitting ({shown}), so their effect was "
                "not estimated and the model cannot predict for them."
            )


def limit_signs(
    levels: list[SeparatedLevels], spec: ModelSpec, data: PanelData
) -> np.ndarray | None:
    """Per cell of ``data``: the boundary its mean tends to at a separated level.

    ``-1`` (mean 0), ``+1`` (mean M) or ``0`` (not at a separated level);
    ``None`` when the model has no separated level.
    """
    if not levels:
        return None
    out = np.zeros(data.shape, np.int8)
    for lv in levels:
        axes, codes = _term_levels(spec.terms[lv.term], spec, data)
        sub = _expand(lv.sign[codes], axes, data.shape)
        out = np.where(sub != 0, sub, out)
    return out


def _pushes_to_boundary(objective: Any, family: Family, step: np.ndarray) -> bool:
    """Whether ``step`` moves some boundary cell's linear predictor toward it by enough."""

    def count(sub: PanelProblem, eta: np.ndarray) -> tuple[float]:
        s = boundary_signs(family, sub)
        eta -= sub.offset_grid()  # X step, the offset of chunk_sums' eta removed
        return (float(np.count_nonzero(s * eta > STEP_TRIGGER)),)

    return objective.chunk_sums(step, count)[0] > 0


def separating_cells(
    design: FactoredDesign,
    family: Family,
    problem: PanelProblem,
    grad: np.ndarray,
    hess: np.ndarray,
    priority: np.ndarray,
    objective: Any = None,
) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """Cells separated by a direction of the coefficients, certified exactly.

    Parameters
    ----------
    design : FactoredDesign
        The design of the solve (collinear columns already removed).
    family : Family
        Poisson or binomial.
    problem : PanelProblem
        Response, trials and weights.
    grad, hess : ndarray
        Gradient and Hessian of the objective at the solution.
    priority : ndarray of int
        Priority order of the coefficients, for the null-space basis.
    objective : PenalizedObjective, optional
        The solve's objective; when given, Newton's last step is screened
        chunk by chunk on it, without an array over all cells.

    Returns
    -------
    cells : ndarray of bool or None
        Separated cells, if a certificate was found.
    direction : ndarray or None
        The certifying direction ``gamma``: ``X gamma`` is zero on the cells
        off the boundary and points to the boundary on the separated ones.
    suspicious : bool
        Whether Newton's last step pointed to separation that the rectifier
        could not certify within its iteration budget.
    """
    if family.name not in ("poisson", "binomial"):
        return None, None, False
    try:
        # As in the solver: Cholesky's accuracy does not suffer from the
        # columns' scales (a timestamp next to an intercept), a generic
        # condition estimate would.
        step = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), grad)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        step = -scipy.linalg.lstsq(hess, grad)[0]
    if objective is not None and not _pushes_to_boundary(objective, family, step):
        return None, None, False  # the common case, settled without N-sized arrays
    s = boundary_signs(family, problem)
    if not s.any():
        return None, None, False
    push = s * design.linear_predictor(step)
    if not np.any(push > STEP_TRIGGER):
        return None, None, False

    w = np.ones(problem.shape) if problem.w is None else problem.w
    interior = (s == 0) & (w > 0)
    # Directions that leave every interior cell unchanged: X_I gamma = 0.
    if interior.any():
        basis = null_space_basis(design.hessian(np.where(interior, w, 0.0)), priority)
    else:
        basis = np.eye(design.n_coef)
    if basis.shape[1] == 0:
        return None, None, False
    w_b = np.where(s != 0, w, 0.0)
    gram_b = basis.T @ design.hessian(w_b) @ basis
    try:
        factor = scipy.linalg.cho_factor(gram_b)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None, None, True
    # The iterative rectifier: fit a non-negative target on the boundary cells
    # by least squares within those directions, clip the fit at zero, repeat.
    # A fit that is already non-negative is a certificate of separation.
    u = np.clip(push, 0.0, None) * (s != 0)
    start = float(u.max())
    for _ in range(RECTIFIER_MAX_ITER):
        rhs = basis.T @ design.gradient(w_b * s * u)
        gamma = basis @ scipy.linalg.cho_solve(factor, rhs)
        xg = design.linear_predictor(gamma)
        z = np.where(s != 0, s * xg, 0.0)
        zmax = float(np.max(z))
        if zmax <= ZERO_TOL * start:
            return None, None, False  # the target shrank to nothing: no separation
        tiny = ZERO_TOL * zmax
        if np.max(np.abs(xg[interior]), initial=0.0) > tiny:
            break  # only nearly in the null space: not an exact certificate
        z[np.abs(z) <= tiny] = 0.0
        if z.min() >= 0.0:
            return z > 0, gamma, False
        u = np.maximum(z, 0.0)
    return None, None, True
