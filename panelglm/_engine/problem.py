"""The arrays of one fit on the panel grid, and the statistics of a fit.

:class:`PanelProblem` is what every pass engine reads (response, trials,
weights, offset); it sits below the engines and the objective so that both
may use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._model.blocks import Axes
from .._model.families import Family
from .._util.lazy import compute, is_lazy, where


@dataclass
class PanelProblem:
    """The arrays of one fit, all laid out on the panel grid.

    Attributes
    ----------
    shape : tuple of int
        The panel's shape.
    y : ndarray or None
        Response on the full grid (``None`` when predicting).
    m : ndarray or float
        Binomial trials, broadcastable to the grid (``1.0`` otherwise).
    w : ndarray or None
        Cell weights on the grid; ``None`` means all ones.
    offset : (ndarray, axes) or None
        Offset laid out over ``axes``.
    """

    shape: tuple[int, ...]
    y: np.ndarray | None = None
    m: np.ndarray | float = 1.0
    w: np.ndarray | None = None
    offset: tuple[np.ndarray, Axes] | None = None

    def offset_grid(self) -> np.ndarray | float:
        """The offset broadcastable to the grid (``0.0`` without one)."""
        if self.offset is None:
            return 0.0
        arr, axes = self.offset
        return arr.reshape([n if d in axes else 1 for d, n in enumerate(self.shape)])

    def deviance(self, family: Family, eta: np.ndarray | float) -> float:
        """Weighted total deviance of the model with linear predictor ``eta``."""
        if is_lazy(eta) or is_lazy(self.y):  # a Dask-backed panel's score: one reduction
            mu = family.mean(eta, self.m)
            dev = family.unit_deviance(self.y, mu, self.m)
            total = dev.sum() if self.w is None else (self.w * where(self.w > 0, dev, 0.0)).sum()
            return float(compute(total)[0])
        mu = np.broadcast_to(family.mean(np.asarray(eta, dtype=np.float64), self.m), self.y.shape)
        dev = family.unit_deviance(self.y, mu, self.m)
        if self.w is None:
            return float(np.sum(dev))
        # Cells of weight zero (no row; a separated level's) count nothing, even
        # where their filler y meets an infinite effect or an unseen level's NaN.
        return float(np.vdot(self.w, np.where(self.w > 0, dev, 0.0)))

    @property
    def sum_w(self) -> float:
        """Total weight."""
        return float(np.prod(self.shape) if self.w is None else self.w.sum())

    def weighted(self, arr: np.ndarray) -> np.ndarray:
        """``w * arr`` (``arr`` itself when there are no weights)."""
        return arr if self.w is None else arr * self.w

    def rows(self, start: int, stop: int) -> PanelProblem:
        """The sub-problem of first-axis positions ``start:stop`` (views, no copies)."""
        return self.along(0, start, stop)

    def along(self, axis: int, start: int, stop: int) -> PanelProblem:
        """The sub-problem of positions ``start:stop`` of ``axis`` (views, no copies)."""
        n = self.shape[axis]
        cut = (slice(None),) * axis + (slice(start, stop),)

        def part(value):
            if isinstance(value, np.ndarray) and value.ndim == len(self.shape):
                return value[cut] if value.shape[axis] == n and n > 1 else value
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
                arr, axes = value
                if axis not in axes:
                    return value
                return (arr[(slice(None),) * axes.index(axis) + (slice(start, stop),)], axes)
            return value

        changes = {f.name: part(getattr(self, f.name)) for f in dataclasses.fields(self)}
        shape = list(self.shape)
        shape[axis] = stop - start
        changes["shape"] = tuple(shape)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FitStatistics:
    """Deviance and log-likelihood of a fit and of its intercept-only (null) model."""

    deviance: float
    loglik: float
    null_deviance: float
    null_loglik: float
