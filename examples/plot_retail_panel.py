"""
Retail panel: purchases by customer, product and week
=====================================================

A retailer observes how many units each customer buys of each product in each
week. The drivers of demand live at different levels of that panel:

* **income** and a customer **segment** describe the customer,
* the **price** of a product changes from week to week (product x week),
* **loyalty** to a product is a trait of a customer-product pair,
* customers are not active every day of every week: the number of **active
  days** (customer x week) is the exposure, and enters as an offset
  ``log(days)``, so the coefficients describe purchases *per active day*,
* each product has its own baseline appeal, a **product fixed effect**,
* and customers differ in ways no column records (an unobserved taste for
  shopping), so one customer's purchases are correlated across products and
  weeks: standard errors are **clustered by customer**.

A general GLM library would expand all of this into one row per
customer-product-week, repeating each customer's income once for every
product and week. panelglm keeps each covariate at its own level and fits
the same Poisson model, and its clustered standard errors, from those
blocks.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from panelglm import PanelDesign, PanelPoissonRegressor

# Reduced sizes keep the example fast when it runs in the test suite.
SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_customers, n_products, n_weeks = (60, 10, 8) if SMALL else (600, 30, 26)
rng = np.random.default_rng(42)

# %%
# Simulate the panel
# ------------------
# Every covariate is drawn at its own level: one income per customer, one
# price per product and week, one loyalty score per customer and product.
truth = {
    "income": 0.25,
    "log_price": -1.2,  # a price elasticity
    "loyalty": 0.4,
    "segment[premium]": 0.3,  # relative to the "budget" segment
    "segment[regular]": 0.15,
}
income = rng.normal(size=n_customers)
segments = np.array(["budget", "premium", "regular"])
segment = rng.choice(segments, size=n_customers)
log_price = rng.normal(scale=0.3, size=(n_products, n_weeks))
loyalty = rng.normal(size=(n_customers, n_products))
product_effect = rng.normal(scale=0.5, size=n_products)
# Unobserved customer heterogeneity; exp(frailty) has mean one.
frailty = rng.normal(scale=0.3, size=n_customers) - 0.3**2 / 2
days = rng.integers(1, 8, size=(n_customers, n_weeks))  # active days, 1 to 7

c, p, w = np.meshgrid(
    np.arange(n_customers), np.arange(n_products), np.arange(n_weeks), indexing="ij"
)
c, p, w = c.ravel(), p.ravel(), w.ravel()
segment_effect = {"budget": 0.0, "premium": 0.3, "regular": 0.15}
eta = (
    -3.0
    + truth["income"] * income[c]
    + truth["log_price"] * log_price[p, w]
    + truth["loyalty"] * loyalty[c, p]
    + np.vectorize(segment_effect.get)(segment[c])
    + product_effect[p]
    + np.log(days[c, w])
    + frailty[c]
)
df = pd.DataFrame(
    {
        "customer": c,
        "product": [f"P{j:02d}" for j in p],
        "week": w,
        "income": income[c],
        "segment": segment[c],
        "log_price": log_price[p, w],
        "loyalty": loyalty[c, p],
        "log_days": np.log(days[c, w]),
        "purchases": rng.poisson(np.exp(eta)),
    }
)
# The data arrive in no particular order, as a long frame would.
df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
print(f"{len(df):,} customer-product-weeks, {df['purchases'].mean():.3f} purchases per cell")

# %%
# Lay out the panel
# -----------------
# :class:`~panelglm.PanelDesign` finds the level at which each column varies.
# The string column ``segment`` becomes treatment-coded dummies; the product
# fixed effect is an indicator block, never a dense dummy matrix.
design = PanelDesign(dims=["customer", "product", "week"], fixed_effects=["product"])
data = design.fit_transform(df.drop(columns="purchases"))
print(data)
for name, spec in design.spec_.items():
    print(f"  {name:10s} varies along {[design.dims[a] for a in spec.axes]}")

# %%
# Fit the Poisson model with the exposure offset
# ----------------------------------------------
# ``offset="log_days"`` adds ``log(days)`` to the linear predictor with a
# coefficient of one: expected purchases are ``days * exp(X @ coef)``.
# ``cov_type="cluster", cluster="customer"`` computes cluster-robust standard
# errors, one cluster per customer, from the same factored blocks at the end
# of ``fit``; :meth:`~panelglm.PanelPoissonRegressor.summary` tabulates them
# with z statistics, p-values and 95% confidence intervals.
est = PanelPoissonRegressor(offset="log_days", cov_type="cluster", cluster="customer")
est.fit(data, df["purchases"])
summary = est.summary()
print(summary.attrs["cov_type"])
table = summary.loc[list(truth)].assign(truth=pd.Series(truth))
print(table.round(3).to_string())
print(f"Newton iterations: {est.n_iter_}, D^2 = {est.score(data, df['purchases']):.3f}")

# %%
# The model-based standard errors, which take every cell as independent, are
# too small for the covariates that vary by customer (income, segment) and,
# less so, by customer and product (loyalty): the frailty makes a customer's
# cells move together. The price varies within each customer; its standard
# error hardly changes.
naive = PanelPoissonRegressor(offset="log_days").fit(data, df["purchases"])
print(
    pd.DataFrame({"clustered": est.bse_, "model-based": naive.bse_})
    .loc[list(truth)]
    .round(4)
    .to_string()
)

# %%
# The product effects are estimated relative to the first product (the
# reference level the intercept absorbs), so every one of them carries the
# estimation error of that product's own effect. To compare them with the
# truth without that shared error, centre both sets, the reference included
# (at zero), on their mean.
fe_names = [n for n in est.coef_names_ if n.startswith("product[")]
fe_hat = np.r_[0.0, summary.loc[fe_names, "coef"].to_numpy()]
fe_true = product_effect - product_effect[0]
fe_hat, fe_true = fe_hat - fe_hat.mean(), fe_true - fe_true.mean()

# %%
# Estimates against the truth
# ---------------------------
# Left: the covariate coefficients with their 95% confidence intervals
# (clustered by customer) from ``summary()``. Right: the product fixed effects;
# the dashed line is "estimate = truth".
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
y_pos = np.arange(len(truth))
ax1.scatter(table["truth"], y_pos, marker="|", s=400, color="k", label="truth", zorder=3)
ax1.errorbar(
    table["coef"],
    y_pos,
    xerr=[table["coef"] - table["ci_low"], table["ci_high"] - table["coef"]],
    fmt="o",
    ms=5,
    capsize=3,
    color="C0",
    label="estimate, 95% CI",
    zorder=4,
)
ax1.axvline(0.0, color="0.8", lw=1)
ax1.set_yticks(y_pos, table.index)
ax1.invert_yaxis()
ax1.set_xlabel("coefficient")
ax1.set_title("covariates at three levels")
ax1.legend(loc="lower left", fontsize="small")

lim = [min(fe_true.min(), fe_hat.min()) - 0.1, max(fe_true.max(), fe_hat.max()) + 0.1]
ax2.plot(lim, lim, "--", color="0.6", lw=1)
ax2.scatter(fe_true, fe_hat, s=20, color="C1")
ax2.set_xlabel("true product effect (centred)")
ax2.set_ylabel("estimated (centred)")
ax2.set_title(f"product fixed effects, {len(fe_hat)} products")
fig.tight_layout()

if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "retail_panel.png"), dpi=100)
