"""Out-of-core fits with Dask: a panel in a zarr store, fitted by a LocalCluster.

Three commands:

``write``
    Build an ``n x n x n`` Poisson panel as an xarray Dataset (float32 ``y``,
    one float32 cell-level covariate, covariate blocks at every other level:
    P = 41) chunk by chunk with Dask, and save it to a zarr store.
``fit``
    Open the store lazily and fit it on a ``LocalCluster`` (``--workers``
    processes of one thread each), sampling the resident memory of every
    process; each pass over the cells is timed.
``memory``
    The same model on the first ``--cells`` customers of the store, loaded
    into memory and fitted by the in-memory engine: the per-cell rate that
    Dask's overhead is measured against.

Usage::

    python benchmarks/bench_dask.py write --n 1000 --store /path/panel.zarr
    python benchmarks/bench_dask.py fit --store /path/panel.zarr --workers 2 [--keep-freed]
    python benchmarks/bench_dask.py memory --store /path/panel.zarr --customers 125

Each command prints one JSON line of measurements (``--out`` appends it to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

DIMS = ("customer", "product", "week")
# Columns of each covariate block: with the intercept and the cell-level
# covariate, P = 41 (as the in-memory benchmark's 500^3 panel).
BLOCKS = {
    ("customer",): 8,
    ("product",): 8,
    ("week",): 8,
    ("customer", "product"): 4,
    ("customer", "week"): 4,
    ("product", "week"): 7,
}


def _block_name(axes: tuple[str, ...], k: int) -> str:
    return "x_" + "_".join(a[0] for a in axes) + f"{k}"


def write(n: int, store: str, chunk: int, seed: int) -> dict:
    """Save the panel to ``store``; blocks are small and made in memory, cells chunk by chunk."""
    import dask.array as da
    import xarray as xr

    rng = np.random.default_rng(seed)
    shape = {d: n for d in DIMS}
    data = {}
    eta_small = {}
    for axes, k in BLOCKS.items():
        sizes = tuple(shape[a] for a in axes)
        coef = rng.normal(scale=0.05, size=k)
        values = rng.normal(size=(*sizes, k)).astype(np.float32)
        for j in range(k):
            data[_block_name(axes, j)] = (axes, values[..., j])
        eta_small[axes] = (values @ coef).astype(np.float32)

    def cells(block_info=None):
        lo, hi = block_info[None]["array-location"][1]
        r = np.random.default_rng([seed, lo])
        x = r.normal(size=(hi - lo, n, n)).astype(np.float32)
        eta = 0.2 * x + 0.5
        eta += eta_small[("customer",)][lo:hi, None, None]
        eta += eta_small[("product",)][None, :, None]
        eta += eta_small[("week",)][None, None, :]
        eta += eta_small[("customer", "product")][lo:hi, :, None]
        eta += eta_small[("customer", "week")][lo:hi, None, :]
        eta += eta_small[("product", "week")][None, :, :]
        y = r.poisson(np.exp(eta)).astype(np.float32)
        return np.stack([y, x])

    both = da.map_blocks(
        cells,
        dtype=np.float32,
        chunks=((2,), _chunks(n, chunk), (n,), (n,)),
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    data["y"] = (DIMS, both[0])
    data["x"] = (DIMS, both[1])
    ds = xr.Dataset(data, coords={d: np.arange(n) for d in DIMS})
    encoding = {v: {"compressors": None} for v in ("y", "x")}
    start = time.perf_counter()
    ds.to_zarr(store, mode="w", encoding=encoding)
    return {"command": "write", "n": n, "chunk": chunk, "seconds": time.perf_counter() - start}


def _chunks(n: int, chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, n - s) for s in range(0, n, chunk))


class _Memory:
    """Peak of the summed resident memory of this process and its children."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.proc, self.peak, self.interval = psutil.Process(), 0, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1e9


def _timed_passes() -> list:
    """Record the wall time of every pass of the Dask engine: (what, seconds).

    A Newton step's pass (loss, gradient and Hessian, assembled) is
    ``"loss_grad_hess"``, as the in-memory engine's (:func:`memory`); within
    it, the tree of the slabs' tasks is ``"full"`` (the first also gives
    ``X'(w y)``: ``"full+wy"``). ``"loss"`` is a line search's; the others
    are the statistics' and checks' sums.
    """
    from panelglm._engine import dask_engine

    passes: list = []
    engine = dask_engine.DaskEngine

    def timed(name, real):
        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            out = real(self, *args, **kwargs)
            label = name or (args[0] or "slab_sums")
            passes.append((label, time.perf_counter() - start))
            return out

        return wrapper

    engine._sum = timed(None, engine._sum)
    engine._assembled = timed(None, engine._assembled)
    engine.loss_grad_hess = timed("loss_grad_hess", engine.loss_grad_hess)
    return passes


def _model():
    from panelglm import PanelPoissonRegressor

    return PanelPoissonRegressor(dims=list(DIMS))


def _summary(passes: list) -> dict:
    steps = [t for m, t in passes if m == "loss_grad_hess"]
    return {
        "passes": [m for m, _ in passes],
        "steps": len(steps),
        "step_s": [round(t, 3) for t in steps],
        "step_median_s": float(np.median(steps)) if steps else None,
        "step_min_s": float(np.min(steps)) if steps else None,
        "pass_seconds_total": float(sum(t for m, t in passes if m != "loss_grad_hess")),
    }


# glibc settings for the workers (``--keep-freed``): freed blocks of up to 32 MB
# stay in the heap for the next slab instead of going back to the system,
# which would fault fresh pages in at every pass (distributed's nanny sets
# MALLOC_TRIM_THRESHOLD_ to 64 KiB by default, to hand memory back).
KEEP_FREED = {"MALLOC_TRIM_THRESHOLD_": 1 << 30, "MALLOC_MMAP_THRESHOLD_": 1 << 25}


def fit(
    store: str,
    workers: int,
    memory_limit: str,
    customers: int | None = None,
    keep_freed: bool = False,
) -> dict:
    """Fit the store (its first ``customers``, if given) on a LocalCluster of ``workers``
    single-threaded processes (with :data:`KEEP_FREED` in their environment if asked)."""
    import dask
    import xarray as xr
    from distributed import Client, LocalCluster

    if keep_freed:  # dotted keys: beside distributed's own settings, not instead of them
        environ = "distributed.nanny.pre-spawn-environ"
        dask.config.set({f"{environ}.{k}": v for k, v in KEEP_FREED.items()})

    memory = _Memory()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=memory_limit,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster),
    ):
        ds = xr.open_zarr(store)
        if customers is not None:  # a quicker run on part of the store
            ds = ds.isel(customer=slice(0, customers))
        passes = _timed_passes()
        start = time.perf_counter()
        est = _model().fit(ds, "y")
        seconds = time.perf_counter() - start
    peak = memory.stop()
    n = int(np.prod([ds.sizes[d] for d in DIMS]))
    out = {
        "command": "fit",
        "workers": workers,
        "keep_freed": keep_freed,
        "cells": n,
        "chunks": len(ds.y.chunks[0]),
        "n_coef": int(est.coef_.size + 1),
        "n_iter": int(est.n_iter_),
        "fit_s": seconds,
        "peak_rss_gb_all_processes": peak,
        "cpu_count": os.cpu_count(),
    }
    out.update(_summary(passes))
    return out


def memory(store: str, customers: int) -> dict:
    """The same model on the first ``customers`` customers, in memory (the reference rate)."""
    import xarray as xr

    from panelglm._engine import engines

    ds = xr.open_zarr(store).isel(customer=slice(0, customers)).load()
    passes: list = []
    real = engines.make_engine

    def timed_engine(*args, **kwargs):
        engine = real(*args, **kwargs)
        for name in ("loss_grad_hess", "loss"):
            method = getattr(engine, name)

            def wrapped(*a, _m=method, _n=name):
                start = time.perf_counter()
                out = _m(*a)
                passes.append((_n, time.perf_counter() - start))
                return out

            setattr(engine, name, wrapped)
        return engine

    from panelglm._engine import objective

    objective.make_engine = timed_engine
    memory_ = _Memory()
    start = time.perf_counter()
    est = _model().fit(ds, "y")
    seconds = time.perf_counter() - start
    out = {
        "command": "memory",
        "cells": int(np.prod([ds.sizes[d] for d in DIMS])),
        "n_iter": int(est.n_iter_),
        "fit_s": seconds,
        "peak_rss_gb": memory_.stop(),
    }
    out.update(_summary(passes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("--n", type=int, default=1000)
    w.add_argument("--chunk", type=int, default=8, help="customers per chunk")
    w.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("fit")
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--memory-limit", default="2.5GB", help="per worker")
    f.add_argument("--customers", type=int, help="fit only the first customers")
    f.add_argument(
        "--keep-freed", action="store_true", help="workers keep freed memory (glibc, Linux)"
    )
    m = sub.add_parser("memory")
    m.add_argument("--customers", type=int, default=125)
    for p in (w, f, m):
        p.add_argument("--store", required=True)
        p.add_argument("--out", help="append the JSON line to this file")
    args = parser.parse_args()
    if args.command == "write":
        result = write(args.n, args.store, args.chunk, args.seed)
    elif args.command == "fit":
        result = fit(args.store, args.workers, args.memory_limit, args.customers, args.keep_freed)
    else:
        result = memory(args.store, args.customers)
    # Other work on the machine slows every number: the load during the run says how much.
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
