"""What the identification screens take from the solver's own passes instead of passes of theirs.

Two screens reuse the solve's work where their result is implied by it:

* the collinearity screen reads Newton's first Hessian as the Gram matrix
  when every cell has the same curvature at the start (see
  :func:`~panelglm._ident.collinearity.gram_from_hessian`), and that first
  evaluation is then Newton's own;
* without weights, that first evaluation itself needs no pass over the
  cells: ``X' X`` of the model's design is kept per panel, and the rest are
  sums over the response (:meth:`PassReuse._value_from_gram`);
* the separation screen after the solve is settled by a bound on the next
  Newton step when it can be (see :mod:`panelglm._ident.bounds`).

:class:`PassReuse` holds the :class:`~panelglm._ident.identification.Identifier`'s
side of these.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from .._engine.problem import PanelProblem
from .bounds import curvature_floor, predictor_range
from .collinearity import column_sums, gram_from_hessian, weighted_gram

# X'X of a model's full design on a panel without weights depends on the panel
# and the model alone: it is kept per panel (up to _KEPT models, each of at
# most _MAX_KEPT_COEF coefficients), so that later fits of the same model (a
# grid search's) start without a pass over the cells.
_PANEL_GRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KEPT = 4
_MAX_KEPT_COEF = 1024


def panel_gram(data: Any, key: tuple, make: Callable[[], tuple]) -> tuple:
    """``make()`` (``X' X`` and ``X' 1``) for the model ``key`` on ``data``, once per panel."""
    grams = _PANEL_GRAMS.setdefault(data, {})
    if key not in grams:
        if len(grams) >= _KEPT:
            grams.pop(next(iter(grams)))
        grams[key] = make()
    return grams[key]


class PassReuse:
    """The identifier's reuse of the solver's passes (a mixin of ``Identifier``).

    It reads the identifier's ``spec``, ``data``, ``design``, ``family``,
    ``names``, ``kept`` and ``_center``, and keeps the columns' extremes in
    ``_ranges``.
    """

    _ranges: dict[str, tuple[float, float]] | None

    def _restricted_design(self) -> Any:
        raise NotImplementedError

    def _column_ranges(self) -> dict[str, tuple[float, float]]:
        """Smallest and largest value of each numeric column of the design, by name.

        From the extremes the panel keeps (the spec read them), less the
        column's shift: no pass over the cells.
        """
        if self._ranges is None:
            self._ranges = {}
            for term in self.spec.terms:
                if term.kind == "numeric":
                    lo, hi, _ = self.data.column_stats(term.source[0])
                    self._ranges[term.names[0]] = (lo - term.shift, hi - term.shift)
        return self._ranges

    def _gram(
        self, problem: PanelProblem, hess: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (centred) Gram matrix and uncentred diagonal of the collinearity screen.

        From ``hess``, Newton's Hessian at a start of constant curvature on
        the full design, where it can stand for it
        (:func:`~panelglm._ident.collinearity.gram_from_hessian`); otherwise
        from the Gram pass (:func:`~panelglm._ident.collinearity.weighted_gram`).
        """
        found = None
        if hess is not None:
            found = gram_from_hessian(self.design, hess, self._center, self._column_ranges())
        return weighted_gram(self.design, problem.w, self._center) if found is None else found

    def _start(self, problem: PanelProblem, make_objective: Callable) -> tuple | None:
        """The objective on the full design, its start, and its evaluation there if of use.

        ``(objective, coef0, value)``; ``value`` is ``loss_grad_hess(coef0)``
        when every cell of positive weight has the same curvature there, so
        that its Hessian is a positive multiple of ``X' W X`` (see
        :func:`gram_from_hessian`), else None. None (nothing made) where that
        cannot be: a link that is not canonical (the curvature depends on
        ``y``), an offset or trials that vary by cell.
        """
        fam = self.family
        if not fam.canonical or problem.offset is not None or np.ndim(problem.m) != 0:
            return None
        objective, coef0 = make_objective(self.design)
        lead = 1 if self._center else 0
        if (
            getattr(objective, "family", None) is not fam
            or getattr(objective, "roundoff", None) != 0.0  # float64 work only
            or np.any(coef0[lead:] != 0)
        ):
            return objective, coef0, None
        # eta is the start's intercept on every cell, so the curvature is one
        # number c there (the sweep's exp may differ by an ulp from lane to
        # lane: a rounding as small as the sums' own). A c that is far from one
        # would take the products' digits toward under- or overflow: not used.
        eta0 = np.array([coef0[0] if lead else 0.0])
        with np.errstate(all="ignore"):
            c = -float(np.ravel(fam.grad_hess(np.zeros(1), eta0, problem.m)[1])[0])
        if not 2.0**-64 <= c <= 2.0**64:
            return objective, coef0, None
        value = self._value_from_gram(problem, objective, coef0, eta0)
        if value is None:
            value = objective.loss_grad_hess(coef0)
        hess = value[2]
        if not (isinstance(hess, np.ndarray) and np.all(np.isfinite(hess))):
            return objective, coef0, None
        return objective, coef0, value

    def _value_from_gram(
        self, problem: PanelProblem, objective: Any, coef0: np.ndarray, eta0: np.ndarray
    ) -> tuple | None:
        """``loss_grad_hess(coef0)`` from the panel's ``X' X``, without a pass over the cells.

        Without weights, at a start where every cell's linear predictor is
        ``eta0``: the curvature is one number ``c``, so the Hessian is
        ``c X' X / N``; a canonical link's score is ``y - mean``, so the
        gradient is ``-(X' y + g0 X' 1) / N`` with ``g0`` the score at
        ``y = 0`` (``X' y`` is the pass over the response that the mean's
        gradients need anyway); the loss is a sum over the response alone.
        ``X' X`` is the panel's (:func:`panel_gram`). None where any of this
        does not hold.
        """
        fam, design = self.family, self.design
        engine = getattr(objective, "engine", None)
        if (
            problem.w is not None
            or getattr(objective, "alpha", None) != 0.0
            or not hasattr(engine, "response_score")
            or not hasattr(objective, "response_sum")
            or design.n_coef > _MAX_KEPT_COEF
        ):
            return None
        e0 = float(eta0[0])
        with np.errstate(all="ignore"):
            g, h = fam.grad_hess(np.array([0.0, 1.0]), np.full(2, e0), problem.m)
        g0, g1 = (float(v) for v in np.broadcast_to(g, (2,)))
        c = -float(np.broadcast_to(h, (2,))[0])
        if abs(g1 - g0 - 1.0) > 1e-12:  # the score is not y less the mean
            return None
        key = (tuple(self.names), tuple(self.spec.shifts.tolist()), self._center)
        gram, sums = panel_gram(
            self.data,
            key,
            lambda: (weighted_gram(design, None, center=False)[0], column_sums(design)),
        )
        scale = 1.0 / objective.total_weight
        total = objective.response_sum(
            lambda v, m: np.broadcast_to(fam.loglik(v, e0, m), np.shape(v))
        )
        if not np.isfinite(total):
            return None  # the pass says what the solver makes of it
        score = engine.response_score() + g0 * sums
        value = (-scale * total, -scale * score, (scale * c) * gram)
        objective.remember(coef0, value)
        return value

    def _first_objective(self, start: tuple, make_objective: Callable) -> tuple[Any, np.ndarray]:
        """The first solve's objective and start, from :meth:`_start`'s."""
        objective, coef0, value = start
        if self.kept.all():
            return objective, coef0
        design = self._restricted_design()
        restricted, start0 = make_objective(design)
        if (
            value is not None
            and hasattr(restricted, "remember")
            and not np.any(coef0[~self.kept])
            and np.array_equal(start0, coef0[self.kept])
        ):
            # The dropped columns' coefficients are zero at the start, so the
            # sums there are those of the full design, restricted.
            loss, grad, hess = value
            restricted.remember(
                start0, (loss, grad[self.kept], hess[np.ix_(self.kept, self.kept)])
            )
        return restricted, start0

    def _curvature_floor(
        self, objective: Any, problem: PanelProblem, coef: np.ndarray
    ) -> Callable[[], float] | None:
        """A lower bound of the curvature at ``coef``, for the screen after the solve.

        None where the objective's passes are not float64 (the bound's
        margin is for double precision's rounding) or it has no total weight.
        """
        if getattr(objective, "roundoff", None) != 0.0 or not hasattr(objective, "total_weight"):
            return None

        def floor() -> float:
            ranges = self._column_ranges()
            lo, hi = predictor_range(objective.design, coef, problem.offset, ranges)
            return curvature_floor(self.family, problem, lo, hi)

        return floor
