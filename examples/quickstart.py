"""
Quickstart: purchase counts on a customer x product x week panel
================================================================

A retailer records how many units each customer buys of each product in each
week. Income varies by customer, price by product and week, and a loyalty
score by customer and product. A dense design matrix would repeat each
customer's income once per product-week; panelglm stores every covariate once
at its own level and fits the Poisson model from those blocks.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.base import clone

from panelglm import PanelDesign, PanelPoissonRegressor

# Reduced sizes keep the example fast when it runs in the test suite.
SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_customers, n_products, n_weeks = (30, 8, 6) if SMALL else (300, 40, 26)
rng = np.random.default_rng(0)

# %%
# Simulate the panel. Each covariate lives at its own level.
income = rng.normal(size=n_customers)
price = rng.normal(size=(n_products, n_weeks))
loyalty = rng.normal(size=(n_customers, n_products))
days_open = rng.integers(5, 8, size=n_weeks)  # exposure: shop days in the week
# Customers also differ in ways no covariate records: a frailty whose
# exponential has mean one, so one customer's purchases are correlated.
frailty = rng.normal(scale=0.4, size=n_customers) - 0.4**2 / 2

c, p, w = np.meshgrid(
    np.arange(n_customers), np.arange(n_products), np.arange(n_weeks), indexing="ij"
)
c, p, w = c.ravel(), p.ravel(), w.ravel()
truth = {"income": 0.3, "price": -0.5, "loyalty": 0.2}
eta = (
    -1.0
    + truth["income"] * income[c]
    + truth["price"] * price[p, w]
    + truth["loyalty"] * loyalty[c, p]
    + np.log(days_open[w])
    + frailty[c]
)
df = pd.DataFrame(
    {
        "customer": c,
        "product": p,
        "week": w,
        "income": income[c],
        "price": price[p, w],
        "loyalty": loyalty[c, p],
        "log_days": np.log(days_open[w]),
        "purchases": rng.poisson(np.exp(eta)),
    }
).sample(frac=1.0, random_state=1)  # rows in any order

# %%
# Lay the long frame out as a panel: PanelDesign finds the level of each column.
design = PanelDesign(dims=["customer", "product", "week"])
data = design.fit_transform(df.drop(columns="purchases"))
print(data)
for name, spec in design.spec_.items():
    print(f"  {name:9s} varies along {[design.dims[a] for a in spec.axes]}")

# %%
# Fit the Poisson model with the log of shop days as offset. The frailty makes
# a customer's purchases correlated across products and weeks, so the standard
# errors are clustered by customer; they come from the same factored blocks.
est = PanelPoissonRegressor(offset="log_days", cov_type="cluster", cluster="customer")
est.fit(data, df["purchases"])
table = est.summary()
table["truth"] = pd.Series({"Intercept": -1.0, **truth})
# Standard errors that ignore the clustering are too small for the
# customer-level covariate (income) and the intercept.
naive = clone(est).set_params(cov_type="nonrobust", cluster=None).fit(data, df["purchases"])
table["std_err_nonrobust"] = naive.bse_
print(table.round(4).to_string())
print(f"standard errors: {table.attrs['cov_type']}")
print(
    f"log-likelihood {est.loglik_:.2f}, AIC {est.aic_:.1f}, pseudo R^2 {est.pseudo_r2_:.3f}, "
    f"Newton iterations {est.n_iter_}, D^2 {est.score(data, df['purchases']):.3f}"
)

# %%
# Predicted against observed purchases, averaged by week.
df["predicted"] = est.predict(data)
weekly = df.groupby("week")[["purchases", "predicted"]].mean()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(weekly.index, weekly["purchases"], "o", label="observed")
ax.plot(weekly.index, weekly["predicted"], "-", label="fitted")
ax.set_xlabel("week")
ax.set_ylabel("mean purchases per customer-product")
ax.legend()
fig.tight_layout()
if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "quickstart.png"), dpi=100)
