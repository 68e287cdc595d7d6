"""
Customer churn: an exponential duration model with censoring
============================================================

A telecom sells three services (mobile, broadband, TV) and every customer
subscribes to all three. For each customer-service pair we record how many
months the subscription lasted before it was cancelled. The study stops on a
fixed date, and customers joined at different times, so many subscriptions
are still running when we stop looking: their durations are **censored**.
We know only that they lasted *at least* that long.

The exponential duration model gives every subscription a constant monthly
cancellation hazard

.. math::

    \\lambda_{is} = \\exp(x_{is}'\\beta),

with covariates of the customer (calls to the support line), of the pair (a
personal discount on that service) and a service fixed effect. Its
log-likelihood, :math:`\\sum d \\log\\lambda - \\lambda T` with event indicator
:math:`d`, is that of a Poisson regression of :math:`d` with offset
:math:`\\log T`, which is how :class:`~panelglm.PanelExponentialRegressor`
fits it.

We compare the fitted survival curves with Kaplan-Meier estimates, computed by
hand below, which make no assumption about the shape of the hazard.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from panelglm import PanelDesign, PanelExponentialRegressor

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_customers = 600 if SMALL else 6000
services = ["broadband", "mobile", "tv"]
rng = np.random.default_rng(3)

# %%
# Simulate subscriptions
# ----------------------
# True monthly hazards: TV is cancelled most readily, broadband least; each
# support call raises the hazard by about 20 %; a discount of 10 points
# lowers it by about a quarter.
truth = {"support_calls": 0.18, "discount": -0.03}
service_effect = {"broadband": -3.6, "mobile": -3.2, "tv": -2.7}
calls = rng.poisson(1.0, size=n_customers)  # per customer
discount = rng.choice([0.0, 5.0, 10.0, 20.0], size=(n_customers, len(services)))  # percent

cust, serv = np.meshgrid(np.arange(n_customers), np.arange(len(services)), indexing="ij")
cust, serv = cust.ravel(), serv.ravel()
log_hazard = (
    np.array([service_effect[s] for s in services])[serv]
    + truth["support_calls"] * calls[cust]
    + truth["discount"] * discount[cust, serv]
)
months_to_churn = rng.exponential(1.0 / np.exp(log_hazard))
# Customers joined during the first 24 months of a 36-month window, so they
# are observed for 12 to 36 months before the study stops.
follow_up = 36.0 - rng.uniform(0, 24, size=n_customers)[cust]
df = pd.DataFrame(
    {
        "customer": cust,
        "service": np.array(services)[serv],
        "support_calls": calls[cust].astype(float),
        "discount": discount[cust, serv],
        "months": np.minimum(months_to_churn, follow_up),
        "churned": (months_to_churn <= follow_up).astype(float),
    }
)
print(f"{len(df):,} subscriptions; {1 - df['churned'].mean():.0%} still running (censored)")

# %%
# Fit the exponential model
# -------------------------
# ``event="churned"`` names the 0/1 column that says whether the duration in
# ``y`` ended in a cancellation (1) or was censored (0). The service enters as
# a fixed effect; broadband, the first level, is the reference.
design = PanelDesign(dims=["customer", "service"], fixed_effects=["service"])
data = design.fit_transform(df.drop(columns="months"))
est = PanelExponentialRegressor(event="churned").fit(data, df["months"])
coef = pd.Series(est.coef_, index=est.coef_names_)
print(coef.round(3))
print(
    f"intercept (broadband's log hazard) {est.intercept_:.3f}, truth {service_effect['broadband']}"
)

# %%
# The coefficients are log hazard ratios: ``exp(coef)`` multiplies the hazard.
true_log_hr = {
    **truth,
    "service[mobile]": service_effect["mobile"] - service_effect["broadband"],
    "service[tv]": service_effect["tv"] - service_effect["broadband"],
}
table = pd.DataFrame(
    {"hazard ratio": np.exp(coef[list(true_log_hr)]), "truth": np.exp(pd.Series(true_log_hr))}
)
print(table.round(3))

# %%
# Kaplan-Meier, by hand
# ---------------------
# Sort the durations. At each one, the survival estimate is multiplied by
# ``1 - d / n``: ``d`` is 1 if that duration ended in an event (0 if
# censored) and ``n`` is the number of subscriptions still at risk.


def kaplan_meier(t, event):
    """Kaplan-Meier survival estimate, as step values at the sorted times."""
    order = np.argsort(t, kind="stable")
    t, event = t[order], event[order]
    at_risk = len(t) - np.arange(len(t))
    return t, np.cumprod(1.0 - event / at_risk)


# %%
# Survival curves: data against model
# -----------------------------------
# The model's survival curve of a service averages the exponential survival
# functions ``exp(-hazard * t)`` of all its subscriptions. ``predict`` returns
# each subscription's expected duration, ``1 / hazard``. Where the dashed
# lines leave the steps, the hazard is not constant and a richer duration
# model is needed; here the data were drawn from the model, so they agree.
hazard = 1.0 / est.predict(data)
grid = np.linspace(0, 36, 200)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
for k, s in enumerate(services):
    rows = (df["service"] == s).to_numpy()
    t, surv = kaplan_meier(df["months"].to_numpy()[rows], df["churned"].to_numpy()[rows])
    ax1.step(t, surv, where="post", color=f"C{k}", lw=1, alpha=0.8, label=f"{s}: Kaplan-Meier")
    model = np.exp(-np.outer(grid, hazard[rows])).mean(axis=1)
    ax1.plot(grid, model, "--", color=f"C{k}", lw=2, label=f"{s}: exponential model")
ax1.set_xlabel("months since subscribing")
ax1.set_ylabel("share still subscribed")
ax1.set_xlim(0, 36)
ax1.set_title("survival of subscriptions")
ax1.legend(fontsize="x-small", loc="lower left")

y_pos = np.arange(len(table))
ax2.scatter(table["truth"], y_pos, marker="|", s=400, color="k", label="truth", zorder=3)
ax2.scatter(table["hazard ratio"], y_pos, s=25, color="C0", label="estimate", zorder=4)
ax2.axvline(1.0, color="0.8", lw=1)
ax2.set_yticks(y_pos, table.index)
ax2.invert_yaxis()
ax2.set_xlabel("hazard ratio")
ax2.set_title("estimated hazard ratios")
ax2.legend(fontsize="small")
fig.tight_layout()

if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "churn_duration.png"), dpi=100)
