"""The estimators' fit, inference and prediction with absorbed fixed effects.

Mixed into :class:`~panelglm._estimators.base.PanelGLMBase`: when the data has absorbed
effects, ``fit`` comes here. The covariates keep the base's factored design
(without an intercept: the effects hold the constant); the effects are solved
through their structure (:mod:`panelglm._absorb.objective`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._data.layout import CHUNK_CELLS
from .._data.panel import PanelData
from .._engine.objective import FitStatistics, PanelProblem, null_intercept
from .._ident.kept import expand, restrict_design
from .._inference.corrections import SmallSample
from .._inference.covariance import coef_covariance, invert_information
from .._model.blocks import Axes
from .._model.families import full_loglik, pearson_chi2, profiled_gaussian_loglik
from .._model.terms import build_design, build_model_spec
from .._solve.newton import newton_solve
from .._util.threads import blas_threads
from .._util.warn import warn
from ..exceptions import CollinearityWarning, SeparationWarning
from .effects import AbsorbedEffects
from .ident import boundary_levels, collinear, count_to, effect_dof, observed
from .objective import AbsorbedHessian, AbsorbedObjective
from .scores import AbsorbedScores
from .separation import separated_cells
from .start import absorbed_start

# Rounds of the separation check after the solve: each drop of separated
# cells is followed by a new solve and check.
MAX_SEPARATION_ROUNDS = 5


def _effects_of(data: PanelData) -> AbsorbedEffects:
    axes = tuple(tuple(data.dims.index(d) for d in fe) for fe in data.absorb)
    names = tuple(":".join(str(d) for d in fe) for fe in data.absorb)
    return AbsorbedEffects(tuple(data.shape), axes, names)


def _level_index(data: PanelData, fe: tuple[str, ...]) -> pd.Index:
    """The level combinations of an effect's dimensions, in grid order."""
    levels = [data.levels[data.dims.index(d)] for d in fe]
    if len(fe) == 1:
        return pd.Index(levels[0], name=fe[0])
    return pd.MultiIndex.from_product(levels, names=list(fe))


class AbsorbedFit:
    """Fit, statistics and predictions of a model with absorbed effects (a mixin)."""

    def _fit_absorbed(self, data: PanelData, y: np.ndarray, w: np.ndarray | None) -> None:
        # The products here are of tall arrays with a few columns, many and
        # small: BLAS threads gain nothing on them and spin between calls.
        with blas_threads(1):
            self._fit_absorbed_body(data, y, w)

    def _fit_absorbed_body(self, data: PanelData, y: np.ndarray, w: np.ndarray | None) -> None:
        if self.l1_ratio > 0 and self.alpha > 0:
            raise ValueError(
                f"l1_ratio={self.l1_ratio!r} with absorb={list(data.absorb)!r}: the lasso and "
                "elastic net are not available with absorbed fixed effects (the ridge, "
                "l1_ratio=0, is). Use fixed_effects= for few levels, or l1_ratio=0."
            )
        aux = self._aux_columns()
        spec = build_model_spec(data, False, set(aux.values()), reference=True)
        clusters = self._cluster_axes(spec.dims, data.shape)
        design, order = build_design(spec, data)
        effects = _effects_of(data)
        problem = self._problem(data, y, w)
        self._check_response(data, problem)
        problem = self._drop_separated(data, problem, effects)
        base, dropped = design, set()
        for round_ in range(MAX_SEPARATION_ROUNDS + 1):
            start = absorbed_start(self.family, problem, effects, base.n_coef)
            obj = AbsorbedObjective(
                base, effects, self.family, problem, self.alpha, np.ones(base.n_coef), self.tol
            )
            # Dropping separated cells can leave a covariate without variation.
            kept = self._explained(obj, start, dropped)
            design = restrict_design(base, kept)
            if not kept.all():
                obj = AbsorbedObjective(
                    design,
                    effects,
                    self.family,
                    problem,
                    self.alpha,
                    np.ones(design.n_coef),
                    self.tol,
                )
                start = np.concatenate([start[: base.n_coef][kept], start[base.n_coef :]])
            result = newton_solve(
                obj, start, tol=self.tol, max_iter=self.max_iter, verbose=self.verbose
            )
            found = None
            if self.alpha == 0 and round_ < MAX_SEPARATION_ROUNDS:
                found = separated_cells(obj, result)
            if found is None:
                break
            cells, gamma = found
            scale = np.max(np.abs(gamma), initial=0.0)
            involved = [
                n for n, g in zip(design.names, gamma, strict=True) if abs(g) > 1e-6 * scale
            ]
            problem = self._drop_separated(data, problem, effects, cells, involved)
        self._set_absorbed(data, spec, order, kept, effects, obj, result, problem, clusters)

    def _explained(
        self, obj: AbsorbedObjective, start: np.ndarray, dropped: set[str]
    ) -> np.ndarray:
        """Covariates that the effects (and those before them) do not explain.

        From the Hessian at Newton's start, which the solve then reuses. Warns
        of those newly found (``dropped`` holds the names already reported,
        and is updated), or raises with ``collinear="raise"``.
        """
        design, effects = obj.design, obj.effects
        kept = np.ones(design.n_coef, dtype=bool)
        if self.alpha != 0 or not design.n_coef:
            return kept
        hess = obj.loss_grad_hess(start)[2]
        hess.projections()
        kept = collinear(hess.schur, hess.a)
        new = [n for n, k in zip(design.names, kept, strict=True) if not k and n not in dropped]
        if new:
            if self.collinear == "raise":
                raise ValueError(
                    f"Covariate(s) {new} are explained by the absorbed fixed effects "
                    "(and the covariates before them): they cannot be estimated."
                )
            warn(
                f"Covariate(s) {new} are collinear with the absorbed fixed effects "
                f"{list(effects.names)} (and the covariates before them) and were dropped.",
                CollinearityWarning,
            )
            dropped.update(new)
        return kept

    def _drop_separated(
        self,
        data: PanelData,
        problem: PanelProblem,
        effects: AbsorbedEffects,
        cells: np.ndarray | None = None,
        involved: list[str] | None = None,
    ) -> PanelProblem:
        """Drop separated cells (those given, then levels all at a boundary); warn."""
        first = cells is None
        if first:
            self._absorbed_signs = [
                np.zeros(effects.sub_shape(r), np.int8) for r in range(len(effects.axes))
            ]
            self.separated_rows_ = np.zeros(data.n_rows, dtype=bool)
        else:
            problem = self._zero_weight(data, problem, cells)
            warn(
                f"Separation: {int(np.count_nonzero(cells))} row(s) with y at a boundary of "
                f"the {self.family.name} model are separated by {involved} (with the "
                "absorbed effects) and were dropped: they are fitted perfectly only as the "
                "coefficients go to infinity.",
                SeparationWarning,
            )
        drop, signs = boundary_levels(self.family, problem, effects)
        for old, new in zip(self._absorbed_signs, signs, strict=True):
            old[old == 0] = new[old == 0]
        if drop is None:
            return problem
        n_rows = int(np.count_nonzero(drop & observed(problem)))
        counts = [int(np.count_nonzero(s)) for s in signs]
        where = ", ".join(f"{n} of {e!r}" for n, e in zip(counts, effects.names, strict=True) if n)
        warn(
            f"Separation: level(s) of absorbed fixed effects ({where}) have y all at a "
            f"boundary of the {self.family.name} model; their {n_rows} row(s) were dropped "
            "(their effect is infinite; predictions there are the limit).",
            SeparationWarning,
        )
        return self._zero_weight(data, problem, drop)

    def _zero_weight(
        self, data: PanelData, problem: PanelProblem, cells: np.ndarray
    ) -> PanelProblem:
        """``problem`` with ``cells`` of weight zero, marked in ``separated_rows_``."""
        self.separated_rows_ |= data.from_grid(cells).astype(bool)
        w = observed(problem).astype(np.float64) if problem.w is None else problem.w.copy()
        w[cells] = 0.0
        problem.w = w
        return problem

    def _set_absorbed(
        self,
        data: PanelData,
        spec: Any,
        order: np.ndarray,
        kept: np.ndarray,
        effects: AbsorbedEffects,
        obj: AbsorbedObjective,
        result: Any,
        problem: PanelProblem,
        clusters: tuple[Axes, ...],
    ) -> None:
        p = obj.n_beta
        beta = expand(kept, result.coef[:p])
        self._kept, self._spec, self._order, self._beta = kept, spec, order, beta
        self._shift_map = None
        self._separated_levels, self._unobserved_levels = [], []
        self.collinear_names_ = [n for n, k in zip(spec.names, kept[order], strict=True) if not k]
        self.intercept_ = 0.0
        self.coef_ = np.where(kept[order], beta[order], np.nan)
        self.coef_names_ = spec.names
        self.n_iter_, self.converged_ = result.n_iter, result.converged
        obs = observed(problem)
        counts = [count_to(obs, ax) for ax in effects.axes]  # observed cells per level
        a = self._normalise(obj.split(result.coef)[1], counts)
        self._effects, self._absorb_dims = effects, data.absorb
        self.fixef_ = self._fixef_series(data, effects, a)
        eta = obj.eta(result.coef)
        fam = self.family
        dev, ll, dev0, ll0 = self._absorbed_statistics(problem, eta)
        if fam.dispersion == "profiled":
            ll = profiled_gaussian_loglik(dev, problem.sum_w)
            ll0 = profiled_gaussian_loglik(dev0, problem.sum_w)
        self.deviance_ = dev
        dof, levels = effect_dof(effects, obs, counts)
        k = p + dof
        chi2 = (
            pearson_chi2(fam, problem.y, eta, problem.m, problem.w)
            if fam.dispersion == "pearson"
            else None
        )
        self.scale_ = self._scale(problem.sum_w, k, problem.w is not None, lambda: chi2)
        if fam.dispersion == "pearson":  # the likelihood at the estimated scale
            w = 1.0 if problem.w is None else problem.w
            ll = full_loglik(fam, problem.y, eta, problem.m, w, self.scale_)
        self.loglik_ = ll
        # The covariance: the Schur complement at the solution is the
        # covariates' block of the information with the effects profiled out.
        hess: AbsorbedHessian = result.hess
        z = hess.projections()
        info = problem.sum_w * (hess.schur - np.diag(self.alpha * np.ones(p)))
        if self.cov_type == "nonrobust" and not fam.canonical:
            # The model-based covariance from the expected information (as
            # statsmodels' GLM), its effects profiled out likewise.
            fisher = AbsorbedObjective(
                obj.design, effects, fam.expected(), problem, 0.0, np.ones(p), self.tol
            )
            expected = fisher.loss_grad_hess(result.coef)[2]
            expected.projections()  # sets its Schur complement
            info = problem.sum_w * expected.schur
        self._hessian = None
        scores = None
        if self.cov_type != "nonrobust":
            scores = AbsorbedScores(obj.design, effects, self._score_factors(obj, eta), z)
        del eta
        cov = coef_covariance(
            obj.design,
            problem,
            invert_information(info) if p else np.zeros((0, 0)),
            scores,
            cov_type=self.cov_type,
            clusters=clusters,
            correction=SmallSample(
                self.small_sample,
                k,
                p,
                tuple(zip(effects.axes, levels, strict=True)),
                dispersion=fam.dispersion != "fixed",
            ),
            scale=self.scale_,
            dims=spec.dims,
        )
        full = np.full((kept.size, kept.size), np.nan)
        full[np.ix_(kept, kept)] = cov.cov
        c = full[np.ix_(order, order)]
        self._cov = 0.5 * (c + c.T)
        self._cov_description = cov.description
        self._set_fit_statistics(problem, k, FitStatistics(dev, ll, dev0, ll0))

    def _score_factors(self, obj: AbsorbedObjective, eta: np.ndarray) -> np.ndarray:
        """``w g`` at the solution; in ``eta``'s memory when the residual is ``y - mu``."""
        problem = obj.problem
        if obj._fused:
            u = np.exp(eta, out=eta)
            np.subtract(problem.y, u, out=u)
            return u if problem.w is None else np.multiply(u, problem.w, out=u)
        return problem.weighted(self.family.grad_hess(problem.y, eta, problem.m)[0])

    def _absorbed_statistics(
        self, problem: PanelProblem, eta: np.ndarray
    ) -> tuple[float, float, float, float]:
        """Deviance and log-likelihood of the fit and of the intercept-only model.

        Slice by slice along the first axis, so that the family's
        temporaries are a slice's size, not the grid's.
        """
        fam = self.family
        intercept0 = null_intercept(fam, problem)
        additive = fam.dispersion != "profiled"
        n0 = problem.shape[0]
        step = max(1, CHUNK_CELLS // max(1, eta.size // max(n0, 1)))
        totals = np.zeros(4)
        for start in range(0, n0, step):
            stop = min(start + step, n0)
            sub = problem.along(0, start, stop)
            e = eta[start:stop]
            e0 = np.broadcast_to(intercept0 + sub.offset_grid(), sub.shape)
            totals[0] += sub.deviance(fam, e)
            totals[2] += sub.deviance(fam, e0)
            if additive:
                # The subclass's likelihood (the exponential model's differs
                # from its Poisson's).
                totals[1] += self._loglik(sub, e)
                totals[3] += self._loglik(sub, e0)
        return tuple(float(v) for v in totals)

    @staticmethod
    def _normalise(a: list[np.ndarray], counts: list[np.ndarray]) -> list[np.ndarray]:
        """Every effect but the first with its first observed level at 0; the first carries it.

        Levels without an observed cell (``counts`` of zero) are NaN.
        """
        a = [np.array(v, dtype=np.float64) for v in a]
        for r in range(1, len(a)):
            seen = np.flatnonzero(counts[r].ravel() > 0)
            if seen.size:
                shift = a[r].flat[seen[0]]
                a[r] -= shift
                a[0] += shift
        for v, n in zip(a, counts, strict=True):
            v[n <= 0] = np.nan
        return a

    def _fixef_series(
        self, data: PanelData, effects: AbsorbedEffects, a: list[np.ndarray]
    ) -> dict[str, pd.Series]:
        out = {}
        for r, (fe, name) in enumerate(zip(data.absorb, effects.names, strict=True)):
            vals = a[r].copy()
            sign = self._absorbed_signs[r]
            vals[sign < 0] = -np.inf
            vals[sign > 0] = np.inf
            series = pd.Series(vals.ravel(), index=_level_index(data, fe), name=name)
            out[name] = series[series.notna()]
        return out

    def _absorbed_eta(self, data: PanelData, eta: np.ndarray) -> np.ndarray:
        """Add the fitted effects of each cell's levels to ``eta`` (new data's grid)."""
        # The fitted effects, whatever the new data's PanelDesign says it absorbs.
        for fe, name in zip(self._absorb_dims, self._effects.names, strict=True):
            index = _level_index(data, fe)
            vals = self.fixef_[name].reindex(index).to_numpy(dtype=np.float64)
            axes = tuple(data.dims.index(d) for d in fe)
            grid_vals = vals.reshape([len(data.levels[a]) for a in axes])
            shape = [n if a in axes else 1 for a, n in enumerate(data.shape)]
            full = np.broadcast_to(grid_vals.reshape(shape), data.shape)
            rows = data.from_grid(full)
            bad = np.isnan(rows)
            if bad.any():
                cell = data.from_grid(
                    np.broadcast_to(
                        np.arange(grid_vals.size).reshape(grid_vals.shape).reshape(shape),
                        data.shape,
                    )
                )[np.argmax(bad)]
                combo = index[int(cell)]
                raise ValueError(
                    f"Level {combo!r} of the absorbed fixed effect {name!r} was not seen "
                    "(with a row of positive weight) when fitting: the model has no effect "
                    "for it, so it cannot predict those rows."
                )
            eta += full  # eta is the new data's own linear predictor
        return eta
