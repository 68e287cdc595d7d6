"""The response tallied by value: every sum of a function of ``y`` alone from one pass.

The statistics at the solution and the objective's start need sums such as
``sum w log(y!)`` and ``sum w y log(y)`` (:func:`panelglm._model.statistics.y_sums`),
some tens of nanoseconds a cell with special functions. For counts (the usual
response of a large panel) each distinct value is evaluated once and weighted
by how often it occurs. The compiled sweep's module tallies a part in one read
of it; numpy takes five passes where it is not built.
"""

from __future__ import annotations

import numpy as np

from .._data.layout import CHUNK_CELLS
from . import compiled as _compiled

# Counts up to this value are tallied by value (a table of this many floats).
MAX_TALLY = 1 << 20
# The table a part's counts are first tallied in (the compiled tally).
SMALL_TALLY = 1 << 12


def tally_part(y: np.ndarray, w: np.ndarray | None) -> np.ndarray | None:
    """Weighted counts of each integer value of one part of ``y``, or None if not small counts."""
    part = y.reshape(-1)
    flat_w = None if w is None else np.broadcast_to(w, y.shape).reshape(-1)
    if _compiled.enabled() and _contiguous64(part) and (w is None or _contiguous64(flat_w)):
        # One read of the part, checks and counts together (numpy: five passes);
        # the whole table only for the rare part with a count beyond the small one.
        for size in (SMALL_TALLY, MAX_TALLY + 1):
            counts = np.zeros(size)
            used = _compiled._sweep.tally(part, flat_w, counts)
            if used != -2:
                break
        return None if used < 0 else counts[:used].copy()
    if part.size and not (part.min() >= 0 and part.max() <= MAX_TALLY):
        return None  # checked first: a huge y must not be cast to int
    ints = part.astype(np.int64)
    if not np.array_equal(ints, part):
        return None
    return np.bincount(ints, weights=flat_w).astype(np.float64, copy=False)


def _contiguous64(a: np.ndarray) -> bool:
    return a.dtype == np.float64 and a.flags.c_contiguous


def merge_tallies(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """The counts of the parts' union, added in the parts' order (None if any is None)."""
    counts = None
    for c in parts:
        if c is None:
            return None
        if counts is None:
            counts = c.copy()
            continue
        if len(c) > len(counts):
            counts = np.pad(counts, (0, len(c) - len(counts)))
        counts[: len(c)] += c
    return counts


def _tally(y: np.ndarray, w: np.ndarray | None) -> np.ndarray | None:
    """Weighted counts of each integer value of ``y``, or None if ``y`` is not small counts."""
    flat, wf = y.reshape(-1), None if w is None else w.reshape(-1)
    parts = []
    for s in range(0, flat.size, CHUNK_CELLS):
        parts.append(
            tally_part(flat[s : s + CHUNK_CELLS], None if wf is None else wf[s : s + CHUNK_CELLS])
        )
        if parts[-1] is None:
            return None
    return merge_tallies(parts)


def tally(y: np.ndarray, m: np.ndarray | float, w: np.ndarray | None) -> np.ndarray | None:
    """Weighted counts of each value of ``y`` (index = value), or None.

    None unless ``y`` is small non-negative counts and the trials one number:
    then every sum of a function of ``y`` alone
    (:func:`~panelglm._model.statistics.y_sums`) is a dot product with these
    counts, however many such sums a fit needs.
    """
    return _tally(y, w) if np.ndim(m) == 0 else None
