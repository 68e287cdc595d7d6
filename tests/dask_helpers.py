"""Dask-backed Datasets for the tests: a small panel, its families, and a guard.

The guard (:func:`guard_cells`, made an autouse fixture by the test modules)
fails any test that reads a cell-level Dask array onto the client.
"""

from __future__ import annotations

import numpy as np
import pytest

from panelglm import (
    PanelDesign,
    PanelGammaRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelNegativeBinomialRegressor,
    PanelPoissonRegressor,
)

xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

DIMS = ["customer", "product", "week"]
SHAPE = (13, 4, 5)


def guard_cells(monkeypatch):
    """Fail if an array of the cells (flat, or over the grid) is computed onto the client.

    Returns the list that every computation onto the client appends to.

    (Accumulators and matrices, P x P or clusters x P, may be as large as this
    small grid: they are told apart by shape.)
    """
    n_cells = int(np.prod(SHAPE))
    computes = []

    def checked(result):
        if isinstance(result, tuple | list):
            for r in result:
                checked(r)
        elif np.shape(result)[-3:] == SHAPE or np.shape(result) == (n_cells,):
            raise AssertionError(f"an array of shape {np.shape(result)} reached the client")
        return result

    real_array, real_compute = da.Array.__array__, dask.base.compute

    def array(self, *args, **kwargs):
        return checked(real_array(self, *args, **kwargs))

    def compute(*args, **kwargs):
        computes.append(1)
        return checked(real_compute(*args, **kwargs))

    monkeypatch.setattr(da.Array, "__array__", array)
    monkeypatch.setattr(dask.base, "compute", compute)
    monkeypatch.setattr(dask, "compute", compute)
    return computes


def make_dataset(seed=0, gaps=False):
    rng = np.random.default_rng(seed)
    c, p, w = SHAPE
    cell = ("customer", "product", "week")
    ds = xr.Dataset(
        {
            "income": (("customer",), rng.normal(size=c)),
            "price": (("product", "week"), rng.normal(size=(p, w))),
            "promo": (cell, rng.normal(size=SHAPE)),
            "discount": (cell, rng.uniform(size=SHAPE)),
            "exposure": (cell, rng.uniform(0.5, 2.0, size=SHAPE)),
            "trials": (cell, rng.integers(1, 5, size=SHAPE).astype(float)),
            "w": (cell, rng.uniform(0.5, 2.0, size=SHAPE)),
        },
        coords={"customer": np.arange(c) * 10, "product": list("abcd"), "week": np.arange(w)},
    )
    ds["log_exposure"] = np.log(ds.exposure)
    eta = (0.3 * ds.income + 0.2 * ds.price - 0.3 * ds.promo + 0.2 * ds.discount).transpose(*DIMS)
    mu = np.exp(eta.values + ds.log_exposure.values)
    ds["count"] = (cell, rng.poisson(mu).astype(float))
    ds["bought"] = (
        cell,
        rng.binomial(ds.trials.values.astype(int), 1 / (1 + np.exp(-eta.values))).astype(float),
    )
    ds["spend"] = (cell, eta.values + rng.normal(size=SHAPE))
    ds["amount"] = (cell, rng.gamma(2.0, np.exp(eta.values) / 2.0))
    if gaps:
        for name in ("count", "bought", "spend", "amount"):
            ds[name][0, 1, :2] = np.nan
            ds[name][5, :, 4] = np.nan
            ds[name][7] = np.nan  # a customer without data: not a level of the panel
    return ds


CASES = {
    "poisson": (lambda **k: PanelPoissonRegressor(offset="log_exposure", **k), "count"),
    "logit": (lambda **k: PanelLogitRegressor(trials="trials", **k), "bought"),
    "linear": (lambda **k: PanelLinearRegressor(**k), "spend"),
    "gamma": (lambda **k: PanelGammaRegressor(**k), "amount"),
    "negbin": (lambda **k: PanelNegativeBinomialRegressor(theta=2.0, **k), "count"),
}
COVARIATES = ["income", "price", "promo", "discount"]


def fit_design(make, ds, target, weight, **params):
    design = PanelDesign(dims=DIMS, covariates=COVARIATES, balanced=False)
    data = design.fit_transform(ds, ds[target])
    return make(**params).fit(data, ds[target], sample_weight=weight and ds[weight])
