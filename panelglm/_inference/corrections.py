"""Small-sample factors of the covariances: statsmodels' convention, none, or fixest's.

* ``True`` (statsmodels): ``n / (n - k)`` for the robust covariance (HC1)
  and ``G / (G - 1) * (n - 1) / (n - k)`` for every term of a cluster
  covariance, ``k`` the model's parameters (absorbed effects' degrees of
  freedom included), ``G`` the clusters of that term.
* ``False``: none.
* ``"fixest"``: fixest's and pyfixest's defaults (``ssc(adj=TRUE,
  fixef.K="nested", cluster.adj=TRUE, cluster.df="min")``), so that numbers
  compare with theirs: ``k`` counts the absorbed effects' levels less one per
  effect after the first, leaving out, for a cluster covariance, the levels of
  effects nested in a cluster (all but one each); the model-based covariance
  of a GLM gets ``(n - 1) / (n - k)``; every term of a multiway cluster
  covariance gets the same ``G / (G - 1)``, with the smallest ``G`` of the
  cluster sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._model.blocks import Axes


def ratio(a: float, b: float) -> float:
    """``a / b`` if ``b > 0``, else NaN (a correction factor that is undefined)."""
    return a / b if b > 0 else np.nan


@dataclass(frozen=True)
class SmallSample:
    """How the covariances are corrected for a model's size.

    Attributes
    ----------
    mode : bool or "fixest"
        The estimator's ``small_sample``.
    k : int
        The model's parameters: coefficients plus the absorbed effects'
        degrees of freedom.
    n_coef : int
        The coefficients estimated (fixest's ``k`` before the effects).
    effects : tuple of (axes, levels)
        Each absorbed effect's axes and observed levels.
    dispersion : bool
        Whether the model-based covariance carries an estimated scale (the
        linear model's ``deviance / (n - k)``).
    """

    mode: bool | str
    k: int
    n_coef: int
    effects: tuple[tuple[Axes, int], ...] = ()
    dispersion: bool = False

    @property
    def fixest(self) -> bool:
        """Whether fixest's convention applies."""
        return self.mode == "fixest"

    def fixest_k(self, clusters: tuple[Axes, ...] = ()) -> int:
        """The ``k`` of fixest: effects nested in a cluster set count one level each."""
        levels = [n for _, n in self.effects]
        k_fe = sum(levels) - max(len(levels) - 1, 0)
        for axes, n in self.effects:
            if any(set(c) <= set(axes) for c in clusters):
                k_fe -= n - 1
        return self.n_coef + k_fe

    def model(self, n: int) -> float:
        """Factor of the model-based covariance (its scale already applied)."""
        if not self.fixest:
            return 1.0
        if self.dispersion:  # the scale was deviance / (n - k): fixest divides by n - k_fixest
            return ratio(n - self.k, n - self.fixest_k())
        return ratio(n - 1, n - self.fixest_k())

    def robust(self, n: int) -> float:
        """Factor of the heteroskedasticity-robust covariance."""
        if not self.mode:
            return 1.0
        return ratio(n, n - (self.fixest_k() if self.fixest else self.k))

    def cluster(self, n: int, n_clusters: int, clusters: tuple[Axes, ...], g_min: int) -> float:
        """Factor of one term of a cluster covariance with ``n_clusters`` clusters."""
        if not self.mode:
            return 1.0 if n_clusters > 1 else np.nan
        if self.fixest:
            return ratio(g_min, g_min - 1) * ratio(n - 1, n - self.fixest_k(clusters))
        return ratio(n_clusters, n_clusters - 1) * ratio(n - 1, n - self.k)
