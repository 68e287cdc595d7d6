"""Threads for the chunked passes, and BLAS held to one thread while they run."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

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
    return max(1, min(_cores(), MAX_THREADS))


# Worker threads of the compiled sweep's parts (panelglm._compiled), kept
# from pass to pass.
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    # A forked child has the pool object but not its thread: a part submitted
    # there would never run.
    global _POOL, _POOL_SIZE
    _POOL, _POOL_SIZE = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_parts(jobs: list, max_threads: int) -> list:
    """Run ``jobs`` (callables) on up to ``max_threads`` threads; their results in order.

    Returns only once every job has finished, even when one raises (or the
    wait is interrupted): the compiled sweeps write through raw addresses
    into arrays the caller frees when it returns.
    """
    global _POOL, _POOL_SIZE
    n = max(1, min(_cores(), max_threads))
    if len(jobs) <= 1 or n == 1:
        return [job() for job in jobs]
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n - 1:
            _POOL, _POOL_SIZE = ThreadPoolExecutor(n - 1, thread_name_prefix="panelglm"), n - 1
        pool = _POOL
    futures = [pool.submit(job) for job in jobs[1:]]
    try:
        first = jobs[0]()
    finally:
        wait(futures)
    return [first, *(f.result() for f in futures)]
