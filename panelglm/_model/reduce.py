"""Sums of a cell-level array over subsets of the panel's axes, each computed once.

The factored kernels and the absorbed effects reduce the same array (a
curvature, a residual) to many axis subsets; each is summed from the
smallest one already made. ``einsum`` subscripts are spelt from axes.
"""

from __future__ import annotations

import string

import numpy as np

Axes = tuple[int, ...]


class Reducer:
    """Sums of one cell-level array over axis subsets, each computed once.

    A request is served from the smallest cached superset, so reducing to
    many small subsets costs about one pass over the full array.
    """

    def __init__(self, full: np.ndarray) -> None:
        self._cache: dict[Axes, np.ndarray] = {tuple(range(full.ndim)): full}

    def get(self, axes: Axes) -> np.ndarray:
        if axes in self._cache:
            return self._cache[axes]
        src_axes = min(
            (k for k in self._cache if set(axes) <= set(k)),
            key=lambda k: self._cache[k].size,
        )
        drop = tuple(i for i, a in enumerate(src_axes) if a not in axes)
        out = self._cache[src_axes].sum(axis=drop)
        self._cache[axes] = out
        return out


def letters(axes: Axes) -> str:
    return "".join(string.ascii_letters[a] for a in axes)
