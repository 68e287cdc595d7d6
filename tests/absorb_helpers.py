"""Small panels for the absorbed-fixed-effects tests: dims j, k, l and their covariates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from panelglm import (
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)

DIMS = ["j", "k", "l"]
# Covariates at every level but the single dimensions (which any one-way
# effect on that dimension would explain).
COVARIATES = ["x_jkl", "x_jk", "x_jl", "x_kl"]

# Each family's estimator and the columns (other than covariates) it uses.
FAMILIES = {
    "poisson": (PanelPoissonRegressor, {"offset": "off"}),
    "logit": (PanelLogitRegressor, {"trials": "m"}),
    "linear": (PanelLinearRegressor, {}),
    "exponential": (PanelExponentialRegressor, {"event": "ev"}),
}


def make_frame(sizes=(8, 5, 4), family="poisson", seed=0, effects_scale=0.5, level=0.5):
    """A shuffled long frame on the full j x k x l grid with a response of ``family``.

    Levels are strings that do not sort like their positions. The linear
    predictor has a j, k and l effect and a (j, k) interaction, so that every
    effect configuration has something to absorb; ``level`` is the Poisson
    log mean's (a low one leaves some (j, k) all zero: separated).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    df = pd.DataFrame(
        {d: [f"{d}{(7 * v + 3) % 97:02d}" for v in grid[:, a]] for a, d in enumerate(DIMS)}
    )
    eta = np.zeros(len(df))
    for name in COVARIATES:
        axes = [DIMS.index(c) for c in name[2:]]
        block = rng.normal(size=tuple(sizes[a] for a in axes))
        df[name] = block[tuple(grid[:, a] for a in axes)]
        eta += rng.uniform(-0.4, 0.4) * df[name].to_numpy()
    for axes in ((0,), (1,), (2,), (0, 1)):
        block = rng.normal(scale=effects_scale, size=tuple(sizes[a] for a in axes))
        eta += block[tuple(grid[:, a] for a in axes)]
    df["off"] = rng.normal(scale=0.2, size=len(df))
    df["m"] = rng.integers(1, 5, size=len(df)).astype(float)
    df["w"] = rng.uniform(0.5, 2.0, size=len(df))
    df["ev"] = (rng.uniform(size=len(df)) < 0.8).astype(float)
    if family == "poisson":
        y = rng.poisson(np.exp(level + eta + df["off"].to_numpy())).astype(float)
    elif family == "logit":
        y = rng.binomial(df["m"].to_numpy().astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    elif family == "linear":
        y = 1.0 + eta + rng.normal(scale=0.7, size=len(df))
    else:
        y = rng.exponential(np.exp(-eta))
    perm = rng.permutation(len(df))
    return df.iloc[perm].reset_index(drop=True), y[perm]


def covariates_for(effects):
    """The covariates that ``effects`` do not explain (a tuple effect explains its level)."""
    out = list(COVARIATES)
    for fe in effects:
        if isinstance(fe, tuple):
            name = "x_" + "".join(sorted(fe, key=DIMS.index))
            if name in out:
                out.remove(name)
    return out


def columns(family, effects):
    """The frame's columns a fit of ``family`` under ``effects`` uses."""
    aux = list(FAMILIES[family][1].values())
    return DIMS + covariates_for(effects) + aux
