"""One panelglm fit at a given size, as the harness runs it: time and peak memory.

Usage (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/profile_scale.py --n 500 --p 10 [--dtype float32]

Generates the benchmark panel (``benchmarks/datagen.py``), presents it as a cell
frame plus dimension tables, lays it out with ``PanelDesign`` and fits
``PanelPoissonRegressor``. Prints the time of each phase and the process's peak
RSS after each (which includes the generated data the process holds).
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


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    from panelglm import PanelDesign, PanelPoissonRegressor

    t0 = time.perf_counter()
    panel = datagen.make_panel(args.n, p=args.p, seed=0)
    print(f"generate {time.perf_counter() - t0:.1f}s  peak {rss_gb():.2f} GB", flush=True)
    t0 = time.perf_counter()
    cells, tables, y = datagen.to_cell_frame_and_tables(panel)
    data = PanelDesign(dims=list(datagen.DIMS), tables=tables).fit_transform(cells)
    print(f"frames + design {time.perf_counter() - t0:.1f}s  peak {rss_gb():.2f} GB", flush=True)
    dtype = np.dtype(args.dtype).type
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        est = PanelPoissonRegressor(dtype=dtype).fit(data, y)
        print(
            f"fit {time.perf_counter() - t0:.1f}s ({est.n_iter_} iterations, "
            f"converged={est.converged_})  peak {rss_gb():.2f} GB",
            flush=True,
        )
    coef = dict(zip(est.coef_names_, est.coef_, strict=True))
    err = max(abs(coef[k] - v) for k, v in panel.true_coef.items() if k in coef)
    print(f"max |coef - truth| = {err:.2e}; loglik {est.loglik_:.6f}")


if __name__ == "__main__":
    main()
