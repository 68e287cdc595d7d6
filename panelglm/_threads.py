"""Threads for the chunked passes, and BLAS held to one thread while they run."""

from __future__ import annotations

import contextlib
import os

# Worker threads per numpy pass. These passes are bound by memory and cache
# bandwidth: on the 2-core benchmark machine a second thread made fits 10-20 %
# slower (see benchmarks/PERF_NOTES.md), and one thread also fixes the order of
# every sum. Raise it where more cores and memory channels are free. (The
# compiled sweep, bound by arithmetic, runs its parts on up to
# _compiled.PARTS threads, in a fixed order of sums.)
MAX_THREADS = 1

_CONTROLLER = None


def blas_threads(n: int | None):
    """Hold BLAS to ``n`` threads (``None``: leave it alone); cheap after the first call."""
    global _CONTROLLER
    if n is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n, user_api="blas")


def blas_limit():
    """Hold BLAS to one thread: its calls in a pass are many and small."""
    return blas_threads(1)


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))
