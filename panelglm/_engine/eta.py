"""The linear predictor of a chunk, from the folded parts of the design's blocks.

A pass writes ``eta`` chunk by chunk: the blocks that vary along fewer than
all of the grid's axes are summed, per pass, into a few small arrays folded
over maximal axis sets (:func:`eta_parts`), and each chunk adds those and the
cell-level columns into a reused buffer (:func:`fill_eta`). Kept apart from
the engine's passes (:mod:`panelglm._engine.kernels`), which call both.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.blas

from .._model.blocks import DenseBlock
from .pass_spec import PassSpec

_AXPY = {"d": scipy.linalg.blas.daxpy, "f": scipy.linalg.blas.saxpy}


def rows(arr: np.ndarray, s: int, e: int) -> np.ndarray:
    """Rows ``s:e`` of the first axis of an array broadcastable to the grid."""
    return arr[s:e] if arr.ndim and arr.shape[0] > 1 else arr


def eta_parts(
    sp: PassSpec, beta: np.ndarray, cache: dict | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The linear predictor as folded small parts plus cell-level coefficient vectors.

    ``cache``, if given, holds the dense blocks' parts off the first axis for
    the passes over slabs of one grid (the engine's ``part_cache``):
    ``{"beta": bytes, block index: part}``.
    """
    parts = {}

    def add(axes, arr):
        parts[axes] = parts[axes] + arr if axes in parts else np.asarray(arr, np.float64)

    sls = sp.slices
    if cache is not None and cache.get("beta") != beta.tobytes():
        cache.clear()
        cache["beta"] = beta.tobytes()
    for i in sp.plan.rest:
        blk, b = sp.design.blocks[i], beta[sls[i]]
        if isinstance(blk, DenseBlock):
            if cache is None or 0 in blk.axes:
                add(blk.axes, blk.values @ b)
            else:
                if i not in cache:
                    cache[i] = np.asarray(blk.values @ b)
                    cache[i].flags.writeable = False  # later slabs read it too
                add(blk.axes, cache[i])
        else:
            add(blk.axes, np.append(b, 0.0)[blk.codes])
    if sp.offset_part is not None:
        add(tuple(sp.offset_part[1]), sp.offset_part[0])
    # Fold each part into one over a superset of its axes while both are
    # small, so that only parts over maximal axis sets touch every cell.
    for axes in sorted(parts, key=len):
        sups = [t for t in parts if set(axes) < set(t)]
        if sups:
            t = max(sups, key=len)
            local = [a for a in t if a in axes]
            shape = [sp.shape[a] if a in local else 1 for a in t]
            parts[t] = parts[t] + parts.pop(axes).reshape(shape)
    small = [sp.cast(sp.expand(arr, axes)) for axes, arr in parts.items()]
    cell = [sp.cast(beta[sls[i]]) for i in sp.plan.full]
    return small, cell


def fill_eta(sp: PassSpec, eta, s, e, small, cell, scratch=None) -> None:
    """Write the linear predictor of first-axis positions ``s:e`` into ``eta``.

    The small parts first (the first two in one broadcast add), then each
    cell-level column by one BLAS axpy: a matrix-vector product with a
    handful of columns, or a multiply and an add, cost more passes.
    """
    parts = [rows(part, s, e) for part in small]
    if sp.offset_full is not None:
        parts.append(sp.offset_full[s:e])
    if len(parts) >= 2:
        np.add(parts[0], parts[1], out=eta)
    elif parts:
        np.copyto(eta, parts[0])
    else:
        eta.fill(0.0)
    for part in parts[2:]:
        eta += part
    flat = eta.reshape(-1)
    axpy = _AXPY.get(eta.dtype.char)
    for i, b in zip(sp.plan.full, cell, strict=True):
        vals = sp.values[i]
        for q in range(vals.shape[-1]):
            col = vals[s:e, ..., q].reshape(-1)
            if axpy is not None and col.flags.c_contiguous and col.dtype == eta.dtype:
                axpy(col, flat, a=b[q])  # in place: flat is contiguous and of its type
            elif scratch is None:
                flat += col * b[q]
            else:
                tmp = scratch[: flat.size]
                np.multiply(col, b[q], out=tmp)
                flat += tmp
