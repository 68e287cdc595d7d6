"""Shared fixtures: random panels whose dense expansion is the reference."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest


def subsets(D):
    """Every non-empty subset of range(D), smallest first."""
    return [s for r in range(1, D + 1) for s in combinations(range(D), r)]


def make_panel(sizes, seed=0, family="poisson", scale=0.3, shuffle=True):
    """A balanced panel with one covariate at every non-empty subset of dims.

    Returns the long frame (dims d0..d{D-1}, covariates x_<subset>, an offset
    column ``off`` and a trials column ``m`` that vary along every dim), the
    covariate names, and a response drawn from the family.
    """
    rng = np.random.default_rng(seed)
    D = len(sizes)
    dims = [f"d{a}" for a in range(D)]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, D)
    df = pd.DataFrame(grid, columns=dims)
    # Levels as strings with an offset so they are not their own positions.
    for _a, d in enumerate(dims):
        df[d] = [f"{d}_{v + 10}" for v in df[d]]
    names = []
    eta = np.full(len(df), 0.2)
    for s in subsets(D):
        name = "x_" + "".join(str(a) for a in s)
        block = rng.normal(size=tuple(sizes[a] for a in s))
        df[name] = block[tuple(grid[:, a] for a in s)]
        eta += scale * rng.uniform(-1, 1) * df[name].to_numpy()
        names.append(name)
    df["off"] = rng.normal(scale=0.2, size=len(df))
    df["m"] = rng.integers(1, 6, size=len(df)).astype(float)
    df["w"] = rng.uniform(0.5, 2.0, size=len(df))
    if family == "poisson":
        y = rng.poisson(np.exp(eta + df["off"].to_numpy())).astype(float)
    elif family == "binomial":
        y = rng.binomial(df["m"].to_numpy().astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = eta + rng.normal(scale=0.5, size=len(df))
    if shuffle:
        perm = rng.permutation(len(df))
        df, y = df.iloc[perm].reset_index(drop=True), y[perm]
    return df, dims, names, y


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def engines(*names):
    """Pass engines to parametrise a test over (default: every one).

    The compiled engine is skipped where the sweep is not built or is switched
    off (``PANELGLM_NUMPY_PASS=1``).
    """
    from panelglm._engine import compiled as _compiled

    names = names or ("compiled", "numpy", "plain")
    skip = pytest.mark.skipif(
        not _compiled.enabled(), reason="the compiled sweep is not built or switched off"
    )
    return [pytest.param(n, marks=skip) if n == "compiled" else n for n in names]
