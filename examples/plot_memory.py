"""
Memory: the dense design matrix against panelglm's blocks
=========================================================

A general GLM library fits a panel model from the dense design matrix: one
row per cell, one column per coefficient, ``N x P`` float64 numbers. With
fixed effects, ``P`` runs into the hundreds or thousands and that matrix no
longer fits in memory. panelglm stores each covariate once per level of the
dimensions it varies along, a fixed effect as one integer code per level, and
needs only a handful of ``N``-sized arrays (the response, the linear predictor
and its derivatives), whatever ``P`` is.

This example first **measures** both at a size where the dense approach still
runs: the peak memory (with :mod:`tracemalloc`) of scikit-learn's
``PoissonRegressor`` on the dense matrix and of panelglm on the long frame.
It then **computes from the shapes** what the same models would need on a
retailer's full panel.
"""

import os
import tracemalloc

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import PoissonRegressor

from panelglm import PanelDesign, PanelPoissonRegressor

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_customers, n_products, n_weeks = (60, 10, 8) if SMALL else (300, 30, 26)
rng = np.random.default_rng(0)

# %%
# A customer x product x week panel
# ---------------------------------
# Income by customer, price by product-week, loyalty by customer-product, and
# product and week fixed effects.
c, p, w = (
    a.ravel()
    for a in np.meshgrid(
        np.arange(n_customers), np.arange(n_products), np.arange(n_weeks), indexing="ij"
    )
)
income = rng.normal(size=n_customers)
price = rng.normal(size=(n_products, n_weeks))
loyalty = rng.normal(size=(n_customers, n_products))
eta = (
    -1.0
    + 0.3 * income[c]
    - 0.5 * price[p, w]
    + 0.2 * loyalty[c, p]
    + rng.normal(scale=0.3, size=n_products)[p]
    + rng.normal(scale=0.3, size=n_weeks)[w]
)
df = pd.DataFrame(
    {
        "customer": c,
        "product": p,
        "week": w,
        "income": income[c],
        "price": price[p, w],
        "loyalty": loyalty[c, p],
    }
)
y = rng.poisson(np.exp(eta)).astype(float)
n_cells = len(df)


def peak_bytes(fit):
    """Run ``fit()`` and return its result and the peak memory it allocated."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = fit()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# %%
# The dense route
# ---------------
# Expand the long frame into the ``N x P`` matrix: the three covariates and
# one dummy column per product and per week (the first level of each is the
# reference), then fit scikit-learn's Newton solver.


def fit_dense():
    X = np.column_stack(
        [
            df[["income", "price", "loyalty"]].to_numpy(),
            (df["product"].to_numpy()[:, None] == np.arange(1, n_products)).astype(float),
            (df["week"].to_numpy()[:, None] == np.arange(1, n_weeks)).astype(float),
        ]
    )
    model = PoissonRegressor(alpha=0.0, solver="newton-cholesky", tol=1e-10, max_iter=100)
    return model.fit(X, y), X.nbytes


(dense, dense_x_bytes), dense_peak = peak_bytes(fit_dense)

# %%
# The factored route
# ------------------
# Lay out the same long frame and fit the same model.


def fit_factored():
    design = PanelDesign(dims=["customer", "product", "week"], fixed_effects=["product", "week"])
    return PanelPoissonRegressor().fit(design.fit_transform(df), y)


ours, ours_peak = peak_bytes(fit_factored)
n_coef = len(ours.coef_) + 1
diff = np.max(np.abs(np.r_[ours.intercept_, ours.coef_] - np.r_[dense.intercept_, dense.coef_]))
print(f"{n_cells:,} cells, {n_coef} coefficients; largest coefficient difference {diff:.1e}")
print(f"dense N x P matrix:      {dense_x_bytes / 1e6:8.1f} MB")
print(f"scikit-learn fit, peak:  {dense_peak / 1e6:8.1f} MB")
print(f"panelglm fit, peak:      {ours_peak / 1e6:8.1f} MB")

# %%
# panelglm's peak is a fixed number of ``N``-sized arrays (the dimension codes
# of every row, the response, the linear predictor and its derivatives) plus
# small blocks; express it per cell to project it to other sizes.
arrays_per_cell = ours_peak / (8 * n_cells)
print(f"panelglm's peak is about {arrays_per_cell:.1f} float64 values per cell")

# %%
# A retailer's full panel, computed from the shapes
# -------------------------------------------------
# 10,000 customers, 200 products and 52 weeks: 104 million cells. Three
# models: the covariates alone; with product and week fixed effects; and with
# customer fixed effects as well (which absorb income). The dense matrix has
# ``N x P`` float64 entries. panelglm holds the covariate blocks, one integer
# code per level of a fixed effect, the ``N``-sized arrays measured above, and
# the ``P x P`` Hessian with its Cholesky factor. The dense matrix alone is a
# lower bound for the dense route: scikit-learn's peak above was about twice
# its size, and it needs its own ``N``-sized arrays too. With only a few
# coefficients, though, panelglm's fixed ``N``-sized overhead is the larger.
n_cust, n_prod, n_week = 10_000, 200, 52
N = n_cust * n_prod * n_week
blocks = {"income": n_cust, "price": n_prod * n_week, "loyalty": n_cust * n_prod}
specs = {
    "covariates only": (["income", "price", "loyalty"], {}),
    "+ product, week FE": (["income", "price", "loyalty"], {"product": n_prod, "week": n_week}),
    "+ customer FE": (
        ["price", "loyalty"],
        {"customer": n_cust, "product": n_prod, "week": n_week},
    ),
}
rows = []
for label, (covs, fes) in specs.items():
    P = 1 + len(covs) + sum(n - 1 for n in fes.values())
    rows.append(
        {
            "model": label,
            "P": P,
            "dense N x P matrix": 8.0 * N * P,
            "panelglm blocks": 8.0 * (sum(blocks[v] for v in covs) + sum(fes.values())),
            "panelglm N-sized arrays": 8.0 * N * arrays_per_cell,
            "panelglm P x P Hessian": 2 * 8.0 * P * P,
        }
    )
table = pd.DataFrame(rows).set_index("model")
print((table.drop(columns="P") / 2**30).round(3).T.to_string(), "(GiB)")

# %%
# The figure
# ----------
# Left: what was measured. Right: the projection (log scale). The dense
# matrix grows with ``N x P``; panelglm's memory is set by ``N`` alone until
# the ``P x P`` Hessian itself becomes large, at tens of thousands of
# coefficients.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[1, 2])
bars = {
    "N x P matrix": dense_x_bytes,
    "scikit-learn\nfit (peak)": dense_peak,
    "panelglm\nfit (peak)": ours_peak,
}
ax1.bar(list(bars), np.array(list(bars.values())) / 1e6, color=["0.6", "C3", "C0"])
for k, v in enumerate(bars.values()):
    ax1.annotate(f"{v / 1e6:.0f} MB", (k, v / 1e6), ha="center", va="bottom")
ax1.set_ylabel("MB")
ax1.set_title(f"measured: {n_cells:,} cells, P = {n_coef}", fontsize="medium")

cols = [
    "dense N x P matrix",
    "panelglm blocks",
    "panelglm N-sized arrays",
    "panelglm P x P Hessian",
]
colors = ["C3", "C2", "C0", "C9"]
x = np.arange(len(table))
width = 0.2
for k, (col, color) in enumerate(zip(cols, colors, strict=True)):
    ax2.bar(x + (k - 1.5) * width, table[col] / 2**30, width, label=col, color=color)
ax2.axhline(24, color="k", lw=1, ls=":")
ax2.annotate("24 GiB of RAM", (x[-1] + 0.45, 24), ha="right", va="bottom", fontsize="small")
ax2.set_yscale("log")
ax2.set_xticks(x, [f"{m}\nP = {p:,}" for m, p in zip(table.index, table["P"], strict=True)])
ax2.set_ylabel("GiB (log scale)")
ax2.set_title(
    f"computed: {n_cust:,} x {n_prod} x {n_week} = {N / 1e6:.0f} million cells",
    fontsize="medium",
)
ax2.legend(fontsize="small", loc="upper left")
fig.tight_layout()

if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "memory.png"), dpi=100)
