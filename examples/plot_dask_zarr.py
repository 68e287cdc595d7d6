"""
A panel on disk: xarray, zarr and Dask
======================================

A retail panel of stores x products x weeks is an N-dimensional labelled
array, and past a few billion cells it no longer fits in memory. Here it is
built as an ``xarray.Dataset`` (store income over ``store``, prices over
``(product, week)``, promotions and sales over every cell), saved to a zarr
store, and opened again lazily: its cell-level variables are then Dask
arrays, read chunk by chunk. panelglm fits such a Dataset as it fits one in
memory; every pass over the cells becomes Dask tasks over runs of chunks of
stores, read one chunk at a time, whose sums (a number, a gradient, a P x P
matrix) are added up in a tree, and only those sums reach the Newton loop.
The tasks run on whatever scheduler is active: here a ``dask.distributed``
client, the same code that runs on a cluster. See :ref:`labelled_arrays`.

The example needs the ``dask`` extra: ``pip install "panelglm[dask]"``.
"""

import os
import tempfile
import time

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import dask
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

from panelglm import PanelPoissonRegressor

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_stores, n_products, n_weeks = (60, 20, 26) if SMALL else (400, 60, 52)
rng = np.random.default_rng(18)

# %%
# Build the panel as a Dataset
# ----------------------------
# Each variable lives at its own level: income once per store, the price once
# per product and week, the promotion and the sales once per cell. The
# dimensions are the panel's, the coordinates its levels.
cell = ("store", "product", "week")
income = rng.normal(size=n_stores)
price = rng.normal(size=(n_products, n_weeks))
promo = rng.binomial(1, 0.2, size=(n_stores, n_products, n_weeks)).astype(np.float32)
true = {"income": 0.3, "price": -0.5, "promo": 0.4}
eta = (
    0.5
    + true["income"] * income[:, None, None]
    + true["price"] * price[None, :, :]
    + true["promo"] * promo
)
ds = xr.Dataset(
    {
        "income": ("store", income),
        "price": (("product", "week"), price),
        "promo": (cell, promo),
        "sales": (cell, rng.poisson(np.exp(eta)).astype(np.float32)),
    },
    coords={
        "store": [f"s{k:04d}" for k in range(n_stores)],
        "product": [f"p{k:03d}" for k in range(n_products)],
        "week": np.arange(n_weeks),
    },
)
print(f"{ds.sales.size:,} cells")

# %%
# Save it to zarr and open it lazily
# ----------------------------------
# The store is written in chunks of stores: every pass reads a chunk of each
# cell-level variable in one task. ``open_zarr`` reads nothing yet; the
# cell-level variables are Dask arrays.
path = os.path.join(tempfile.mkdtemp(), "retail.zarr")
ds.chunk({"store": 25}).to_zarr(path, mode="w")
lazy = xr.open_zarr(path)
print(type(lazy.sales.data).__module__, lazy.sales.data.chunksize)

# %%
# Fit it with Dask
# ----------------
# A ``LocalCluster`` stands in for a cluster (threads here, so that the
# example runs anywhere; ``processes=True`` or a remote scheduler's address is
# all a real one changes). The Newton loop, the P x P solves and the line
# search stay in this process; each pass is a set of tasks on the workers.
# The same Dataset loaded into memory gives the same fit.
with LocalCluster(
    n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
) as cluster:
    with Client(cluster):
        start = time.perf_counter()
        est = PanelPoissonRegressor().fit(lazy, "sales")
        dask_seconds = time.perf_counter() - start
memory = PanelPoissonRegressor().fit(ds, "sales")
print(est.summary())
print(f"largest difference to the in-memory fit: {np.max(np.abs(est.coef_ - memory.coef_)):.1e}")

# %%
# How big a chunk?
# ----------------
# Each chunk is read and swept on its own within its task, and has a fixed
# cost (its read, its slab's set-up and accumulators: milliseconds here)
# besides its cells; a task runs several chunks while each worker still gets
# a few tasks. Chunks of a few million cells or more make that cost vanish;
# tiny chunks pay it many times. Here the same fit, on the threaded
# scheduler, with chunks from one store to all.
sizes = [1, 5, 25, n_stores] if SMALL else [1, 5, 25, 100, n_stores]
seconds = []
for size in sizes:
    chunked = ds.chunk({"store": size})
    with dask.config.set(scheduler="threads"):
        start = time.perf_counter()
        PanelPoissonRegressor().fit(chunked, "sales")
        seconds.append(time.perf_counter() - start)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
names = list(true)
x = np.arange(len(names))
ax1.bar(x - 0.2, [true[n] for n in names], width=0.4, label="true", color="0.7")
ax1.bar(x + 0.2, est.coef_, width=0.4, yerr=1.96 * est.bse_[names].to_numpy(), label="Dask fit")
ax1.set_xticks(x, names)
ax1.axhline(0, color="k", lw=0.5)
ax1.set_title("Coefficients from the zarr store (95% intervals)")
ax1.legend()
cells_per_chunk = [s * n_products * n_weeks for s in sizes]
ax2.loglog(cells_per_chunk, seconds, "o-")
ax2.set_xlabel("cells per chunk")
ax2.set_ylabel("whole fit (s)")
ax2.set_title("Fit time against chunk size")
fig.tight_layout()
if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "dask_zarr.png"), dpi=100)
