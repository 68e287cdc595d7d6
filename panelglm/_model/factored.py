"""The factored design: covariate blocks (:mod:`~panelglm._model.blocks`) and three kernels.

A panel has ``D`` dimensions of sizes ``shape``. A block holds covariates that
vary along a subset ``axes`` of the dimensions only. The kernels compute

* the linear predictor ``V = offset + sum_b X_b[c_S] . beta_b``,
* per-cluster scores ``sum_{c in cluster} g_c X[c]`` (the gradient is the
  one-cluster case),
* the Hessian ``sum_c h_c X[c] X[c]^T``,

by first summing the cell-level array over every axis a block does not vary
along, and only then contracting with the (small) block. No ``N x P`` array
is ever formed, except by :meth:`FactoredDesign.to_dense`, which exists for
tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations_with_replacement

import numpy as np

from .blocks import Axes, Block, DenseBlock, IndicatorBlock, _slab_of
from .contract import DensePair
from .reduce import Reducer, letters

# Above this many cells, a Hessian block is contracted one column at a time
# (see FactoredDesign._pair): memory of one grid-sized array, not of Q.
COLUMN_CELLS = 1 << 16
# Above this many cells, scores and the Hessian run slab by slab along the
# first axis, so that their temporaries (the curvature times a cell-level
# column) are a slab's size rather than the grid's.
SLAB_CELLS = 1 << 23


def _expand(arr: np.ndarray, axes: Axes, ndim: int, sizes: tuple[int, ...]) -> np.ndarray:
    """View ``arr`` (laid out over ``axes``) with length-one axes elsewhere."""
    shape = [sizes[d] if d in axes else 1 for d in range(ndim)]
    return arr.reshape(shape)


@dataclass
class FactoredDesign:
    """The model matrix of a panel GLM, kept as blocks.

    Parameters
    ----------
    shape : tuple of int
        Sizes of the panel dimensions; ``N = prod(shape)`` cells.
    blocks : list of DenseBlock or IndicatorBlock
        The covariate blocks, in coefficient order.
    """

    shape: tuple[int, ...]
    blocks: list[Block]
    # Per call site: einsum contraction paths and planned pair contractions
    # (DensePair), worked out on first use.
    _plans: dict = field(default_factory=dict, repr=False)

    @property
    def ndim(self) -> int:
        """Number of panel dimensions."""
        return len(self.shape)

    @property
    def n_coef(self) -> int:
        """Total number of coefficients."""
        return sum(b.n_cols for b in self.blocks)

    @property
    def names(self) -> list[str]:
        """Coefficient names, in coefficient order."""
        return [n for b in self.blocks for n in b.names]

    def slices(self) -> list[slice]:
        """The slice of the coefficient vector that belongs to each block."""
        out, start = [], 0
        for b in self.blocks:
            out.append(slice(start, start + b.n_cols))
            start += b.n_cols
        return out

    def _sub_shape(self, axes: Axes) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in axes)

    def _slabs(self) -> list[tuple[slice, FactoredDesign]]:
        """The design cut along the first axis into slabs of about ``SLAB_CELLS`` cells.

        Empty when the grid is small enough to be taken whole. The slabs'
        designs are kept, so their planned contractions are worked out once.
        """
        slabs = self._plans.get("slabs")
        if slabs is None:
            slabs = []
            n = int(np.prod(self.shape, dtype=np.int64))
            if self.ndim and n > SLAB_CELLS and self.shape[0] >= 4:
                step = max(1, SLAB_CELLS // (n // self.shape[0]))
                for lo in range(0, self.shape[0], step):
                    sl = slice(lo, min(lo + step, self.shape[0]))
                    blocks = [_slab_of(b, sl) for b in self.blocks]
                    slabs.append((sl, FactoredDesign((sl.stop - lo, *self.shape[1:]), blocks)))
            self._plans["slabs"] = slabs
        return slabs

    def _einsum(self, key: object, subscripts: str, *operands: np.ndarray) -> np.ndarray:
        # The operand shapes of a given key never change within one design, so
        # the contraction order is searched for once and reused every iteration.
        path = self._plans.get(key)
        if path is None:
            path = np.einsum_path(subscripts, *operands, optimize="greedy")[0]
            self._plans[key] = path
        return np.einsum(subscripts, *operands, optimize=path)

    # ------------------------------------------------------------------ V
    def linear_predictor(
        self,
        beta: np.ndarray,
        offset: tuple[np.ndarray, Axes] | None = None,
    ) -> np.ndarray:
        """Compute ``V = offset + X beta`` on the full cell grid.

        Parameters
        ----------
        beta : ndarray of shape (n_coef,)
            Coefficients.
        offset : (ndarray, axes) or None
            An offset laid out over ``axes``.

        Returns
        -------
        ndarray of shape ``shape``
        """
        parts: dict[Axes, np.ndarray] = {}
        # Parts this call made itself may be added to in place: on a grid of
        # 1e8 cells, every new array over all cells is 0.8 GB more at the peak.
        owned: set[Axes] = set()

        def add(axes: Axes, arr: np.ndarray, fresh: bool = True) -> None:
            if axes in parts and axes in owned:
                parts[axes] += arr
            elif axes in parts:
                parts[axes] = parts[axes] + arr
                owned.add(axes)
            else:
                parts[axes] = np.asarray(arr, dtype=np.float64)
                if fresh or parts[axes] is not arr:  # made here, or a copy made here
                    owned.add(axes)

        for blk, sl in zip(self.blocks, self.slices(), strict=True):
            b = beta[sl]
            if isinstance(blk, DenseBlock):
                # A matrix-vector product of a large strided block (columns kept
                # apart, as a frame stores them) is BLAS's slow case; einsum's
                # loop reads each cell's columns once.
                big = blk.values.size > COLUMN_CELLS
                add(blk.axes, np.einsum("...z,z->...", blk.values, b) if big else blk.values @ b)
            else:
                add(blk.axes, np.append(b, 0.0)[blk.codes])
        if offset is not None:
            add(offset[1], offset[0], fresh=False)  # the caller's array: never written
        # Fold every part into a part over a superset of its axes while both
        # are small, so that only the parts over maximal axis sets are ever
        # broadcast to all N cells.
        for axes in sorted(parts, key=len):
            sups = [t for t in parts if set(axes) < set(t)]
            if sups:
                t = max(sups, key=len)
                local = tuple(t.index(a) for a in axes)
                shape = [self.shape[a] if i in local else 1 for i, a in enumerate(t)]
                add(t, parts.pop(axes).reshape(shape))
        full = tuple(range(self.ndim))
        if full in owned:  # a part over every axis is the result's own memory
            eta = parts.pop(full)
        else:
            eta = np.zeros(self.shape)
        for axes, arr in parts.items():
            eta += _expand(arr, axes, self.ndim, self.shape)
        return eta

    # ------------------------------------------------------------- scores
    def scores(self, g: np.ndarray, keep: Axes = ()) -> np.ndarray:
        """Sum ``g_c X[c]`` within each level combination of ``keep``.

        Parameters
        ----------
        g : ndarray of shape ``shape``
            A cell-level array (e.g. weighted first derivatives).
        keep : tuple of int
            Sorted axes whose level combinations define the clusters.

        Returns
        -------
        ndarray of shape (n_clusters, n_coef)
            With ``keep=()``, a single row: the gradient ``X' g``.
        """
        n_k = int(np.prod(self._sub_shape(keep)))
        slabs = self._slabs()
        if slabs:
            # Slabs of the first axis own consecutive rows when ``keep`` has
            # that axis (C order); otherwise each adds into every row.
            out = np.zeros((n_k, self.n_coef))
            per = n_k // self.shape[0] if keep and keep[0] == 0 else 0
            for sl, sub in slabs:
                part = sub.scores(g[sl], keep)
                if per:
                    out[sl.start * per : sl.stop * per] = part
                else:
                    out += part
            return out
        red = Reducer(g)
        out = np.empty((n_k, self.n_coef))
        for i, (blk, sl) in enumerate(zip(self.blocks, self.slices(), strict=True)):
            u = tuple(sorted(set(blk.axes) | set(keep)))
            t = red.get(u)
            if isinstance(blk, DenseBlock):
                sub = f"{letters(u)},{letters(blk.axes)}z->{letters(keep)}z"
                out[:, sl] = self._einsum(("s", i, keep), sub, t, blk.values).reshape(n_k, -1)
            else:
                codes = self._codes_over(blk, u)
                kidx = self._flat_index_over(keep, u)
                ok = codes >= 0
                flat = kidx[ok] * blk.n_cols + codes[ok]
                out[:, sl] = np.bincount(flat, weights=t[ok], minlength=n_k * blk.n_cols).reshape(
                    n_k, blk.n_cols
                )
        return out

    def gradient(self, g: np.ndarray) -> np.ndarray:
        """Compute ``X' g`` for a cell-level array ``g``."""
        return self.scores(g)[0]

    # ------------------------------------------------------------ Hessian
    def hessian(self, h: np.ndarray) -> np.ndarray:
        """Compute ``X' diag(h) X`` for a cell-level array ``h``.

        Parameters
        ----------
        h : ndarray of shape ``shape``

        Returns
        -------
        ndarray of shape (n_coef, n_coef)
        """
        slabs = self._slabs()
        if slabs:
            return sum(sub.hessian(h[sl]) for sl, sub in slabs)
        red = Reducer(h)
        sls = self.slices()
        out = np.empty((self.n_coef, self.n_coef))
        pairs = list(combinations_with_replacement(range(len(self.blocks)), 2))
        # Larger unions first, so smaller reductions come from cached partial sums.
        pairs.sort(
            key=lambda ab: -len(set(self.blocks[ab[0]].axes) | set(self.blocks[ab[1]].axes))
        )
        for ia, ib in pairs:
            a, b = self.blocks[ia], self.blocks[ib]
            u = tuple(sorted(set(a.axes) | set(b.axes)))
            t = red.get(u)
            if isinstance(a, IndicatorBlock) and isinstance(b, DenseBlock):
                (ia, a), (ib, b) = (ib, b), (ia, a)
            blk_ab = self._pair(ia, ib, a, b, u, t)
            out[sls[ia], sls[ib]] = blk_ab
            out[sls[ib], sls[ia]] = blk_ab.T
        return out

    def _pair(self, ia: int, ib: int, a: Block, b: Block, u: Axes, t: np.ndarray) -> np.ndarray:
        # Over a large grid, a block's columns are taken one at a time: a
        # contraction of all of them at once makes an array of the grid's size
        # times their number (N x Q for a cell-level block), one per pair.
        by_column = t.size > COLUMN_CELLS and a.n_cols > 1
        if isinstance(a, DenseBlock) and isinstance(b, DenseBlock):
            if not by_column:
                key = ("pair", ia, ib, t.shape)
                pair = self._plans.get(key)
                if pair is None:
                    pair = self._plans[key] = DensePair(u, a.axes, a.values, b.axes, b.values)
                return pair(t)
            # t * x_a over u (one grid-sized array), then contracted with b.
            tx = f"{letters(u)},{letters(a.axes)}->{letters(u)}"
            xb = f"{letters(u)},{letters(b.axes)}z->z"
            return np.stack(
                [
                    self._einsum(("hb", ia, ib), xb, np.einsum(tx, t, a.values[..., q]), b.values)
                    for q in range(a.n_cols)
                ]
            )
        if isinstance(a, DenseBlock):  # b is an indicator
            codes = b.codes.ravel()
            ok = codes >= 0
            if not by_column:
                sub = f"{letters(u)},{letters(a.axes)}y->{letters(b.axes)}y"
                m = self._einsum(("h", ia, ib), sub, t, a.values).reshape(-1, a.n_cols)
                res = np.zeros((b.n_cols, a.n_cols))
                np.add.at(res, codes[ok], m[ok])
                return res.T
            sub = f"{letters(u)},{letters(a.axes)}->{letters(b.axes)}"
            return np.stack(
                [
                    np.bincount(
                        codes[ok],
                        weights=self._einsum(("hq", ia, ib), sub, t, a.values[..., q]).ravel()[ok],
                        minlength=b.n_cols,
                    )
                    for q in range(a.n_cols)
                ]
            )
        ca, cb = self._codes_over(a, u), self._codes_over(b, u)
        ok = (ca >= 0) & (cb >= 0)
        flat = ca[ok] * b.n_cols + cb[ok]
        return np.bincount(flat, weights=t[ok], minlength=a.n_cols * b.n_cols).reshape(
            a.n_cols, b.n_cols
        )

    def _codes_over(self, blk: IndicatorBlock, u: Axes) -> np.ndarray:
        """The block's codes broadcast to the grid over ``u`` (C order)."""
        local = tuple(u.index(a) for a in blk.axes)
        shape = [self.shape[a] if i in local else 1 for i, a in enumerate(u)]
        return np.broadcast_to(blk.codes.reshape(shape), self._sub_shape(u))

    def _flat_index_over(self, keep: Axes, u: Axes) -> np.ndarray:
        """Flat index of the ``keep`` level combination of every cell over ``u``."""
        idx = np.arange(int(np.prod(self._sub_shape(keep)))).reshape(self._sub_shape(keep))
        local = tuple(u.index(a) for a in keep)
        shape = [self.shape[a] if i in local else 1 for i, a in enumerate(u)]
        return np.broadcast_to(idx.reshape(shape), self._sub_shape(u))

    # -------------------------------------------------------------- tests
    def to_dense(self) -> np.ndarray:
        """Expand to the dense ``N x P`` matrix (rows in C order of the grid).

        For tests and benchmarks only: this is the array panelglm exists to avoid.
        """
        n = int(np.prod(self.shape))
        cols = []
        for blk in self.blocks:
            if isinstance(blk, DenseBlock):
                full = _expand(
                    blk.values, (*blk.axes, self.ndim), self.ndim + 1, (*self.shape, blk.n_cols)
                )
            else:
                onehot = np.zeros((*blk.codes.shape, blk.n_cols + 1))
                np.put_along_axis(onehot, blk.codes[..., None] % (blk.n_cols + 1), 1.0, -1)
                full = _expand(
                    onehot[..., :-1],
                    (*blk.axes, self.ndim),
                    self.ndim + 1,
                    (*self.shape, blk.n_cols),
                )
            cols.append(np.broadcast_to(full, (*self.shape, blk.n_cols)).reshape(n, -1))
        return np.hstack(cols) if cols else np.empty((n, 0))
