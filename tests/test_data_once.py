"""What depends only on the data is worked out once per PanelData, not per fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from panelglm import PanelDesign, PanelPoissonRegressor
from panelglm._data.panel import PanelData
from panelglm._model.shifts import column_shift


def _panel(seed=0):
    rng = np.random.default_rng(seed)
    i, t = np.meshgrid(np.arange(30), np.arange(8), indexing="ij")
    df = pd.DataFrame({"firm": i.ravel(), "year": t.ravel()})
    df["stamp"] = 1.7e9 + 60.0 * df["year"] + rng.normal(size=len(df))  # shifted column
    df["x"] = rng.normal(size=len(df))
    y = rng.poisson(np.exp(0.1 * df["x"])).astype(float)
    return df, y


def test_column_statistics_are_read_once_per_panel(monkeypatch):
    """A grid search fits one PanelData many times: the columns' extremes and
    means (for the shift and the magnitude check) are a pass over every row
    of the frame, made on the first fit only."""
    df, y = _panel()
    data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    reads = []
    original = PanelData.observed

    def counting(self, name):
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(PanelData, "observed", counting)
    first = PanelPoissonRegressor().fit(data, y)
    n_first = len(reads)
    assert n_first == 2
    second = PanelPoissonRegressor(alpha=0.1).fit(data, y)
    assert len(reads) == n_first
    assert data.column_stats("stamp") == (
        float(df["stamp"].min()),
        float(df["stamp"].max()),
        float(df["stamp"].mean()),
    )
    assert first.coef_.shape == second.coef_.shape
    # A new panel of some rows has statistics of its own.
    sub = data.rows[np.arange(40), ...].data
    assert sub.column_stats("x")[1] == float(df["x"].iloc[:40].max())


def test_the_shift_from_statistics_is_the_shift_of_the_values():
    df, _ = _panel(1)
    data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    from panelglm._model.shifts import shift_of

    for name in ("stamp", "x"):
        assert shift_of(*data.column_stats(name)) == column_shift(df[name].to_numpy())
    assert shift_of(*data.column_stats("stamp")) != 0.0


def test_a_lower_level_columns_statistics_come_from_its_layout(monkeypatch):
    """On a balanced panel every level combination has as many rows, so a
    firm-level column's extremes and mean are its layout's: no pass over rows."""
    df, _ = _panel(2)
    df["size"] = 1e6 + np.repeat(np.arange(30.0), 8) ** 2
    data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    monkeypatch.setattr(PanelData, "observed", lambda self, name: 1 / 0)
    lo, hi, mean = data.column_stats("size")
    assert (lo, hi) == (df["size"].min(), df["size"].max())
    assert mean == pytest.approx(df["size"].mean(), rel=1e-15)


def test_a_fit_does_not_read_the_rows_of_columns_the_layout_read(monkeypatch):
    """fit_transform lays out each lower-level column from the values it checks;
    the panel keeps those layouts, so a fit reads no frame column again."""
    import panelglm._data.panel as panel_module

    df, y = _panel(3)
    df["size"] = np.repeat(np.arange(30.0), 8)
    df["trend"] = np.tile(np.arange(8.0), 30)
    data = PanelDesign(dims=["firm", "year"]).fit_transform(df)
    est = PanelPoissonRegressor()
    calls = []
    original = panel_module.lay_out

    def counting(values, grid, axes, name, *args, **kwargs):
        calls.append(name)
        return original(values, grid, axes, name, *args, **kwargs)

    monkeypatch.setattr(panel_module, "lay_out", counting)
    est.fit(data, y)
    assert "size" not in calls and "trend" not in calls
    ref = PanelPoissonRegressor().fit(PanelDesign(dims=["firm", "year"]).fit(df).transform(df), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12)
