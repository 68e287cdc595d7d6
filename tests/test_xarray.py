"""xarray Datasets in: each variable at the level of its dimensions, the same fits as a frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.pipeline import make_pipeline

from panelglm import (
    PanelDesign,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)

xr = pytest.importorskip("xarray")

DIMS = ["customer", "product", "week"]


def _dataset(seed=0, shape=(7, 4, 5)):
    """A panel with variables at four levels and unsorted coordinates."""
    rng = np.random.default_rng(seed)
    c, p, w = shape
    customers = rng.permutation(np.arange(10, 10 + 10 * c, 10))
    products = [f"p{k}" for k in rng.permutation(p)]
    ds = xr.Dataset(
        {
            "income": (("customer",), rng.normal(size=c)),
            "price": (("product", "week"), rng.normal(size=(p, w))),
            # Stored week-major: read in the panel's order.
            "rating": (("week", "customer"), rng.normal(size=(w, c))),
            "promo": (("customer", "product", "week"), rng.normal(size=shape)),
            "region": (("customer",), np.array(["north", "south", "east"] * c)[:c]),
            "exposure": (("customer", "week"), rng.uniform(0.5, 2.0, size=(c, w))),
            "trials": (("customer", "product", "week"), rng.integers(1, 5, size=shape)),
        },
        coords={"customer": customers, "product": products, "week": np.arange(w)},
    )
    eta = 0.3 * ds.income + 0.2 * ds.price - 0.1 * ds.promo + np.log(ds.exposure)
    eta = eta.transpose(*DIMS)
    ds["purchases"] = eta.copy(data=rng.poisson(np.exp(eta.values)).astype(float))
    ds["bought"] = eta.copy(data=rng.binomial(ds.trials.values, 1 / (1 + np.exp(-eta.values))))
    ds["spend"] = eta.copy(data=eta.values + rng.normal(size=shape))
    ds["w"] = eta.copy(data=rng.uniform(0.5, 2.0, size=shape))
    return ds


def _frame(ds):
    return ds.to_dataframe().reset_index()


@pytest.mark.parametrize(
    "make, target, extra",
    [
        (lambda: PanelPoissonRegressor(dims=DIMS, offset="log_exposure"), "purchases", {}),
        (lambda: PanelLogitRegressor(dims=DIMS, trials="trials"), "bought", {}),
        (lambda: PanelLinearRegressor(dims=DIMS), "spend", {}),
    ],
)
def test_a_dataset_fits_as_its_long_frame(make, target, extra):
    """Coefficients, their names and standard errors equal the long frame's; the
    prediction is a DataArray over the panel in the caller's coordinates."""
    ds = _dataset()
    ds["log_exposure"] = np.log(ds.exposure)
    others = [v for v in ("purchases", "bought", "spend", "w") if v != target]
    ds = ds.drop_vars(others)
    est = make().fit(ds, ds[target], sample_weight=None)
    df = _frame(ds)
    ref = make().fit(df.drop(columns=target), df[target])
    assert est.coef_names_ == ref.coef_names_
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    pred = est.predict(ds)
    assert isinstance(pred, xr.DataArray) and pred.dims == tuple(DIMS)
    for d in DIMS:
        np.testing.assert_array_equal(pred[d].values, ds[d].values)
    expected = pd.Series(ref.predict(df.drop(columns=target)), index=df.set_index(DIMS).index)
    np.testing.assert_allclose(
        pred.to_series().reindex(expected.index).to_numpy(), expected.to_numpy(), rtol=1e-12
    )
    # y by name, and the score, read the Dataset's own variable.
    by_name = make().fit(ds, target)
    np.testing.assert_allclose(by_name.coef_, est.coef_, rtol=1e-12)
    expected_score = ref.score(df.drop(columns=target), df[target])
    assert est.score(ds, ds[target]) == pytest.approx(expected_score, rel=1e-10)


def test_against_statsmodels_with_weights_and_missing_cells():
    """NaN in y marks cells without data (balanced=False); weights are a DataArray.
    The fit equals statsmodels' GLM on the observed cells' dense rows."""
    ds = _dataset(1)
    y = ds.purchases.copy()
    y[0, 1, :2] = np.nan
    y[3, :, 4] = np.nan
    design = PanelDesign(dims=DIMS, covariates=["income", "price", "promo"], balanced=False)
    pipe = make_pipeline(design, PanelPoissonRegressor(offset=None))
    pipe.fit(ds, y, panelpoissonregressor__sample_weight=ds.w)
    est = pipe[-1]
    df = ds.assign(y=y).to_dataframe().reset_index().dropna(subset=["y"])
    X = sm.add_constant(df[["income", "price", "promo"]].to_numpy())
    ref = sm.GLM(df["y"], X, family=sm.families.Poisson(), freq_weights=df["w"]).fit(tol=1e-12)
    np.testing.assert_allclose([est.intercept_, *est.coef_], ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(est.bse_.to_numpy(), ref.bse, rtol=1e-6)
    pred = pipe.predict(ds)
    assert not np.isnan(pred.values).any()  # predictions for every cell, missing or not


def test_absorbed_and_indicator_effects_name_dataset_dimensions():
    ds = _dataset(2, shape=(12, 5, 6))
    y = ds.purchases
    absorbed = PanelPoissonRegressor(absorb=["customer", ("product", "week")]).fit(
        ds.drop_vars(["income", "region", "price"]), y
    )
    df = _frame(ds)
    ref = PanelPoissonRegressor(dims=DIMS, absorb=["customer", ("product", "week")]).fit(
        df[[*DIMS, "promo", "rating", "exposure", "trials", "spend", "w", "bought"]],
        df["purchases"],
    )
    ours = dict(zip(absorbed.coef_names_, absorbed.coef_, strict=True))
    theirs = dict(zip(ref.coef_names_, ref.coef_, strict=True))
    assert set(ours) == set(theirs)
    np.testing.assert_allclose([ours[k] for k in theirs], list(theirs.values()), rtol=1e-8)
    pd.testing.assert_series_equal(absorbed.fixef_["customer"], ref.fixef_["customer"])


def test_errors_name_the_variable_dimension_or_coordinate():
    ds = _dataset(3)
    with pytest.raises(ValueError, match="balanced=False"):
        y = ds.purchases.copy()
        y[0, 0, 0] = np.nan
        PanelPoissonRegressor().fit(ds, y)
    odd = ds.assign(noise=(("sample",), np.arange(3.0)))
    with pytest.raises(ValueError, match=r"'noise' has dimension.*sample"):
        PanelPoissonRegressor(dims=DIMS).fit(odd, "purchases")
    dup = ds.assign_coords(week=[0, 1, 1, 3, 4])
    with pytest.raises(ValueError, match="'week' has the coordinate 1 more than once"):
        PanelPoissonRegressor().fit(dup, "purchases")
    shifted = ds.purchases.assign_coords(week=ds.week + 1)
    with pytest.raises(ValueError, match="other coordinates along 'week'"):
        PanelPoissonRegressor().fit(ds, shifted)
    laid_out = PanelDesign(dims=None, balanced=False).fit_transform(ds)
    with pytest.raises(ValueError, match=r"NaN at 1 cell.*fit_transform\(ds, y\)"):
        PanelPoissonRegressor().fit(laid_out, y)
    with pytest.raises(ValueError, match="dims=None"):
        PanelDesign(dims=None).fit(_frame(ds))
    gap = ds.assign(income=ds.income.where(ds.customer != ds.customer[0]))
    with pytest.raises(ValueError, match="'income' has 1 missing"):
        PanelPoissonRegressor().fit(gap, "purchases")


def test_the_callers_dataset_is_not_modified_and_xarray_is_not_imported(tmp_path):
    import subprocess
    import sys

    ds = _dataset(4)
    before = ds.copy(deep=True)
    PanelPoissonRegressor().fit(ds, "purchases").predict(ds)
    xr.testing.assert_identical(ds, before)
    out = subprocess.run(
        [sys.executable, "-c", "import panelglm, sys; print('xarray' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
