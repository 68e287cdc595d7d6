"""The design's three products with arrays over the grid, in memory or on Dask slabs.

The separation certificate (:mod:`panelglm._ident.certificate`) works with
arrays over the whole grid: ``X gamma``, ``X' diag(v) X`` and ``X' v``. In
memory those are the factored design's own kernels (:class:`InMemory`). On a
Dask-backed panel the arrays are lazy, ``X gamma`` is built lazily and the two
sums are passes of the Dask engine (:class:`OnSlabs`): Gaussian passes at zero
coefficients, whose information is ``X' diag(w) X`` and whose score is
``X' (w y)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._engine.engines import make_engine
from .._engine.problem import PanelProblem
from .._model.factored import FactoredDesign
from .._model.families import GAUSSIAN
from .._model.lazy_design import lazy_linear_predictor


class InMemory:
    """The factored design's kernels on arrays over the grid."""

    def __init__(self, design: FactoredDesign) -> None:
        self.design = design

    def linear_predictor(self, beta: np.ndarray) -> np.ndarray:
        """``X beta`` over the grid."""
        return self.design.linear_predictor(beta)

    def hessian(self, weights: np.ndarray) -> np.ndarray:
        """``X' diag(weights) X``."""
        return self.design.hessian(weights)

    def gradient(self, values: np.ndarray) -> np.ndarray:
        """``X' values``."""
        return self.design.gradient(values)


class OnSlabs(InMemory):
    """The same products with lazy arrays: a lazy ``X beta``, sums by Dask passes."""

    def _zero(self) -> np.ndarray:
        return np.zeros(self.design.n_coef)

    def linear_predictor(self, beta: np.ndarray) -> Any:
        """``X beta`` as a Dask array."""
        return lazy_linear_predictor(self.design, beta)

    def hessian(self, weights: Any) -> np.ndarray:
        """``X' diag(weights) X``: the information of a Gaussian pass weighted so."""
        problem = PanelProblem(tuple(self.design.shape), y=np.zeros(()), m=1.0, w=weights)
        return make_engine(self.design, GAUSSIAN, problem).information(self._zero())

    def gradient(self, values: Any) -> np.ndarray:
        """``X' values``: the score of a Gaussian pass whose response is ``values``."""
        problem = PanelProblem(tuple(self.design.shape), y=values, m=1.0, w=None)
        return make_engine(self.design, GAUSSIAN, problem).loss_grad_hess(self._zero())[1]
