"""Elastic-net Poisson on a 3-D panel: panelglm (proximal Newton) against glum.

glum fits the dense matrix built from the long frame; panelglm the factored
blocks. Prints wall time and the largest coefficient difference per setting.
Run: python benchmarks/bench_elastic_net.py [n_customers]
"""

import sys
import time

import numpy as np
import pandas as pd
from glum import GeneralizedLinearRegressor

from panelglm import PanelDesign, PanelPoissonRegressor

n_c = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
n_p, n_w = 20, 12
rng = np.random.default_rng(0)
c, p, w = (a.ravel() for a in np.indices((n_c, n_p, n_w)))
blocks = {
    **{f"cust{k}": rng.normal(size=n_c)[c] for k in range(5)},
    **{f"prodweek{k}": rng.normal(size=(n_p, n_w))[p, w] for k in range(5)},
    **{f"custprod{k}": rng.normal(size=(n_c, n_p))[c, p] for k in range(5)},
}
df = pd.DataFrame({"customer": c, "product": p, "week": w, **blocks})
names = list(blocks)
beta = np.r_[0.3, -0.2, np.zeros(3), 0.4, np.zeros(4), 0.2, np.zeros(4)]
week_effect = rng.normal(scale=0.3, size=n_w)
y = rng.poisson(np.exp(-1.0 + df[names].to_numpy() @ beta + week_effect[w])).astype(float)
print(f"{len(df)} cells, {len(names)} covariates + week fixed effects")

design = PanelDesign(dims=["customer", "product", "week"], fixed_effects=["week"])
data = design.fit_transform(df)
dense = np.hstack(
    [df[names].to_numpy(), pd.get_dummies(df["week"], drop_first=True, dtype=float).to_numpy()]
)
for alpha, l1_ratio in [(1e-3, 1.0), (1e-2, 1.0), (1e-2, 0.5)]:
    t0 = time.perf_counter()
    est = PanelPoissonRegressor(alpha=alpha, l1_ratio=l1_ratio).fit(data, y)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = GeneralizedLinearRegressor(
        family="poisson", alpha=alpha, l1_ratio=l1_ratio, gradient_tol=1e-8, solver="irls-cd"
    ).fit(dense, y)
    t_glum = time.perf_counter() - t0
    ours = pd.Series(est.coef_, index=est.coef_names_)[names].to_numpy()
    diff = np.max(np.abs(ours - ref.coef_[: len(names)]))
    print(
        f"alpha={alpha:g} l1_ratio={l1_ratio}: panelglm {t_ours:.2f} s ({est.n_iter_} it, "
        f"{np.sum(ours == 0)} zeros), glum {t_glum:.2f} s ({np.sum(ref.coef_[:15] == 0)} zeros), "
        f"max |coef diff| {diff:.1e}"
    )
