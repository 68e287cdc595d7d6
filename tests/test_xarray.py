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


def test_absorbed_effects_name_dataset_dimensions():
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


def _unbalanced(seed=5):
    """A panel whose smallest customer has no data at all, and a few other gaps."""
    ds = _dataset(seed, shape=(8, 4, 5))
    y = ds.purchases.copy()
    first = int(np.argmin(ds.customer.values))
    y[first] = np.nan
    y[(first + 1) % 8, 1, :2] = np.nan
    return ds.drop_vars("purchases"), y


def _frame_of_rows(ds, y):
    return ds.assign(y=y).to_dataframe().reset_index().dropna(subset=["y"])


@pytest.mark.parametrize(
    "design_kw",
    [
        dict(covariates=["promo", "price"], fixed_effects=["customer"]),
        dict(covariates=["promo", "region"]),
        dict(covariates=["promo", "income"], fixed_effects=[("customer", "week")]),
    ],
)
def test_levels_without_data_are_not_levels_of_the_panel(design_kw):
    """As from a long frame of the rows with data: a customer without any is no
    fixed effect's level (nor the reference), and its region no category."""
    ds, y = _unbalanced()
    ds = ds.assign(region=ds.region.where(ds.customer != ds.customer.min(), "west"))

    def pipe():
        design = PanelDesign(dims=DIMS, balanced=False, **design_kw)
        return make_pipeline(design, PanelPoissonRegressor(offset=None))

    df = _frame_of_rows(ds, y)
    ref = pipe().fit(df.drop(columns="y"), df["y"])
    est = pipe().fit(ds, y)
    assert est[-1].coef_names_ == ref[-1].coef_names_
    np.testing.assert_allclose(est[-1].coef_, ref[-1].coef_, rtol=1e-9, atol=1e-12)
    assert est[-1].intercept_ == pytest.approx(ref[-1].intercept_, rel=1e-9)
    assert est.score(ds, y) == pytest.approx(ref.score(df.drop(columns="y"), df["y"]), rel=1e-10)
    pred = est.predict(ds.isel(customer=ds.customer.values != ds.customer.values.min()))
    assert pred.dims == tuple(DIMS) and not np.isnan(pred.values).any()


def test_the_target_in_any_dimension_or_coordinate_order_is_no_covariate():
    ds = _dataset(6).drop_vars(["bought", "spend", "w", "trials"])
    plain = PanelPoissonRegressor().fit(ds, ds.purchases)
    for y in (
        ds.purchases.transpose("week", "product", "customer"),
        ds.purchases.sortby("customer"),
    ):
        est = PanelPoissonRegressor().fit(ds, y)
        assert "purchases" not in est.coef_names_
        np.testing.assert_allclose(est.coef_, plain.coef_, rtol=1e-12)


def test_weights_named_are_no_covariate_and_arrays_are_refused():
    ds = _dataset(7).drop_vars(["bought", "spend", "trials"])
    by_name = PanelPoissonRegressor().fit(ds, "purchases", sample_weight="w")
    as_array = PanelPoissonRegressor().fit(ds.drop_vars("w"), "purchases", sample_weight=ds.w)
    assert by_name.coef_names_ == as_array.coef_names_
    np.testing.assert_allclose(by_name.coef_, as_array.coef_, rtol=1e-12)
    with pytest.raises(TypeError, match=r"sample_weight .* must be a DataArray"):
        PanelPoissonRegressor().fit(ds, "purchases", sample_weight=ds.w.values.ravel())
    with pytest.raises(TypeError, match="target y of an xarray Dataset must be a DataArray"):
        PanelPoissonRegressor().fit(ds, ds.purchases.values.ravel())


def test_a_cell_level_category_only_read_where_there_are_data():
    ds, y = _unbalanced(8)
    seg = np.where(np.random.default_rng(0).random(y.shape) < 0.5, "a", "b").astype(object)
    seg[np.isnan(y.values)] = None  # no segment where there are no data
    ds = ds.assign(seg=(tuple(DIMS), seg))
    design = PanelDesign(dims=DIMS, balanced=False, covariates=["promo", "seg"])
    est = make_pipeline(design, PanelPoissonRegressor(offset=None)).fit(ds, y)
    df = _frame_of_rows(ds, y)
    ref = make_pipeline(
        PanelDesign(dims=DIMS, balanced=False, covariates=["promo", "seg"]),
        PanelPoissonRegressor(offset=None),
    ).fit(df.drop(columns="y"), df["y"])
    assert est[-1].coef_names_ == ref[-1].coef_names_ == ["promo", "seg[b]"]
    np.testing.assert_allclose(est[-1].coef_, ref[-1].coef_, rtol=1e-9)


def test_no_variable_of_the_callers_dataset_is_written_to():
    """Sorted coordinates: the panel reads the caller's arrays in place."""
    ds = _dataset(9)
    ds = ds.sortby(["customer", "product"]).assign(log_exposure=lambda d: np.log(d.exposure))
    before = ds.copy(deep=True)
    for est, y, kw in [
        (PanelPoissonRegressor(offset="log_exposure"), "purchases", dict(sample_weight="w")),
        (PanelLogitRegressor(trials="trials"), "bought", {}),
        (PanelPoissonRegressor(absorb=["customer", ("product", "week")]), ds.purchases, {}),
        (PanelLinearRegressor(alpha=0.1), "spend", dict(sample_weight=ds.w)),
    ]:
        fitted = est.fit(ds, y, **kw)
        fitted.predict(ds)
        fitted.score(ds, y, **kw)
    xr.testing.assert_identical(ds, before)


def test_a_design_fitted_on_a_dataset_lays_out_its_frame():
    ds = _dataset(10).drop_vars(["bought", "spend", "w", "trials"])
    design = PanelDesign(dims=None).fit(ds, "purchases")
    df = _frame(ds)
    est = PanelPoissonRegressor().fit(design.transform(ds), "purchases")
    from_frame = est.predict(design.transform(df.drop(columns="purchases")))
    as_array = est.predict(design.transform(ds))
    expected = as_array.to_series().reindex(df.set_index(DIMS).index).to_numpy()
    np.testing.assert_allclose(from_frame, expected, rtol=1e-12)
    changed = ds.assign(
        income=ds.income.expand_dims(week=ds.week).transpose("customer", "week").copy()
    )
    changed["income"][:, 1] += 1.0
    with pytest.raises(ValueError, match="constant along dimension 'week'"):
        est.predict(design.transform(changed))
