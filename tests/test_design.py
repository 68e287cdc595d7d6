"""PanelDesign: layout detection, coding, fitted spec and the errors it raises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from panelglm import (
    PanelData,
    PanelDesign,
    PanelExponentialRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)


@pytest.fixture
def panel():
    df, dims, names, y = make_panel((5, 4, 3), seed=1)
    return df[[*dims, *names]], dims, names, y


def test_detects_the_axes_each_column_varies_along(panel):
    df, dims, names, _ = panel
    design = PanelDesign(dims=dims).fit(df)
    for name in names:  # x_<axes>, e.g. x_02 varies along d0 and d2
        assert design.spec_[name].axes == tuple(int(c) for c in name[2:])
    data = design.transform(df)
    values, axes = data.numeric("x_12")
    assert values.shape == (4, 3) and axes == (1, 2)
    # Stored once per level combination: equal to the frame's first value there.
    row = df.iloc[0]
    j, k = data.levels[1].get_loc(row["d1"]), data.levels[2].get_loc(row["d2"])
    assert values[j, k] == row["x_12"]


def test_categorical_and_bool_columns_are_treatment_coded_at_their_level(panel):
    df, dims, _, y = panel
    df = df.assign(
        segment=df["d0"].map({"d0_10": "b", "d0_11": "a"}).fillna("c"), promo=df["d2"] == "d2_11"
    )
    design = PanelDesign(dims=dims, covariates=["x_0", "segment", "promo"]).fit(df, None)
    assert design.spec_["segment"].axes == (0,)
    assert list(design.spec_["segment"].categories) == ["a", "b", "c"]
    est = PanelPoissonRegressor().fit(design.transform(df), y)
    assert est.coef_names_ == ["x_0", "segment[b]", "segment[c]", "promo[True]"]
    # Same fit with the dummies made by hand as numeric columns.
    manual = df[[*dims, "x_0"]].assign(
        **{
            "segment[b]": (df["segment"] == "b").astype(float),
            "segment[c]": (df["segment"] == "c").astype(float),
            "promo[True]": df["promo"].astype(float),
        }
    )
    ref = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(manual), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)


def test_target_series_named_like_a_column_is_not_a_covariate(panel):
    df, dims, names, y = panel
    df = df.assign(y=y)
    design = PanelDesign(dims=dims).fit(df, df["y"])
    assert "y" not in design.covariates_ and design.covariates_ == names


def test_target_column_is_recognised_by_its_values_not_its_dtype_or_index(panel):
    df, dims, names, y = panel
    counts = df.assign(y=y.astype(np.int64), gap=np.where(np.arange(len(df)) % 7, y, np.nan))
    # The response as float, with another index, is still the response column.
    as_float = counts["y"].astype(float).set_axis(np.arange(len(df))[::-1])
    assert PanelDesign(dims=dims).fit(counts.drop(columns="gap"), as_float).covariates_ == names
    # Missing values in the same rows count as equal (PanelDesign alone takes any y).
    design = PanelDesign(dims=dims).fit(counts.drop(columns="y"), counts["gap"])
    assert design.covariates_ == names


def test_target_that_only_kept_a_column_name_leaves_the_column_a_covariate(panel):
    df, dims, names, y = panel
    derived = pd.Series(y, name="x_0")  # e.g. a response computed from x_0
    assert PanelDesign(dims=dims).fit(df, derived).covariates_ == names
    # The estimators' dims= path: the same model as with the bare array.
    est = PanelPoissonRegressor(dims=dims).fit(df, derived)
    ref = PanelPoissonRegressor(dims=dims).fit(df, y)
    assert est.coef_names_ == ref.coef_names_ == names
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)
    # One differing row is enough to keep the column.
    near = df["x_0"].copy()
    near.iloc[-1] += 1.0
    assert "x_0" in PanelDesign(dims=dims).fit(df, near).covariates_


def test_estimator_with_dims_leaves_out_the_response_column_of_the_frame(panel):
    df, dims, names, y = panel
    est = PanelPoissonRegressor(dims=dims).fit(df.assign(y=y), df.assign(y=y)["y"])
    ref = PanelPoissonRegressor(dims=dims).fit(df, y)
    assert est.coef_names_ == names
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)
    np.testing.assert_allclose(est.predict(df.assign(y=0.0)), ref.predict(df), rtol=1e-10)


def test_fixed_effect_names_follow_statsmodels_treatment_coding(panel):
    df, dims, _, y = panel
    data = PanelDesign(dims=dims, fixed_effects=["d1", ("d0", "d2")]).fit_transform(df[dims])
    est = PanelPoissonRegressor().fit(data, y)
    assert est.coef_names_[:3] == ["d1[d1_11]", "d1[d1_12]", "d1[d1_13]"]
    assert est.coef_names_[3] == "d0:d2[d0_10:d2_11]"
    assert len(est.coef_names_) == 3 + 5 * 3 - 1
    no_icpt = PanelPoissonRegressor(fit_intercept=False).fit(data, y)
    assert no_icpt.coef_names_[0] == "d1[d1_10]"  # the first fixed effect keeps every level
    np.testing.assert_allclose(no_icpt.predict(data), est.predict(data), rtol=1e-8)


def test_transform_lays_out_new_data_with_new_levels(panel):
    df, dims, names, y = panel
    design = PanelDesign(dims=dims)
    est = PanelPoissonRegressor().fit(design.fit_transform(df), y)
    new = df[df["d0"].isin(["d0_10", "d0_11"])].copy()
    new["d0"] = new["d0"].map({"d0_10": "new_a", "d0_11": "new_b"})
    new = new.iloc[::-1]
    pred = est.predict(design.transform(new))
    expected = np.exp(est.intercept_ + new[names].to_numpy() @ est.coef_)
    np.testing.assert_allclose(pred, expected, rtol=1e-12)


def test_unseen_level_of_a_fixed_effect_dimension_is_named(panel):
    df, dims, _, y = panel
    df = df.drop(columns="x_0")  # collinear with the d0 fixed effect
    design = PanelDesign(dims=dims, fixed_effects=["d0"])
    est = PanelPoissonRegressor().fit(design.fit_transform(df), y)
    new = df[df["d0"] == "d0_10"].assign(d0="d0_99")
    with pytest.raises(ValueError, match=r"d0_99.*'d0'"):
        est.predict(design.transform(new))


def test_column_varying_along_a_new_axis_at_transform_is_rejected(panel):
    df, dims, _, _ = panel
    design = PanelDesign(dims=dims).fit(df)
    bad = df.assign(x_0=np.arange(len(df), dtype=float))
    with pytest.raises(ValueError, match=r"'x_0'.*varies along"):
        design.transform(bad).numeric("x_0")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda df: pd.concat([df, df.iloc[[3]]]), "Duplicate cells"),
        (lambda df: df.iloc[1:], "Missing cells"),
        (lambda df: df.drop(columns="d1"), r"\['d1'\] not found"),
        (lambda df: df.assign(d2=df["d2"].where(df.index != 5)), "'d2' has missing values"),
    ],
)
def test_malformed_panels_are_rejected_naming_the_culprit(panel, mutate, match):
    df, dims, _, _ = panel
    with pytest.raises(ValueError, match=match):
        PanelDesign(dims=dims).fit(mutate(df))


def test_unknown_covariate_and_fixed_effect_are_named(panel):
    df, dims, _, _ = panel
    with pytest.raises(ValueError, match="nope"):
        PanelDesign(dims=dims, covariates=["x_0", "nope"]).fit(df)
    with pytest.raises(ValueError, match="'week'"):
        PanelDesign(dims=dims, fixed_effects=["week"]).fit(df)
    data = PanelDesign(dims=dims).fit_transform(df)
    with pytest.raises(ValueError, match="'exposure'"):
        PanelPoissonRegressor(offset="exposure").fit(data, np.ones(len(df)))


def test_caller_frame_is_not_modified(panel):
    df, dims, _, y = panel
    df = df.drop(columns="x_1")  # collinear with the d1 fixed effect
    before = df.copy(deep=True)
    est = PanelPoissonRegressor(dims=dims, fixed_effects=["d1"]).fit(df, y)
    est.predict(df)
    est.score(df, y)
    pd.testing.assert_frame_equal(df, before)


def test_panel_data_round_trips_rows(panel):
    df, dims, _, _ = panel
    data = PanelDesign(dims=dims).fit_transform(df)
    assert isinstance(data, PanelData) and data.shape == (5, 4, 3) and len(data) == len(df)
    values = np.arange(len(df), dtype=float)
    np.testing.assert_array_equal(data.from_grid(data.to_grid(values)), values)


def unusable_columns(n):
    """Columns no model could use: a date, numbers with a gap, strings with a gap."""
    gap = np.ones(n)
    gap[3] = np.nan
    text = np.array(["a", "b"] * n, dtype=object)[:n]
    text[4] = None
    return {"date": pd.Timestamp("2020-01-01"), "note": gap, "label": text}


def test_named_covariates_ignore_unusable_columns_nobody_uses():
    df, dims, names, y = make_panel((5, 4, 3), seed=2)
    clean = df[[*dims, *names, "off"]]
    messy = clean.assign(**unusable_columns(len(df)))
    design = PanelDesign(dims=dims, covariates=names)
    est = PanelPoissonRegressor(offset="off").fit(design.fit_transform(messy), y)
    assert sorted(design.skipped_columns_) == ["date", "label", "note"]
    assert "'note' has missing values" in str(design.skipped_columns_["note"])
    # The reference: the same model on the frame without those columns.
    ref_design = PanelDesign(dims=dims, covariates=names)
    ref = PanelPoissonRegressor(offset="off").fit(ref_design.fit_transform(clean), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12)
    # transform accepts what fit accepted.
    np.testing.assert_allclose(
        est.predict(design.transform(messy)), ref.predict(ref_design.transform(clean)), rtol=1e-12
    )


def test_named_covariates_ignore_unusable_table_columns():
    df, dims, names, y = make_panel((5, 4, 3), seed=3)
    firms = df[["d0", "x_0"]].drop_duplicates().assign(founded=pd.Timestamp("1990-01-01"))
    design = PanelDesign(dims=dims, covariates=names, tables={"d0": firms})
    est = PanelPoissonRegressor().fit(design.fit_transform(df[[*dims, *names[1:]]]), y)
    ref = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df[[*dims, *names]]), y)
    assert list(design.skipped_columns_) == ["founded"]
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12)


@pytest.mark.parametrize(
    "make, column, y_of",
    [
        (lambda: PanelPoissonRegressor(offset="off"), "off", lambda y, m: y),
        (lambda: PanelLogitRegressor(trials="m"), "m", lambda y, m: np.minimum(y, m)),
        (lambda: PanelExponentialRegressor(event="ev"), "ev", lambda y, m: y + 1.0),
    ],
    ids=["offset", "trials", "event"],
)
def test_named_covariates_still_check_the_columns_an_estimator_uses(make, column, y_of):
    df, dims, names, y = make_panel((5, 4, 3), seed=4)
    df = df.assign(ev=(np.arange(len(df)) % 2).astype(float))
    target = y_of(y, df["m"].to_numpy())
    design = PanelDesign(dims=dims, covariates=names)
    for frame, error, match in [
        (
            df.assign(**{column: df[column].where(df.index != 5)}),
            ValueError,
            f"'{column}' has missing values.*cannot be used as",
        ),
        (
            df.assign(**{column: pd.Timestamp("2020-01-01")}),
            TypeError,
            f"'{column}' has dtype datetime.*cannot be used as",
        ),
    ]:
        data = design.fit_transform(frame)
        with pytest.raises(error, match=match):
            make().fit(data, target)
        with pytest.raises(error, match=match):  # the same at fit through a pipeline
            make_pipeline(clone(design), make()).fit(frame, target)
    # A named covariate with a gap is an error at PanelDesign.fit, as without covariates=.
    with pytest.raises(ValueError, match="'x_0' has missing values"):
        design.fit(df.assign(x_0=df["x_0"].where(df.index != 2)))


def test_a_design_fitted_before_skipped_columns_existed_still_transforms():
    """Pickles of an older PanelDesign have no skipped_columns_: transform must not need it."""
    df = pd.DataFrame({"firm": [0, 0, 1, 1], "year": [0, 1, 0, 1], "x": [1.0, 2.0, 3.0, 5.0]})
    design = PanelDesign(dims=["firm", "year"]).fit(df)
    del design.skipped_columns_
    data = design.transform(df)
    np.testing.assert_array_equal(data.from_grid(data.to_grid(df["x"])), df["x"].to_numpy())
