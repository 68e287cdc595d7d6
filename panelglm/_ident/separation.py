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
* :func:`~panelglm._ident.certificate.separating_cells` -- any other direction,
  e.g. a covariate that is positive only where ``y = 0``; see
  :mod:`panelglm._ident.certificate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._data.layout import show_value
from .._data.panel import PanelData
from .._engine.objective import PanelProblem
from .._model.families import Family
from .._model.terms import ModelSpec, Term, _fe_codes
from .._util.lazy import compute, is_lazy


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
    if family.separation is None:
        return None
    y = problem.y
    if is_lazy(y):
        import dask.array as da

        s = da.where(y == 0, -1, 0).astype(np.int8)
        if family.separation == "both":
            s = da.where(y == problem.m, 1, s).astype(np.int8)
        return s if problem.w is None else da.where(problem.w <= 0, 0, s).astype(np.int8)
    s = np.zeros(y.shape, np.int8)  # one byte per cell, and no wider temporary
    s[y == 0] = -1
    if family.separation == "both":
        s[np.broadcast_to(y == problem.m, y.shape)] = 1
    if problem.w is not None:
        s[problem.w <= 0] = 0
    return s


def check_not_all_boundary(family: Family, problem: PanelProblem) -> None:
    """Reject a target at one boundary on every observed cell (no finite intercept)."""
    if family.separation is None:
        return
    y, obs = problem.y, None if problem.w is None else problem.w > 0
    sides = [(0.0, "0")]
    if family.separation == "both":
        sides.append((problem.m, "equal to the number of trials"))
    for k, (bound, what) in enumerate(sides):
        if obs is None and np.ndim(bound) == 0:
            # Every cell counts: some is off the boundary unless the (finite)
            # y's extremes both sit on it. No boolean grid; the extreme away
            # from the bound first (the maximum above 0, the minimum below the
            # trials), which settles it in one reduction unless y is all there.
            # (Each comparison made a bool on its own: a lazy one that ``or``
            # handed on would be computed a second time.)
            far, near = (np.max, np.min) if k == 0 else (np.min, np.max)
            off_any = bool(y.size) and (bool(far(y) != bound) or bool(near(y) != bound))
        else:
            off = np.broadcast_to(y != bound, y.shape)  # cells off this boundary
            off_any = bool(off.any() if obs is None else np.any(off & obs))
        if not off_any:
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
    # Over the levels of ``axes`` only: small, so a lazy array's is computed.
    return compute(arr.sum(axis=tuple(d for d in range(arr.ndim) if d not in axes)))[0]


def _broadcast(cells: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``cells`` over the grid, lazily where ``like`` (the cells' signs) is lazy."""
    if is_lazy(like):
        import dask.array as da

        chunks = [c if n > 1 else (1,) for c, n in zip(like.chunks, np.shape(cells), strict=True)]
        return da.broadcast_to(da.from_array(cells, chunks=chunks), like.shape, chunks=like.chunks)
    return np.broadcast_to(cells, like.shape)


def separated_levels(
    spec: ModelSpec,
    data: PanelData,
    family: Family,
    problem: PanelProblem,
    boundary: tuple[str, str] = ("y all 0", "y all at the trials"),
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
    boundary : tuple of str
        How the messages say a level's ``y`` sit at the lower or upper boundary.

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
        interior_high = s != 1 if family.separation == "both" else None
        if obs is not None:
            interior_low &= obs  # a Dask array has no in-place &: a new one, lazily
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
            if family.separation == "both":
                high = np.bincount(flat, _reduce(interior_high, axes).ravel(), n_lev)
                up = (count > 0) & (high == 0)
                side[up] = 1
                new |= up
            if not new.any():
                continue
            signs[i][new] = side[new]
            cells = _expand(new[codes], axes, problem.shape)
            obs = ~_broadcast(cells, s) if obs is None else obs & ~cells
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
            f"{_level_name(t, int(p))} ({boundary[0] if lv.sign[p] < 0 else boundary[1]})"
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
