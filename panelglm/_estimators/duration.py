"""The exponential duration model with censoring: a Poisson fit of the event indicators.

A duration ``T`` with hazard ``exp(V)`` has the likelihood of a Poisson count
(the event indicator) with mean ``T exp(V)``, up to ``sum(event * log T)``;
so the model is the Poisson family with ``log T`` added to the offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._data.panel import PanelData
from .._data.validation import first_bad_row
from .._engine.objective import PanelProblem
from .._ident.identification import SeparationWording
from .._model.families import POISSON
from .._util.docstrings import fill_doc
from .._util.lazy import compute, is_lazy, where
from .base import PanelGLMBase


@dataclass
class _DurationProblem(PanelProblem):
    """A Poisson problem on event indicators that remembers ``log T``."""

    log_t: np.ndarray | None = None


@fill_doc
class PanelExponentialRegressor(PanelGLMBase):
    """Exponential duration model with censoring, on panels.

    ``y`` holds durations ``T > 0``; the hazard is ``exp(X @ coef)``. A
    duration whose event was not observed (censored, e.g. at the end of the
    study) has ``0`` in the ``event`` column. The model is fitted as a
    Poisson regression of the event indicator with offset ``log T``, which
    has the same likelihood up to a constant. ``predict`` gives the expected
    duration ``exp(-V)``, ``V`` the linear predictor with the intercept and
    any offset.

    Parameters
    ----------
    event : str, default=None
        Column of 0/1 event indicators (1: the event happened at ``T``;
        0: censored at ``T``). Without it every duration is an event.
    offset : str, default=None
        Column added to the log hazard with coefficient one.
    {common_params}

    Attributes
    ----------
    {common_attrs}

    Examples
    --------
    >>> import numpy as np
    >>> from panelglm import PanelExponentialRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 1))
    >>> T = rng.exponential(1 / np.exp(-1.0 + 0.5 * X[:, 0]))
    >>> est = PanelExponentialRegressor().fit(X, T)
    >>> round(est.intercept_, 1), est.coef_.round(1)
    (-1.0, array([0.5]))
    """

    _separation_wording = SeparationWording(
        low="no event: every duration censored",
        limit="an infinite expected duration",
        rows="a censored duration",
        all_low=(
            "Every duration is censored (event 0 on every row of positive weight): the "
            "hazard would be 0, so the model has no maximum likelihood estimate."
        ),
    )

    _attr_docs = {
        "separated_rows_": "fixed-effect level whose durations are all censored,",
        "separated_at": "at a separated fixed-effect level are an infinite duration.",
        "loglik_": (
            "The exponential model's own log-likelihood\n"
            "        ``sum(event * log(hazard) - hazard * T)``: statsmodels' Poisson ``llf``\n"
            "        of the event indicators less ``sum(event * log T)``. ``deviance_`` is\n"
            "        the Poisson deviance of the event indicators."
        ),
    }

    family = POISSON
    _parameter_constraints: dict = {
        **PanelGLMBase._parameter_constraints,
        "event": [str, None],
        "offset": [str, None],
    }

    def __init__(
        self,
        *,
        event=None,
        offset=None,
        alpha=0.0,
        l1_ratio=0.0,
        fit_intercept=True,
        tol=1e-10,
        max_iter=100,
        verbose=0,
        dims=None,
        fixed_effects=None,
        absorb=None,
        cov_type="nonrobust",
        cluster=None,
        small_sample=True,
        dtype=np.float64,
        collinear="drop",
        n_threads=None,
    ):
        self.event = event
        self.offset = offset
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose
        self.dims = dims
        self.fixed_effects = fixed_effects
        self.absorb = absorb
        self.cov_type = cov_type
        self.cluster = cluster
        self.small_sample = small_sample
        self.dtype = dtype
        self.collinear = collinear
        self.n_threads = n_threads

    def _problem(self, data: PanelData, y, w) -> PanelProblem:
        base = super()._problem(data, None, w)
        if y is None:
            return base
        t = data.to_grid(y, fill=1.0)  # log 1 = 0 at cells without a row
        if data.present is not None:  # a Dask-backed target's cells without data, likewise
            t = where(data.present, t, 1.0)
        if is_lazy(t):  # one reduction; the rows are not read back to name one
            if compute((t <= 0).any())[0]:
                raise ValueError("The durations y must be positive.")
        elif np.any(t <= 0):
            raise ValueError(f"The durations y must be positive{first_bad_row(data, y > 0)}.")
        if self.event is None:
            d = np.ones(data.shape)
        else:
            ev, axes = data.numeric(self.event, "event")
            if not np.all((ev == 0) | (ev == 1)):
                rows = data.from_grid(
                    ev.reshape([n if k in axes else 1 for k, n in enumerate(data.shape)])
                )
                raise ValueError(
                    f"The event column {self.event!r} must hold only 0 and 1"
                    f"{first_bad_row(data, (rows == 0) | (rows == 1))}."
                )
            d = np.broadcast_to(
                ev.reshape([n if k in axes else 1 for k, n in enumerate(data.shape)]), data.shape
            ).copy()
        log_t = np.log(t)
        offset = log_t + base.offset_grid() if base.offset is not None else log_t
        return _DurationProblem(
            shape=data.shape,
            y=d,
            w=base.w,
            offset=(offset, tuple(range(len(data.shape)))),
            log_t=log_t,
        )

    def _reference_offset(self, problem: PanelProblem) -> tuple | None:
        # The constant-hazard model still has exposure log T.
        return (problem.log_t, tuple(range(len(problem.shape))))

    def _prediction(self, eta: np.ndarray, problem: PanelProblem) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(-eta)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True  # durations
        return tags

    def _loglik(self, problem: PanelProblem, eta: np.ndarray) -> float:
        # The Poisson likelihood of the indicators carries an extra
        # sum(event * log T), constant in the coefficients; remove it.
        w = 1.0 if problem.w is None else problem.w
        return super()._loglik(problem, eta) - float(np.sum(w * problem.y * problem.log_t))
