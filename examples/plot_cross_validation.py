"""
Tuning the penalty and the offset on held-out customers
=======================================================

A retailer models weekly purchases per customer and product. Two exposure
measures are on file: the number of store visits of each customer in each
week, and the number of days the store was open. Only one of them is the
true exposure, and most of the candidate covariates are noise. We let
``GridSearchCV`` choose the lasso penalty ``alpha`` and the offset column
together, with :class:`~panelglm.model_selection.PanelKFold` holding out
whole customers in every fold, and then score the chosen model on customers
it has never seen, with *their* exposures.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelPoissonRegressor
from panelglm.model_selection import PanelKFold

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_customers, n_products, n_weeks = (60, 5, 8) if SMALL else (250, 10, 20)
rng = np.random.default_rng(7)

# %%
# Simulate the panel: two real covariates, eight noise covariates at the
# customer x product level, and two exposure candidates.
c, p, w = (a.ravel() for a in np.indices((n_customers, n_products, n_weeks)))
income = rng.normal(size=n_customers)
price = rng.normal(size=(n_products, n_weeks))
noise = rng.normal(size=(8, n_customers, n_products))
visits = rng.poisson(3.0 * np.exp(0.4 * income[:, None]), size=(n_customers, n_weeks)) + 1
days_open = rng.integers(4, 8, size=n_weeks)
df = pd.DataFrame(
    {
        "customer": c,
        "product": p,
        "week": w,
        "income": income[c],
        "price": price[p, w],
        **{f"noise{k}": noise[k, c, p] for k in range(8)},
        "log_visits": np.log(visits[c, w]),
        "log_days": np.log(days_open[w]),
    }
)
eta = -2.0 + 0.3 * df["income"] - 0.5 * df["price"] + df["log_visits"]  # visits is the exposure
y = rng.poisson(np.exp(eta))
covariates = ["income", "price", *[f"noise{k}" for k in range(8)]]

# Customers 0..79 % are for tuning; the rest are a final held-out panel.
held_out = df["customer"] >= int(0.8 * n_customers)
train, test = df[~held_out], df[held_out]

# %%
# The pipeline: PanelDesign lays the long frame out (keeping the exposure
# columns out of the covariates, but available by name), the estimator reads
# the offset column named by its ``offset`` parameter at fit, predict and score.
pipe = make_pipeline(
    PanelDesign(dims=["customer", "product", "week"], covariates=covariates),
    PanelPoissonRegressor(l1_ratio=1.0),
)
alphas = np.geomspace(1e-4, 0.3, 6 if SMALL else 10)
offsets = [None, "log_days", "log_visits"]
search = GridSearchCV(
    pipe,
    {"panelpoissonregressor__alpha": alphas, "panelpoissonregressor__offset": offsets},
    cv=PanelKFold("customer", n_splits=5, shuffle=True, random_state=0),
)
search.fit(train, y[~held_out])
best = search.best_estimator_
est = best[-1]
print(f"best: alpha {est.alpha:.2g}, offset {est.offset!r}")
print(f"cross-validated D^2 {search.best_score_:.3f}")
n_test = test["customer"].nunique()
print(f"D^2 on the {n_test} held-out customers {best.score(test, y[held_out]):.3f}")
kept = pd.Series(est.coef_, index=est.coef_names_)
print("coefficients the lasso kept:", kept[kept != 0].round(3).to_dict())

# %%
# The cross-validated D^2 against alpha, one curve per offset candidate. The
# score's reference is the constant mean, the same for every candidate, so
# the curves compare directly.
res = pd.DataFrame(search.cv_results_["params"]).assign(
    mean=search.cv_results_["mean_test_score"], std=search.cv_results_["std_test_score"]
)
res["offset"] = res["panelpoissonregressor__offset"].fillna("none")
fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
for name, grp in res.groupby("offset"):
    a = grp["panelpoissonregressor__alpha"].to_numpy()
    ax.plot(a, grp["mean"], "o-", label=f"offset: {name}")
    ax.fill_between(a, grp["mean"] - grp["std"], grp["mean"] + grp["std"], alpha=0.2)
ax.axvline(search.best_params_["panelpoissonregressor__alpha"], color="grey", ls=":")
ax.set_xscale("log")
ax.set_xlabel("alpha (lasso)")
ax.set_ylabel("CV D^2 on held-out customers")
ax.set_title("cross-validated D^2 (mean +/- sd over folds)")
ax.legend()
if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(
        os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "cross_validation_scores.png"), dpi=100
    )

# %%
# On the final held-out customers, the chosen model tracks weekly purchases
# through their own visit counts.
weekly = (
    test.assign(observed=y[held_out], predicted=best.predict(test))
    .groupby("week")[["observed", "predicted"]]
    .mean()
)
fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
ax.plot(weekly.index, weekly["observed"], "o", label="observed")
ax.plot(weekly.index, weekly["predicted"], "-", label="predicted by the chosen model")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_xlabel("week")
ax.set_ylabel("mean purchases per cell")
ax.set_title(f"the {n_test} held-out customers")
ax.legend()
if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(
        os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "cross_validation_held_out.png"), dpi=100
    )
