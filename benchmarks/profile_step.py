"""Time one panelglm Newton step against one memory pass (np.exp over N values).

Usage (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/profile_step.py --n 100 --p 40 [--dtype float32] [--fit] \\
        [--n-threads 1 2]

Builds the benchmark's panel (``benchmarks/datagen.py``) as a cell frame plus
dimension tables, lays it out with ``PanelDesign``, then reports the minimum
over repeats of: ``np.exp`` over N float64 values, one fused loss-gradient-Hessian
pass, one loss-only pass, and (with ``--fit``) the whole fit and the peak RSS.
With ``--n-threads 1 2`` the passes (and fits) are timed for each ``n_threads``
in turn, in the same process (default: panelglm's own, the available cores).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

# The checkout's own panelglm and benchmark harness, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import datagen


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--p", type=int, default=40)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--n-threads", type=int, nargs="+", default=[None])
    args = ap.parse_args(argv)

    from panelglm import PanelDesign

    panel = datagen.make_panel(args.n, p=args.p, seed=0)
    cells, tables, y = datagen.to_cell_frame_and_tables(panel)
    t0 = time.perf_counter()
    data = PanelDesign(dims=list(datagen.DIMS), tables=tables).fit_transform(cells)
    design_s = time.perf_counter() - t0
    n = panel.n_cells
    a = np.full(n, 0.5)
    b = np.empty_like(a)
    exp_s = best(lambda: np.exp(a, out=b), args.repeat)

    for n_threads in args.n_threads:
        run(args, data, y, n_threads, exp_s, design_s, n)


def run(args, data, y, n_threads, exp_s, design_s, n):
    """Time the passes (and with ``--fit`` the fit) of one ``n_threads``."""
    import warnings

    from panelglm import PanelPoissonRegressor
    from panelglm._estimators.base import PanelGLMBase

    kw = {} if n_threads is None else {"n_threads": n_threads}
    est = PanelPoissonRegressor(dtype=np.dtype(args.dtype).type, max_iter=1, **kw)
    captured = {}
    orig = PanelGLMBase._set_results

    def grab(self, spec, order, objective, result, problem):
        captured["objective"] = objective
        captured["beta"] = result.coef
        return orig(self, spec, order, objective, result, problem)

    PanelGLMBase._set_results = grab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data, y)
    PanelGLMBase._set_results = orig
    obj, beta = captured["objective"], captured["beta"]
    step_s = best(lambda: obj.loss_grad_hess(beta), args.repeat)
    loss_s = best(lambda: obj.loss(beta), args.repeat)
    print(
        f"n_threads={n_threads} N={n:.3g} P={data_P(est)} design {design_s:.2f}s"
        f"  exp {exp_s * 1e3:.2f} ms"
    )
    print(
        f"  fused loss+grad+hess pass {step_s * 1e3:.2f} ms = {step_s / exp_s:.2f} exp passes;"
        f" loss-only pass {loss_s * 1e3:.2f} ms = {loss_s / exp_s:.2f}"
    )
    if args.fit:
        est = PanelPoissonRegressor(dtype=np.dtype(args.dtype).type, **kw)
        fit_s = best(lambda: est.fit(data, y), 3)
        print(
            f"  fit {fit_s:.3f}s in {est.n_iter_} iterations; peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
        )


def data_P(est):
    return len(est.coef_) + 1


if __name__ == "__main__":
    main()
