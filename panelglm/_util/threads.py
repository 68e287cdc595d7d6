"""Threads for the chunked passes, and BLAS held to one thread while they run.

How many threads a fit may use is the estimators' ``n_threads``
(:func:`resolve_threads`: None is every core available to the process).
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

# Worker threads per numpy pass unless a caller asks for more. These passes
# are bound by memory and cache bandwidth, where a second thread measured
# slower (see benchmarks/PERF_NOTES.md), and one thread also fixes the order
# of every sum. (The compiled sweep, bound by arithmetic, runs one part per
# thread of n_threads, in a fixed order of sums.)
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
    return max(1, min(available_cores(), MAX_THREADS))


# Worker threads of the compiled sweep's parts (panelglm._engine.compiled), kept
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


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(n_threads: object) -> None:
    """Raise a ValueError naming ``n_threads`` unless it is None or a positive integer."""
    if n_threads is None:
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}.")


# The threads of the fit running in this context (see fit_threads).
_FIT_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "panelglm_fit_threads", default=None
)


# Whether the fit running in this context was given its threads by number.
_FIT_THREADS_ASKED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "panelglm_fit_threads_asked", default=False
)


def threads_asked(n_threads: int | None) -> bool:
    """Whether a pass's threads were asked for by number: its own, or its fit's."""
    return n_threads is not None or _FIT_THREADS_ASKED.get()


def resolve_threads(n_threads: int | None) -> int:
    """The threads a pass runs on: ``n_threads``; for None the fit's, or the available cores."""
    check_threads(n_threads)
    if n_threads is not None:
        return int(n_threads)
    fit = _FIT_THREADS.get()
    return available_cores() if fit is None else fit


@contextlib.contextmanager
def fit_threads(n_threads: int | None):
    """Within, passes not given their threads run on a fit's ``n_threads``.

    An estimator sets it around its fit, so that every pass of the fit (the
    solver's, and those made deep inside: the collinearity screen's) follows
    the estimator's parameter without each layer passing it on.
    """
    token = _FIT_THREADS.set(resolve_threads(n_threads))
    asked = _FIT_THREADS_ASKED.set(n_threads is not None)
    try:
        yield
    finally:
        _FIT_THREADS_ASKED.reset(asked)
        _FIT_THREADS.reset(token)


def run_parts(jobs: list, max_threads: int) -> list:
    """Run ``jobs`` (callables) on up to ``max_threads`` threads; their results in order.

    Returns only once every job has finished, even when one raises (or the
    wait is interrupted): the compiled sweeps write into arrays the caller
    reads, or lends again, when it returns.
    """
    global _POOL, _POOL_SIZE
    n = max(1, min(len(jobs), max_threads))
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
