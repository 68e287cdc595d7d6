"""New data laid out by another PanelDesign is read as the model was fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel

from panelglm import PanelDesign, PanelPoissonRegressor


@pytest.fixture
def regions():
    rng = np.random.default_rng(0)
    s, w = (a.ravel() for a in np.indices((60, 5)))
    df = pd.DataFrame({"store": s, "week": w, "region": np.array(["n", "s", "w"])[s % 3]})
    y = rng.poisson(np.exp(df["region"].map({"n": 0.0, "s": 1.0, "w": 2.0}))).astype(float)
    return df, y


def test_a_category_missing_from_the_new_design_keeps_its_fitted_coefficients(regions):
    df, y = regions
    design = PanelDesign(dims=["store", "week"])
    est = PanelPoissonRegressor().fit(design.fit_transform(df), y)
    new = df[df["region"] != "n"]
    # With one categorical covariate the fitted mean of a region is its mean of y.
    expected = pd.Series(y).groupby(df["region"]).mean()[new["region"]].to_numpy()
    own = PanelDesign(dims=["store", "week"]).fit_transform(new)
    np.testing.assert_allclose(est.predict(own), expected, rtol=1e-8)
    np.testing.assert_allclose(
        est.score(own, y[new.index]), est.score(design.transform(new), y[new.index]), rtol=1e-12
    )
    # A category the model never saw is an error, not a silent shift of dummies.
    other = df.assign(region=df["region"].replace({"w": "e"}))
    with pytest.raises(ValueError, match=r"'region' has level\(s\) \['e'\] not seen"):
        est.predict(PanelDesign(dims=["store", "week"]).fit_transform(other))


def _dense(est, frame, names):
    return np.exp(est.intercept_ + frame[names].to_numpy() @ est.coef_)


def test_columns_detected_at_other_levels_or_in_another_order_map_exactly():
    df, dims, names, y = make_panel((6, 5, 4), seed=3)
    df = df[[*dims, *names]]
    est = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df), y)
    # One level of d2 and of d1: every column is detected along d1 and d2
    # (a single level counts as varying), so the blocks group differently.
    new = df[(df["d2"] == "d2_11") & (df["d1"] == "d1_12")]
    shuffled = new[[*dims, *names[::-1]]]
    for frame in (new, shuffled):
        data = PanelDesign(dims=dims).fit_transform(frame)
        assert data.spec["x_0"].axes == (0, 1, 2)
        np.testing.assert_allclose(est.predict(data), _dense(est, frame, names), rtol=1e-10)


def test_a_column_varying_beyond_its_fitted_level_is_an_error_naming_both_levels():
    df, dims, names, y = make_panel((6, 5, 4), seed=3)
    df = df[[*dims, *names]]
    est = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df), y)
    new = df.assign(x_0=df["x_0"] + (df["d2"] == "d2_12"))  # now along d0 and d2
    data = PanelDesign(dims=dims).fit_transform(new)
    with pytest.raises(
        ValueError,
        match=r"'x_0' was fitted as varying only along \['d0'\] but varies along \['d2'\] "
        r"here, e\.g\. at row \d+ \(d0=.*\): this data has it at the level of \['d0', 'd2'\]",
    ):
        est.predict(data)


def test_a_frame_column_fitted_along_more_axes_is_read_from_a_table():
    df, dims, names, y = make_panel((6, 5, 4), seed=4)
    df = df[[*dims, *names]]
    est = PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df), y)
    # New data where x_01 is constant along d1: given in a d0 table.
    new = df.assign(x_01=df.groupby("d0")["x_01"].transform("first"))
    table = new.groupby("d0", as_index=False)["x_01"].first()
    design = PanelDesign(dims=dims, tables={"d0": table})
    data = design.fit_transform(new.drop(columns="x_01"))
    assert data.spec["x_01"].axes == (0,)
    np.testing.assert_allclose(est.predict(data), _dense(est, new, names), rtol=1e-10)
