"""
Gravity with absorbed fixed effects: exporter-year, importer-year and pair
==========================================================================

Countries that sign a regional trade agreement (RTA) are not a random sample
of pairs: neighbours that already trade a lot, for reasons no covariate
records, are the likeliest to sign. A gravity regression that describes trade
costs by distance, borders and languages alone then credits the agreement
with trade that was there before it, and overstates its effect. Baier and
Bergstrand (2007) showed the remedy: a fixed effect for every
exporter-importer pair, so that the RTA coefficient is identified only by how
a pair's trade changes when its agreement enters into force. The exporter-year
and importer-year effects stay, for output, expenditure and multilateral
resistance:

.. math::

    E[X_{ijt}] = \\exp(\\pi_{it} + \\chi_{jt} + \\mu_{ij} + \\gamma\\, RTA_{ijt}).

With 60 countries over 10 years that is 600 + 600 + 3,600 effects, for one
coefficient of interest. As indicator columns (``fixed_effects=``, see
:ref:`the gravity example <sphx_glr_auto_examples_plot_gravity.py>`) each
would be a coefficient in a dense Newton system; *absorbed*
(``absorb=``), they are nuisance parameters solved through their structure:
the fit, its standard errors and the summary concern the RTA alone, and the
effects themselves are in ``fixef_``. See :ref:`absorbed_fixed_effects`.
"""

import os
import warnings

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from panelglm import PanelDesign, PanelPoissonRegressor
from panelglm.exceptions import SeparationWarning

SMALL = os.environ.get("PANELGLM_EXAMPLE_SMALL") == "1"
n_countries, n_years = (20, 5) if SMALL else (60, 10)
rng = np.random.default_rng(2007)

# %%
# Simulate trade with endogenous agreements
# -----------------------------------------
# As in the first gravity example, countries sit on a map, neighbours share a
# border and some share a language. Each pair also has an *affinity* that no
# covariate records (history, networks, tastes), which raises its trade in
# every year. Pairs of high affinity are the likeliest to sign an agreement,
# which enters into force in a random year and then stays; both directions of
# trade are covered.
xy = rng.uniform(0, 10, size=(n_countries, 2))
dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
np.fill_diagonal(dist, rng.uniform(0.2, 0.6, size=n_countries))  # within a country
is_domestic = np.eye(n_countries, dtype=bool)
contig = ((dist < 1.5) & ~is_domestic).astype(float)
language = rng.integers(0, 4, size=n_countries)
lang = (language[:, None] == language[None, :]).astype(float)
border = (~is_domestic).astype(float)

affinity = rng.normal(scale=0.6, size=(n_countries, n_countries))
affinity = (affinity + affinity.T) / np.sqrt(2)  # shared by both directions
np.fill_diagonal(affinity, 0.0)
signs = rng.uniform(size=affinity.shape) < 1 / (1 + np.exp(-(1.5 * affinity - 1.5)))
start = np.where(signs, rng.integers(-3, n_years, size=affinity.shape), 10**6)
start = np.triu(start, 1) + np.triu(start, 1).T
np.fill_diagonal(start, 10**6)
rta = (np.arange(n_years)[None, None, :] >= start[:, :, None]).astype(float)

gamma = 0.4  # the true effect of an agreement: exp(0.4) - 1 = 49 % more trade
# The pair effect: observable trade costs plus the unobserved affinity.
pair_effect = -0.9 * np.log(dist) + 0.5 * contig + 0.3 * lang - 1.5 * border + affinity
exp_year = rng.normal(size=(n_countries, 1)) + rng.normal(scale=0.1, size=(n_countries, n_years))
imp_year = rng.normal(size=(n_countries, 1)) + rng.normal(scale=0.1, size=(n_countries, n_years))

i, j, t = (a.ravel() for a in np.indices((n_countries, n_countries, n_years)))
eta = 3.0 + exp_year[i, t] + imp_year[j, t] + pair_effect[i, j] + gamma * rta[i, j, t]
# Over-dispersed flows with many zeros among small pairs; PPML needs only the
# mean exp(eta) to be right.
flow = rng.poisson(np.exp(eta) * rng.gamma(2.0, 0.5, size=eta.size)).astype(float)
names = np.array([f"C{k:02d}" for k in range(n_countries)])
df = pd.DataFrame(
    {
        "exporter": names[i],
        "importer": names[j],
        "year": 2000 + t,
        "log_dist": np.log(dist[i, j]),
        "contig": contig[i, j],
        "lang": lang[i, j],
        "border": border[i, j],
        "rta": rta[i, j, t],
        "trade": flow,
    }
)
switch = (rta[:, :, 0] == 0) & (rta[:, :, -1] == 1)
print(
    f"{len(df):,} flows, {np.mean(flow == 0):.0%} of them zero; "
    f"{switch.sum()} directed pairs whose agreement enters into force during the panel"
)

# %%
# Three absorbed effects
# ----------------------
# ``absorb`` takes dimensions and tuples of dimensions, as ``fixed_effects``
# does: ``("exporter", "year")`` is one effect per exporter-year. The only
# covariate is the RTA dummy; distance, borders and languages do not vary
# within a pair, so the pair effects would explain them (panelglm would drop
# them with a ``CollinearityWarning``). Standard errors are clustered by pair,
# the convention in gravity work.
#
# A pair that never trades in any year has an infinite negative pair effect:
# its flows carry no information about the RTA, and panelglm drops them (a
# ``SeparationWarning`` names how many; it is silenced here and the count
# read from the fitted model instead).
design = PanelDesign(
    dims=["exporter", "importer", "year"],
    covariates=["rta"],
    absorb=[("exporter", "year"), ("importer", "year"), ("exporter", "importer")],
)
data = design.fit_transform(df.drop(columns="trade"))
ppml = PanelPoissonRegressor(cov_type="cluster", cluster=("exporter", "importer"))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", SeparationWarning)
    ppml.fit(data, df["trade"])
pair = ppml.fixef_["exporter:importer"]
print(
    f"{ppml.n_iter_} Newton iterations; {np.isneginf(pair).sum()} pairs never trade "
    f"({ppml.separated_rows_.sum()} flows dropped)"
)
print({name: len(values) for name, values in ppml.fixef_.items()})

# %%
# The summary holds the RTA coefficient alone, with its standard error
# clustered by pair. The covariance is that of the model with all 4,800
# indicator columns, and the small-sample factor counts the effects'
# degrees of freedom (see the user guide).
three_way = ppml.summary()
print(three_way.attrs["cov_type"])
print(three_way.round(4).to_string())

# %%
# Without pair effects
# --------------------
# The traditional specification keeps the exporter-year and importer-year
# effects (absorbed too) and describes trade costs by the observables. The
# affinity that drives both trade and agreements is then in the error, and
# the RTA coefficient picks it up.
two_way = PanelPoissonRegressor(cov_type="cluster", cluster=("exporter", "importer")).fit(
    PanelDesign(
        dims=["exporter", "importer", "year"],
        covariates=["log_dist", "contig", "lang", "border", "rta"],
        absorb=[("exporter", "year"), ("importer", "year")],
    ).fit_transform(df.drop(columns="trade")),
    df["trade"],
)
two_way = two_way.summary()
print(two_way.round(4).to_string())

# %%
# The pair effects
# ----------------
# ``fixef_`` maps each effect's name to a Series indexed by its levels (a
# MultiIndex for a tuple of dimensions). Only what the data identify is
# meaningful: adding a constant per exporter to its pair effects and
# subtracting it from its exporter-year effects changes nothing, and
# likewise per importer. The Head-Ries index of a pair,
# ``(mu_ij + mu_ji - mu_ii - mu_jj) / 2``, the log of how much the two
# countries trade with each other relative to themselves, cancels those
# constants, so it can be compared with the truth.
mu = pair.unstack("importer").reindex(index=names, columns=names).to_numpy()
head_ries = (mu + mu.T - np.diag(mu)[:, None] - np.diag(mu)[None, :]) / 2
true_mu = pair_effect
true_head_ries = (true_mu + true_mu.T - np.diag(true_mu)[:, None] - np.diag(true_mu)[None, :]) / 2
upper = np.triu(np.isfinite(head_ries), 1)
print(
    f"Head-Ries index of {upper.sum()} pairs: correlation with the truth "
    f"{np.corrcoef(head_ries[upper], true_head_ries[upper])[0, 1]:.3f}"
)

# %%
# Estimates against the truth
# ---------------------------
# Left: the RTA coefficient with its 95 % confidence interval (clustered by
# pair). Without pair effects it overstates the agreements' effect; with them
# the interval covers the truth. Right: the pair effects' Head-Ries index
# against the truth, for the pairs that trade in both directions.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
rows = [
    ("exporter-year, importer-year\n+ trade-cost covariates", two_way),
    ("exporter-year, importer-year\n+ pair effects", three_way),
]
for y_pos, (_, table) in enumerate(rows):
    est = table.loc["rta"]
    ax1.errorbar(
        est["coef"],
        y_pos,
        xerr=[[est["coef"] - est["ci_low"]], [est["ci_high"] - est["coef"]]],
        fmt="o",
        capsize=4,
        color=f"C{y_pos}",
    )
ax1.axvline(gamma, color="k", lw=1, ls="--", label=f"truth, {gamma}")
ax1.set_yticks(range(len(rows)), [label for label, _ in rows])
ax1.set_ylim(-0.6, len(rows) - 0.4)
ax1.invert_yaxis()
ax1.set_xlabel("RTA coefficient, 95 % CI clustered by pair")
ax1.set_title("effect of a trade agreement")
ax1.legend(loc="lower right", fontsize="small")

ax2.scatter(true_head_ries[upper], head_ries[upper], s=6, alpha=0.5, color="C1")
lim = [true_head_ries[upper].min(), true_head_ries[upper].max()]
ax2.plot(lim, lim, "--", color="0.5", lw=1, label="45° line")
ax2.set_xlabel("true Head-Ries index")
ax2.set_ylabel("estimated, from fixef_")
ax2.set_title("pair effects (identified contrast)")
ax2.legend(loc="upper left", fontsize="small")
fig.tight_layout()

if os.environ.get("PANELGLM_SAVE_FIGURES"):
    fig.savefig(os.path.join(os.environ["PANELGLM_SAVE_FIGURES"], "gravity_absorbed.png"), dpi=100)
