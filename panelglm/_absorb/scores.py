"""Scores of the covariates with the absorbed effects projected out, for sandwich covariances."""

from __future__ import annotations

import numpy as np

from .._model.blocks import Axes
from .._model.factored import FactoredDesign
from .._model.reduce import Reducer, letters
from .effects import AbsorbedEffects, EffectSystem
from .objective import cross_blocks


class AbsorbedScores:
    """The meat of sandwich covariances from the scores of projected covariates.

    The score of covariate ``k`` in cell ``c`` is ``u_c (x_ck - (F Z)_ck)``,
    ``Z = D^-1 B'`` the effects' least-squares fit of the covariate under the
    curvature weights: by Frisch-Waugh-Lovell, the covariates' block of the
    sandwich of the full model.
    """

    def __init__(
        self,
        design: FactoredDesign,
        effects: AbsorbedEffects,
        u: np.ndarray,
        z: list[np.ndarray],
    ) -> None:
        self.design, self.effects, self.u, self.z = design, effects, u, z

    def cluster_scores(self, keep: Axes) -> np.ndarray:
        """Sum of the projected scores within each cluster of ``keep`` (clusters x p)."""
        out = self.design.scores(self.u, keep)
        eff = self.effects
        red = Reducer(self.u)
        for r, zr in enumerate(self.z):
            u_axes = tuple(sorted(set(keep) | set(eff.axes[r])))
            sub = f"{letters(u_axes)},{letters(eff.axes[r])}z->{letters(keep)}z"
            out -= np.einsum(sub, red.get(u_axes), zr, optimize=True).reshape(out.shape)
        return out

    def meat(self, keep: Axes) -> np.ndarray:
        """``sum_G s_G s_G'`` over the clusters of ``keep`` (every cell: all axes)."""
        if len(keep) == len(self.effects.shape):
            return self._cell_meat()
        s = self.cluster_scores(keep)
        return s.T @ s

    def _cell_meat(self) -> np.ndarray:
        """``X~' diag(u^2) X~`` without the cells x p array ``X~``."""
        u2 = self.u * self.u
        eff, p = self.effects, self.design.n_coef
        gram = self.design.hessian(u2)
        bt = [b.reshape(-1, p) for b in cross_blocks(self.design, u2, eff)]
        zf = [z.reshape(-1, p) for z in self.z]
        cross = sum(b.T @ z for b, z in zip(bt, zf, strict=True))
        dz = EffectSystem(eff, u2).matvec(self.z)
        quad = sum(z.T @ d.reshape(-1, p) for z, d in zip(zf, dz, strict=True))
        return gram - cross - cross.T + quad
