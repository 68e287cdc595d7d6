"""What a fit leaves behind: the layout predict reads frames with, and the input checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from panelglm import PanelDesign, PanelPoissonRegressor


def _panel(seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame([(c, w) for c in range(20) for w in range(6)], columns=["c", "w"])
    df["x"] = rng.normal(size=len(df))
    df["k"] = rng.choice(["a", "b", "c"], len(df))
    y = rng.poisson(np.exp(0.3 * df.x + (df.k == "c"))).astype(float)
    return df, y


def test_a_failed_refit_keeps_the_previous_fit_whole():
    df, y = _panel()
    est = PanelPoissonRegressor(dims=["c", "w"]).fit(df, y)
    before = est.predict(df)
    relabelled = df.assign(k=df.k.map({"a": "b", "b": "c", "c": "d"}))
    with pytest.raises(ValueError, match="cust"):
        est.set_params(cov_type="cluster", cluster="cust").fit(relabelled, y)
    np.testing.assert_array_equal(est.predict(df), before)


def test_a_fit_on_panel_data_leaves_no_stale_frame_layout():
    df, y = _panel()
    est = PanelPoissonRegressor(dims=["c", "w"]).fit(df, y)
    relabelled = df.assign(k=df.k.map({"a": "b", "b": "c", "c": "d"}))
    data = PanelDesign(dims=["c", "w"]).fit_transform(relabelled)
    est.set_params(dims=None).fit(data, y)
    assert not hasattr(est, "design_") and not hasattr(est, "n_features_in_")
    ref = PanelPoissonRegressor().fit(data, y)
    np.testing.assert_allclose(est.predict(data), ref.predict(data), rtol=1e-12)
    est.set_params(dims=["c", "w"])
    with pytest.raises(Exception, match="not fitted"):
        est.predict(relabelled)  # no silent decoding with an earlier fit's levels


def test_frame_fit_sets_its_feature_attributes():
    df, y = _panel()
    est = PanelPoissonRegressor().fit(np.c_[df.x, df.x**2, df.x**3], y)
    assert est.n_features_in_ == 3
    est.set_params(dims=["c", "w"]).fit(df, y)
    assert est.n_features_in_ == df.shape[1]
    assert list(est.feature_names_in_) == list(df.columns)


def test_estimator_dims_and_fixed_effects_are_not_silently_ignored():
    df, y = _panel()
    with pytest.raises(ValueError, match="needs dims"):
        PanelPoissonRegressor(fixed_effects=["w"]).fit(df, y)
    data = PanelDesign(dims=["c", "w"]).fit_transform(df)
    with pytest.warns(UserWarning, match="PanelData keeps its own"):
        PanelPoissonRegressor(dims=["c", "w"], fixed_effects=["w"]).fit(data, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PanelPoissonRegressor(dims=["c", "w"]).fit(data, y)  # the same dims: nothing to say


def test_dims_shortcut_on_an_unbalanced_panel_says_how():
    df, y = _panel()
    with pytest.raises(ValueError, match=r"make_pipeline\(PanelDesign\(dims, balanced=False\)"):
        PanelPoissonRegressor(dims=["c", "w"]).fit(df.iloc[1:], y[1:])


def test_a_failed_array_refit_keeps_the_feature_count():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    y = rng.poisson(np.exp(X @ [0.3, -0.2])).astype(float)
    est = PanelPoissonRegressor().fit(X, y)
    before = est.predict(X)
    with pytest.raises(ValueError, match="non-negative"):
        est.fit(np.c_[X, X[:, :1]], -y)
    assert est.n_features_in_ == 2
    np.testing.assert_array_equal(est.predict(X), before)


def test_dims_with_an_array_is_an_error():
    df, y = _panel()
    with pytest.raises(TypeError, match="long DataFrame"):
        PanelPoissonRegressor(dims=["c", "w"]).fit(df[["c", "w", "x"]].to_numpy(), y)
    data = PanelDesign(dims=["c", "w"]).fit_transform(df)
    with pytest.warns(UserWarning, match="PanelData keeps its own"):
        PanelPoissonRegressor(fixed_effects=["w"]).fit(data, y)  # not the 'needs dims' error
