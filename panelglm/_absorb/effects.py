"""Absorbed fixed effects: their layout on the panel grid and their curvature's systems.

An absorbed effect ``a_r`` has one value per level combination of its axes
``S_r`` (one dimension, or a tuple). It adds ``a_r[c_{S_r}]`` to the linear
predictor of cell ``c``; it is a nuisance parameter, never a column of the
model matrix. With curvature weights ``t >= 0`` per cell, the effects' block of
the Hessian is ``D = F' diag(t) F`` (``F`` the cells' indicators):

* ``D_rr`` is diagonal: ``t`` summed to ``S_r``;
* ``D_rs`` is ``t`` summed to ``S_r | S_s``, read as a map from the levels of
  ``S_s`` to those of ``S_r``.

Nothing of the size (levels)^2 or cells x levels is formed: :class:`EffectSystem`
applies ``D`` through those reductions and solves ``D z = b`` by eliminating
the effect with the most levels exactly (its block is diagonal) and solving
what remains directly when it is small, by preconditioned conjugate gradients
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg

from .._model.blocks import Axes
from .._model.reduce import Reducer

# Above this many levels of the effects left after elimination, or this many
# cell-level multiply-adds to build their dense system, conjugate gradients
# are used instead of a dense factorization.
DENSE_LEVELS = 200
DENSE_WORK = 2e9
# Conjugate gradients stop after this many iterations without a smaller
# residual, or this many in all.
STALL = 50
MAX_CG = 5000


@dataclass(frozen=True)
class AbsorbedEffects:
    """The absorbed effects of a model on a panel grid.

    Attributes
    ----------
    shape : tuple of int
        The panel's shape.
    axes : tuple of tuple of int
        Each effect's sorted axes.
    names : tuple of str
        Each effect's name, its dimensions joined by ``":"``.
    """

    shape: tuple[int, ...]
    axes: tuple[Axes, ...]
    names: tuple[str, ...]

    def sub_shape(self, r: int) -> tuple[int, ...]:
        """Level counts of effect ``r``'s axes."""
        return tuple(self.shape[a] for a in self.axes[r])

    @cached_property
    def n_levels(self) -> tuple[int, ...]:
        """Number of level combinations of each effect."""
        return tuple(int(np.prod(self.sub_shape(r))) for r in range(len(self.axes)))

    @property
    def total(self) -> int:
        """Number of effect values in all."""
        return int(sum(self.n_levels))

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Views of a stacked vector (or matrix, by rows) as each effect's array."""
        out, start = [], 0
        for r, n in enumerate(self.n_levels):
            out.append(flat[start : start + n].reshape(self.sub_shape(r) + flat.shape[1:]))
            start += n
        return out

    def join(self, parts: list[np.ndarray]) -> np.ndarray:
        """The stacked vector (or matrix) of each effect's array."""
        return np.concatenate(
            [
                p.reshape((n, *p.shape[len(self.axes[r]) :]))
                for r, (p, n) in enumerate(zip(parts, self.n_levels, strict=True))
            ]
        )

    def broadcastable(self, r: int, values: np.ndarray) -> np.ndarray:
        """Effect ``r``'s values shaped to broadcast against the grid."""
        shape = [n if a in self.axes[r] else 1 for a, n in enumerate(self.shape)]
        return values.reshape(shape)

    def expand(self, parts: list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """``sum_r a_r[c_{S_r}]`` on the grid (added to ``out`` if given)."""
        if out is None:
            out = np.zeros(self.shape)
        for r, p in enumerate(parts):
            out += self.broadcastable(r, p)
        return out

    def reduce(self, grid: np.ndarray) -> list[np.ndarray]:
        """``grid`` summed to each effect's axes."""
        red = Reducer(grid)
        return [red.get(ax) for ax in self.axes]


class EffectSystem:
    """The effects' Hessian block ``D = F' diag(t) F`` and solutions of ``D z = b``.

    Parameters
    ----------
    effects : AbsorbedEffects
        The absorbed effects.
    t : ndarray
        Non-negative curvature weight of every cell, on the grid.
    """

    def __init__(self, effects: AbsorbedEffects, t: np.ndarray) -> None:
        self.effects = effects
        red = Reducer(t)
        self.diag = [red.get(ax) for ax in effects.axes]
        m = len(effects.axes)
        self._mat: dict[tuple[int, int], np.ndarray] = {}
        for r in range(m):
            for s in range(r + 1, m):
                u = tuple(sorted(set(effects.axes[r]) | set(effects.axes[s])))
                tu = red.get(u)
                # Laid out once as (shared, r only, s only): every product with
                # it is then one batched matrix product, either way round.
                shared, r_only, s_only = self._split_axes(r, s)
                perm = [u.index(a) for a in shared + r_only + s_only]
                sizes = [self._size(ax) for ax in (shared, r_only, s_only)]
                self._mat[(r, s)] = np.ascontiguousarray(tu.transpose(perm)).reshape(sizes)
        # The effect eliminated exactly: the one with the most levels.
        self.elim = int(np.argmax(effects.n_levels)) if m else 0
        self.rest = [r for r in range(m) if r != self.elim]
        d = self.diag[self.elim]
        self._inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
        self._dense: tuple[np.ndarray, np.ndarray] | None = None
        self._precond: list[np.ndarray] | None = None

    # ------------------------------------------------------------ products
    def _split_axes(self, r: int, s: int) -> tuple[Axes, Axes, Axes]:
        ar, as_ = self.effects.axes[r], self.effects.axes[s]
        shared = tuple(a for a in ar if a in as_)
        return shared, tuple(a for a in ar if a not in as_), tuple(a for a in as_ if a not in ar)

    def _size(self, axes: Axes) -> int:
        return int(np.prod([self.effects.shape[a] for a in axes]))

    def cross(self, r: int, s: int, z: np.ndarray) -> np.ndarray:
        """``D_rs z`` for ``z`` of effect ``s``'s shape plus one trailing batch axis."""
        eff = self.effects
        ar, as_ = eff.axes[r], eff.axes[s]
        shared, r_only, s_only = self._split_axes(r, s)
        k = z.shape[-1]
        zs = z.transpose([as_.index(a) for a in shared + s_only] + [len(as_)])
        zs = zs.reshape(self._size(shared), self._size(s_only), k)
        mat = self._mat[(r, s)] if r < s else self._mat[(s, r)].transpose(0, 2, 1)
        out = mat @ zs
        out = out.reshape([eff.shape[a] for a in shared + r_only] + [k])
        order = shared + r_only
        return out.transpose([order.index(a) for a in ar] + [len(ar)])

    def matvec(self, z: list[np.ndarray]) -> list[np.ndarray]:
        """``D z`` for every effect's part of ``z`` (each with a trailing batch axis)."""
        m = len(z)
        out = [self.diag[r][..., None] * z[r] for r in range(m)]
        for r in range(m):
            for s in range(m):
                if r != s:
                    out[r] += self.cross(r, s, z[s])
        return out

    def _schur(self, z: list[np.ndarray]) -> list[np.ndarray]:
        """The Schur complement of the eliminated effect, applied to the others' ``z``."""
        e = self.elim
        ye = sum(self.cross(e, s, zs) for s, zs in zip(self.rest, z, strict=True))
        ye = self._inv[..., None] * ye
        out = []
        for i, r in enumerate(self.rest):
            v = self.diag[r][..., None] * z[i] - self.cross(r, e, ye)
            for j, s in enumerate(self.rest):
                if j != i:
                    v += self.cross(r, s, z[j])
            out.append(v)
        return out

    # --------------------------------------------------------------- solves
    def solve(
        self, b: list[np.ndarray], x0: list[np.ndarray] | None = None, rtol: float = 1e-11
    ) -> tuple[list[np.ndarray], int]:
        """Solve ``D z = b`` (a solution of least norm on levels of zero weight).

        Parameters
        ----------
        b : list of ndarray
            Each effect's right-hand sides, with one trailing batch axis.
        x0 : list of ndarray, optional
            A starting guess (e.g. the previous Newton step's solution).
        rtol : float
            Relative residual at which conjugate gradients stop.

        Returns
        -------
        z : list of ndarray
            The solution, shaped like ``b``.
        n_iter : int
            Conjugate-gradient iterations (0 for a direct solve).
        """
        e = self.elim
        inv = self._inv[..., None]
        if not self.rest:
            return [inv * b[e]], 0
        be = inv * b[e]
        rhs = [b[r] - self.cross(r, e, be) for r in self.rest]
        if self._use_dense():
            zr, n_iter = self._dense_solve(rhs), 0
        else:
            start = None if x0 is None else [x0[r] for r in self.rest]
            zr, n_iter = self._pcg(rhs, start, rtol)
        ze = inv * (b[e] - sum(self.cross(e, s, z) for s, z in zip(self.rest, zr, strict=True)))
        out: list[np.ndarray] = [None] * (len(self.rest) + 1)  # type: ignore[list-item]
        out[e] = ze
        for r, z in zip(self.rest, zr, strict=True):
            out[r] = z
        return out, n_iter

    def _use_dense(self) -> bool:
        n_rest = sum(self.effects.n_levels[r] for r in self.rest)
        work = n_rest * sum(mat.size for mat in self._mat.values())
        return self._dense is not None or (n_rest <= DENSE_LEVELS and work <= DENSE_WORK)

    def _dense_solve(self, rhs: list[np.ndarray]) -> list[np.ndarray]:
        """Solve the Schur system by its eigen-decomposition (pseudo-inverse)."""
        eff = self.effects
        shapes = [eff.sub_shape(r) for r in self.rest]
        sizes = [eff.n_levels[r] for r in self.rest]
        if self._dense is None:
            n = sum(sizes)
            eye = np.eye(n)
            cols = self._schur(self._split_rest(eye, shapes, sizes))
            mat = np.concatenate([c.reshape(s, n) for c, s in zip(cols, sizes, strict=True)])
            vals, vecs = scipy.linalg.eigh(0.5 * (mat + mat.T))
            # Directions of (numerically) zero curvature are the effects' free
            # normalisations: the least-norm solution leaves them out.
            cut = max(vals.max(initial=0.0), 0.0) * n * np.finfo(float).eps * 16
            keep = vals > cut
            self._dense = (vecs[:, keep], 1.0 / vals[keep])
        vecs, inv_vals = self._dense
        flat = np.concatenate([r.reshape(s, -1) for r, s in zip(rhs, sizes, strict=True)])
        sol = vecs @ (inv_vals[:, None] * (vecs.T @ flat))
        return self._split_rest(sol, shapes, sizes)

    @staticmethod
    def _split_rest(flat: np.ndarray, shapes: list, sizes: list) -> list[np.ndarray]:
        out, start = [], 0
        for shape, n in zip(shapes, sizes, strict=True):
            out.append(flat[start : start + n].reshape((*shape, flat.shape[-1])))
            start += n
        return out

    def _preconditioner(self) -> list[np.ndarray]:
        """Inverse diagonal of the Schur complement (zero where it vanishes)."""
        if self._precond is None:
            e, eff = self.elim, self.effects
            out = []
            for r in self.rest:
                # sum over e's levels of D_re^2 / d_e, by one loop over the
                # pair's curvature (no grid-sized temporaries).
                shared, r_only, e_only = self._split_axes(r, e)
                ae = eff.axes[e]
                inv = self._inv.transpose([ae.index(a) for a in shared + e_only])
                inv = inv.reshape(self._size(shared), self._size(e_only))
                sub = "bij,bij,bj->bi" if r < e else "bji,bji,bj->bi"
                mat = self._mat[(min(r, e), max(r, e))]
                drop = np.einsum(sub, mat, mat, inv)
                drop = drop.reshape([eff.shape[a] for a in shared + r_only])
                order = shared + r_only
                drop = drop.transpose([order.index(a) for a in eff.axes[r]])
                diag = self.diag[r] - drop
                tiny = diag <= 1e-12 * np.maximum(self.diag[r], 0)
                out.append(np.divide(1.0, diag, out=np.zeros_like(diag), where=~tiny))
            self._precond = out
        return self._precond

    def _pcg(
        self, b: list[np.ndarray], x0: list[np.ndarray] | None, rtol: float
    ) -> tuple[list[np.ndarray], int]:
        """Jacobi-preconditioned conjugate gradients on the Schur system, column by column.

        Each column stops at its own relative residual ``rtol``, or when its
        residual has not improved for :data:`STALL` iterations: the system is
        singular (the effects' normalisations), and rounding leaves the
        right-hand side a part outside its range that no iteration removes.
        The best iterate of each column is returned.
        """
        minv = [p[..., None] for p in self._preconditioner()]

        def dot(u: list[np.ndarray], v: list[np.ndarray]) -> np.ndarray:
            return sum(
                (a * c).reshape(-1, a.shape[-1]).sum(axis=0) for a, c in zip(u, v, strict=True)
            )

        if x0 is None:
            x = [np.zeros_like(v) for v in b]
            r = [np.array(v) for v in b]
        else:
            x = [np.array(v) for v in x0]
            r = [bi - ai for bi, ai in zip(b, self._schur(x), strict=True)]
        target = rtol * np.sqrt(dot(b, b))
        best_x = [np.array(v) for v in x]
        best = np.sqrt(dot(r, r))
        since = np.zeros(best.shape, dtype=int)
        active = best > target
        z = [mi * ri for mi, ri in zip(minv, r, strict=True)]
        p = [np.array(v) for v in z]
        rz = dot(r, z)
        it = 0
        while active.any() and it < MAX_CG:
            it += 1
            q = self._schur(p)
            pq = dot(p, q)
            ok = active & (pq > 0) & (rz > 0)
            alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=ok)
            for xi, ri, pi, qi in zip(x, r, p, q, strict=True):
                xi += alpha * pi
                ri -= alpha * qi
            z = [mi * ri for mi, ri in zip(minv, r, strict=True)]
            rz_new = dot(r, z)
            beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=ok)
            rz = rz_new
            for pi, zi in zip(p, z, strict=True):
                pi *= beta
                pi += zi
            norm = np.sqrt(dot(r, r))
            better = active & (norm < best)
            if better.any():
                for bx, xi in zip(best_x, x, strict=True):
                    bx[..., better] = xi[..., better]
                best = np.where(better, norm, best)
            since = np.where(better, 0, since + 1)
            active &= ok & (best > target) & (since < STALL)
        return best_x, it
