"""A Hessian block of two dense blocks as two array products, planned once per pair.

The block of dense blocks ``A`` (axes ``a``) and ``B`` (axes ``b``) is::

    out[y, z] = sum over u of t[u] * A[a, y] * B[b, z],    u = a | b,

with ``t`` the curvature reduced to ``u``. Splitting ``u`` into the axes both
blocks share (``C``) and those only one has (``Oa``, ``Ob``), it is a batched
matrix product over ``C`` followed by one matrix product::

    T[c, oa, z] = sum_ob t[c, oa, ob] B[c, ob, z];    out = A[(c, oa), y]' T[(c, oa), z]

(or the same with the roles of ``A`` and ``B`` swapped, whichever costs fewer
multiplications). ``np.einsum`` finds the same order, but re-derives it on
every call: at a million cells and 22 block pairs, that bookkeeping cost more
than the products themselves, once per Newton step.
"""

from __future__ import annotations

import numpy as np

# A block laid out in a new order is kept only up to this many values: a
# cell-level block's copy is as large as the grid, and one kept per pair held
# that much memory for the whole fit. Larger ones are laid out again at each
# call (over one slab of the grid: see FactoredDesign._slabs).
KEEP_LAYOUT = 1 << 20


def _as3(
    values: np.ndarray, axes: tuple[int, ...], first: list[int], second: list[int]
) -> np.ndarray:
    """``values`` (over ``axes``, then columns) as ``(prod first, prod second, columns)``."""
    order = [axes.index(x) for x in (*first, *second)] + [len(axes)]
    moved = np.transpose(values, order)
    n1 = int(np.prod(moved.shape[: len(first)], dtype=np.int64))
    n2 = int(np.prod(moved.shape[len(first) : -1], dtype=np.int64))
    return np.ascontiguousarray(moved.reshape(n1, n2, values.shape[-1]))


def _kept(layout: np.ndarray, values: np.ndarray) -> bool:
    return layout.size <= KEEP_LAYOUT or np.shares_memory(layout, values)


class DensePair:
    """The Hessian block of two dense blocks, as a function of the reduced curvature.

    Parameters
    ----------
    u : tuple of int
        Sorted union of the two blocks' axes; the axes of ``t``.
    a_axes, b_axes : tuple of int
        The blocks' axes.
    a_values, b_values : ndarray
        The blocks' values (over their axes, then their columns).
    """

    def __init__(
        self,
        u: tuple[int, ...],
        a_axes: tuple[int, ...],
        a_values: np.ndarray,
        b_axes: tuple[int, ...],
        b_values: np.ndarray,
    ) -> None:
        shared = [x for x in u if x in a_axes and x in b_axes]
        only_a = [x for x in u if x in a_axes and x not in b_axes]
        only_b = [x for x in u if x in b_axes and x not in a_axes]
        self._a = (a_values, a_axes, shared, only_a)
        self._b = (b_values, b_axes, shared, only_b)
        a3, b3 = _as3(*self._a), _as3(*self._b)
        (n_c, n_a, n_y), (n_b, n_z) = a3.shape, b3.shape[1:]
        # t contracted with B first costs n_c n_a n_b n_z + n_c n_a n_y n_z
        # multiplications; with A first, the same with y and z (and a, b) swapped.
        self.b_first = n_a * n_b * n_z + n_a * n_y * n_z <= n_b * n_a * n_y + n_b * n_y * n_z
        self.perm = [u.index(x) for x in (*shared, *only_a, *only_b)]
        self.in_order = self.perm == sorted(self.perm)
        self.t_shape = (n_c, n_a, n_b)
        self.a3 = a3 if _kept(a3, a_values) else None
        self.b3 = b3 if _kept(b3, b_values) else None
        # Blocks over the same axes: out = (A' * t) B, with A' and B' stored
        # row by row, so that the product with t runs along contiguous rows
        # (a broadcast over n_c rows of a few columns is slow) and the matrix
        # product takes dot products of rows (OpenBLAS is ten times slower on
        # a 3 x n by n x 3 product laid out otherwise).
        self.diagonal = n_a == n_b == 1
        if self.diagonal:
            self.a_t = np.ascontiguousarray(a3.reshape(n_c, n_y).T)
            self.b_t = np.ascontiguousarray(b3.reshape(n_c, n_z).T)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """The ``(n_cols_a, n_cols_b)`` block for the curvature ``t`` over ``u``."""
        t3 = (t if self.in_order else t.transpose(self.perm)).reshape(self.t_shape)
        if self.diagonal:
            return (self.a_t * t3.reshape(-1)) @ self.b_t.T
        a3 = _as3(*self._a) if self.a3 is None else self.a3
        b3 = _as3(*self._b) if self.b3 is None else self.b3
        if self.b_first:  # contract over Ob, then over (C, Oa) with A
            near, far, keep = t3, b3, a3
        else:  # contract over Oa, then over (C, Ob) with B
            near, far, keep = t3.transpose(0, 2, 1), a3, b3
        # A contraction over a single position is a broadcast product, not
        # n_c matrix products of one row each.
        part = near * far if near.shape[2] == 1 else np.matmul(near, far)
        flat = keep.reshape(-1, keep.shape[2])
        out = flat.T @ part.reshape(flat.shape[0], -1)
        return out if self.b_first else out.T
