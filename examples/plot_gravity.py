"""
Gravity model of trade: PPML with exporter-year and importer-year effects
=========================================================================

The structural gravity model explains the trade flow from exporter ``i`` to
importer ``j`` in year ``t`` as

.. math::

    E[X_{ijt}] = \\exp(\\pi_{it} + \\chi_{jt} + z_{ij}'\\beta + \\gamma\\, RTA_{ijt}),

where the exporter-year and importer-year fixed effects :math:`\\pi_{it}` and
:math:`\\chi_{jt}` absorb each country's output, expenditure and "multilateral
resistance", the pair covariates :math:`z_{ij}` (distance, a shared border, a
common language, the international border itself) describe trade costs, and
:math:`RTA_{ijt}` switches on when a regional trade agreement enters into
force.

Santos Silva and Tenreyro (2006) showed that the model should be estimated by
Poisson pseudo-maximum likelihood (PPML) on the flows in levels, zeros
included, rather than by least squares on their logarithm. Here we fit both
on a simulated panel whose true coefficients we know, with standard errors
clustered by exporter-importer pair, the convention in gravity work.

The panel is exporter x importer x year and includes each country's trade
with itself (domestic sales), as structural gravity recommends; the fixed
effects are two indicator blocks over (exporter, year) and (importer, year),
with hundreds of levels each, which panelglm never expands into dummies.
"""

import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from panelglm import PanelDesign, PanelLinearRegressor, PanelPoissonRegressor

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_countries, n_years = (15, 4) if SMALL else (50, 12)
rng = np.random.default_rng(7)

# %%
# Simulate a world of countries
# -----------------------------
# Countries sit at random places on a map; neighbours share a border; each
# speaks one of a few languages. Trade costs are functions of the pair only.
xy = rng.uniform(0, 10, size=(n_countries, 2))
dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
internal = rng.uniform(0.2, 0.6, size=n_countries)  # distance within a country
np.fill_diagonal(dist, internal)
is_domestic = np.eye(n_countries, dtype=bool)
contig = ((dist < 1.5) & ~is_domestic).astype(float)
language = rng.integers(0, 4, size=n_countries)
lang = (language[:, None] == language[None, :]).astype(float)
border = (~is_domestic).astype(float)  # crossing an international border

# An agreement between a pair enters into force in a random year (or never)
# and stays in force; it applies to both directions of trade.
start = np.where(
    rng.uniform(size=(n_countries, n_countries)) < 0.3,
    rng.integers(0, n_years + 4, size=(n_countries, n_countries)),
    10**6,
)
start = np.triu(start, 1) + np.triu(start, 1).T
np.fill_diagonal(start, 10**6)
rta = (np.arange(n_years)[None, None, :] >= start[:, :, None]).astype(float)

truth = {"log_dist": -0.9, "contig": 0.5, "lang": 0.3, "border": -1.5, "rta": 0.4}
size_exp = rng.normal(size=n_countries)[:, None] + rng.normal(
    scale=0.1, size=(n_countries, n_years)
)
size_imp = rng.normal(size=n_countries)[:, None] + rng.normal(
    scale=0.1, size=(n_countries, n_years)
)

i, j, t = np.meshgrid(
    np.arange(n_countries), np.arange(n_countries), np.arange(n_years), indexing="ij"
)
i, j, t = i.ravel(), j.ravel(), t.ravel()
eta = (
    3.0
    + size_exp[i, t]
    + size_imp[j, t]
    + truth["log_dist"] * np.log(dist[i, j])
    + truth["contig"] * contig[i, j]
    + truth["lang"] * lang[i, j]
    + truth["border"] * border[i, j]
    + truth["rta"] * rta[i, j, t]
)
# Trade flows: over-dispersed around their mean, with many zeros among small
# flows, and with pair-specific trade costs that no covariate records and that
# persist over the years (a multiplicative error of mean one), so the flows of
# a pair are correlated from year to year. PPML only needs the mean exp(eta) to
# be right.
pair_cost = rng.gamma(4.0, 0.25, size=(n_countries, n_countries))
noise = pair_cost[i, j] * rng.gamma(2.0, 0.5, size=eta.size)
flow = rng.poisson(np.exp(eta) * noise).astype(float)
names = [f"C{k:02d}" for k in range(n_countries)]
df = pd.DataFrame(
    {
        "exporter": np.array(names)[i],
        "importer": np.array(names)[j],
        "year": 2000 + t,
        "log_dist": np.log(dist[i, j]),
        "contig": contig[i, j],
        "lang": lang[i, j],
        "border": border[i, j],
        "rta": rta[i, j, t],
        "trade": flow,
    }
)
print(f"{len(df):,} flows, {np.mean(flow == 0):.0%} of them zero")

# %%
# PPML with exporter-year and importer-year fixed effects
# -------------------------------------------------------
# A fixed effect over a tuple of dimensions gets one coefficient per level
# combination: ``("exporter", "year")`` gives one per exporter-year.
#
# The importer-year effects need one more decision. In every year, the
# exporter-year dummies and the importer-year dummies both add up to that
# year's indicator, so the two blocks share one direction per year and the
# model is not identified until one importer-year effect per year is pinned
# to zero. (Passing both tuples as ``fixed_effects`` also works: panelglm then
# sets one redundant importer-year level per year to NaN.) The usual
# normalisation, as in Stata or fixest, makes one importer the reference in
# every year. Here that is a categorical column over (importer, year) whose
# first category, the reference level that gets no coefficient, collects all
# the years of the first importer.
ref = names[0]
labels = np.where(
    df["importer"] == ref, "reference", df["importer"] + ":" + df["year"].astype(str)
)
categories = ["reference", *sorted(set(labels) - {"reference"})]
df["importer_year"] = pd.Categorical(labels, categories=categories)

design = PanelDesign(dims=["exporter", "importer", "year"], fixed_effects=[("exporter", "year")])
data = design.fit_transform(df.drop(columns="trade"))
print(data)
# Standard errors clustered by pair: a tuple of dimensions makes one cluster
# per level combination, here per (exporter, importer) pair, all years of it
# (the two directions of trade between two countries are two clusters, as
# the simulated pair costs are). A list, ``cluster=["exporter", "importer"]``,
# would cluster two-way instead.
ppml = PanelPoissonRegressor(cov_type="cluster", cluster=("exporter", "importer"))
ppml.fit(data, df["trade"])
n_fe = sum(n.startswith(("exporter:year", "importer_year")) for n in ppml.coef_names_)
print(
    f"{len(ppml.coef_names_)} coefficients, {n_fe} of them fixed effects; "
    f"{ppml.n_iter_} Newton iterations"
)
ppml_summary = ppml.summary().loc[list(truth)]
ppml_coef = ppml_summary["coef"]

# %%
# If the exporter and importer effects do not change over time, the simpler
# specification ``fixed_effects=["exporter", "importer", "year"]`` is
# identified as it stands.
#
# The log-linear alternative
# --------------------------
# Least squares on ``log(trade)`` cannot use the zero flows; a common
# work-around is ``log(1 + trade)``. Its coefficients are not elasticities of
# the mean: when the spread of the errors depends on the covariates, as it does
# for trade data, they are biased.
ols = PanelLinearRegressor().fit(data, np.log1p(df["trade"]))
ols_coef = pd.Series(ols.coef_, index=ols.coef_names_)[list(truth)]
table = pd.DataFrame({"truth": truth, "PPML": ppml_coef, "OLS log(1+y)": ols_coef})
print(table.round(3))

# %%
# Clustered standard errors
# -------------------------
# The PPML summary, clustered by exporter-importer pair. The fixed effects
# have their standard errors too (in ``ppml.summary()``); here are the
# trade-cost coefficients, with the truth alongside.
print(ppml.summary().attrs["cov_type"])
print(ppml_summary.assign(truth=pd.Series(truth)).round(3).to_string())

# %%
# Heteroskedasticity-robust standard errors, which take every flow as
# independent, understate the uncertainty of the pair covariates such as
# distance: each pair's unobserved trade cost is shared by all its years.
robust = PanelPoissonRegressor(cov_type="robust").fit(data, df["trade"])
dist_se = pd.Series(
    {"robust (HC1)": robust.bse_["log_dist"], "clustered by pair": ppml.bse_["log_dist"]}
)
print("standard error of the distance elasticity:")
print(dist_se.round(4).to_string())

# %%
# Estimates against the truth, and the fit
# ----------------------------------------
# Left: PPML, with 95% confidence intervals clustered by pair, recovers the
# trade-cost coefficients; the log-linear model does not. Right: within bins
# of predicted trade, the mean observed flow against the mean prediction.
# PPML's predictions are the mean flows; transforming the log-linear
# predictions back with ``exp(.) - 1`` misses them.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
y_pos = np.arange(len(truth))
ax1.scatter(table["truth"], y_pos, marker="|", s=400, color="k", label="truth", zorder=3)
ax1.errorbar(
    table["PPML"],
    y_pos - 0.12,
    xerr=[
        ppml_summary["coef"] - ppml_summary["ci_low"],
        ppml_summary["ci_high"] - ppml_summary["coef"],
    ],
    fmt="o",
    ms=5,
    capsize=3,
    color="C0",
    label="PPML, 95% CI (clustered by pair)",
    zorder=4,
)
ax1.scatter(
    table["OLS log(1+y)"],
    y_pos + 0.12,
    s=25,
    marker="s",
    color="C3",
    label="OLS on log(1 + trade)",
    zorder=4,
)
ax1.axvline(0.0, color="0.8", lw=1)
ax1.set_yticks(y_pos, table.index)
ax1.invert_yaxis()
ax1.set_xlabel("coefficient")
ax1.set_title("trade-cost coefficients")
ax1.legend(loc="center left", fontsize="small")


def binned_means(pred, obs, n_bins=20):
    """Mean prediction and mean observation within quantile bins of ``pred``."""
    edges = np.quantile(pred, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    ok = count > 0
    return (
        np.bincount(idx, pred, n_bins)[ok] / count[ok],
        np.bincount(idx, obs, n_bins)[ok] / count[ok],
    )


observed = df["trade"].to_numpy()
points = []
for label, pred, style in [
    ("PPML", ppml.predict(data), "o-C0"),
    ("OLS on log(1 + trade), exp(.) - 1", np.expm1(ols.predict(data)), "s-C3"),
]:
    x, y = binned_means(pred, observed)
    ax2.loglog(x, y, style, ms=4, label=label)
    points += [*x, *y]
lim = [min(points), max(points)]
ax2.plot(lim, lim, "--", color="0.6", lw=1)
ax2.set_xlabel("mean prediction in bin")
ax2.set_ylabel("mean observed flow in bin")
ax2.set_title("predicted against observed trade")
ax2.legend(loc="upper left", fontsize="small")
fig.tight_layout()

if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "gravity.png"), dpi=100)
