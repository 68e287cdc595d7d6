"""Cross-validation on a PanelData through its rows (PanelRows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelPoissonRegressor, PanelRows
from panelglm.model_selection import PanelKFold, PanelTimeSeriesSplit

DIMS = ["customer", "product", "week"]


@pytest.fixture
def panel():
    """Rows shuffled; income and segment in a customer table, price by product-week."""
    rng = np.random.default_rng(7)
    c, p, w = (a.ravel() for a in np.indices((24, 4, 6)))
    income, price = rng.normal(size=24), rng.normal(size=(4, 6))
    segment = np.array(["a", "b", "c"])[np.arange(24) % 3]
    eta = 0.2 + 0.3 * income[c] - 0.5 * price[p, w] + 0.4 * (segment[c] == "b")
    X = pd.DataFrame({"customer": c, "product": p, "week": w, "price": price[p, w]})
    X["promo"] = rng.integers(0, 2, size=len(X)).astype(float)
    y = rng.poisson(np.exp(eta + 0.2 * X["promo"])).astype(float)
    perm = rng.permutation(len(X))
    X, y = X.iloc[perm].reset_index(drop=True), y[perm]
    customers = pd.DataFrame({"customer": np.arange(24), "income": income, "segment": segment})
    return X, y, {"customer": customers}


CVS = [
    PanelKFold("customer", n_splits=3),
    PanelKFold("customer", n_splits=4, shuffle=True, random_state=0),
    PanelTimeSeriesSplit("week", n_splits=5),  # the first training period is one week
    PanelTimeSeriesSplit("week", n_splits=2, test_size=2, gap=1),
]


@pytest.mark.parametrize("cv", CVS, ids=repr)
def test_cross_validation_on_rows_equals_the_pipeline_on_the_frame(panel, cv):
    X, y, tables = panel
    data = PanelDesign(DIMS, tables=tables).fit_transform(X)
    est = PanelPoissonRegressor(offset=None)
    pipe = make_pipeline(PanelDesign(DIMS, tables=tables), PanelPoissonRegressor())
    on_rows = cross_val_score(est, data.rows, y, cv=cv, error_score="raise")
    on_frame = cross_val_score(pipe, X, y, cv=cv, error_score="raise")
    np.testing.assert_allclose(on_rows, on_frame, rtol=1e-10, atol=1e-12)
    if isinstance(cv, PanelKFold):  # predictions come back in the rows' order
        np.testing.assert_allclose(
            cross_val_predict(est, data.rows, y, cv=cv),
            cross_val_predict(pipe, X, y, cv=cv),
            rtol=1e-10,
        )


def test_grid_search_on_rows(panel):
    X, y, tables = panel
    data = PanelDesign(DIMS, tables=tables).fit_transform(X)
    cv = PanelKFold("customer", n_splits=3)
    grid = {"alpha": [0.0, 0.1]}
    search = GridSearchCV(PanelPoissonRegressor(), grid, cv=cv).fit(data.rows, y)
    pipe = make_pipeline(PanelDesign(DIMS, tables=tables), PanelPoissonRegressor())
    ref = GridSearchCV(pipe, {"panelpoissonregressor__alpha": grid["alpha"]}, cv=cv).fit(X, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], rtol=1e-10
    )
    np.testing.assert_allclose(search.predict(data), ref.predict(X), rtol=1e-10)


def test_a_subset_keeps_the_parents_layout(panel):
    X, y, tables = panel
    data = PanelDesign(DIMS, tables=tables).fit_transform(X)
    first_week = np.flatnonzero(X["week"] == 0)
    sub = data.rows[first_week].data
    assert sub.shape == (24, 4, 1) and sub.spec == data.spec
    assert list(sub.index) == list(X.index[first_week])
    # A fit on one week predicts the others with the same coefficients in the same places.
    est = PanelPoissonRegressor().fit(data.rows[first_week], y[first_week])
    dense = X[["price", "promo"]].assign(
        income=tables["customer"]["income"].to_numpy()[X["customer"]]
    )
    dense["segment[b]"] = (X["customer"] % 3 == 1).astype(float)
    dense["segment[c]"] = (X["customer"] % 3 == 2).astype(float)
    coef = pd.Series(est.coef_, est.coef_names_)
    expected = np.exp(est.intercept_ + dense[coef.index].to_numpy() @ coef.to_numpy())
    np.testing.assert_allclose(est.predict(data), expected, rtol=1e-10)


def test_a_panel_data_itself_is_refused_saying_to_pass_its_rows(panel):
    X, y, _ = panel
    data = PanelDesign(DIMS).fit_transform(X)
    with pytest.raises(TypeError, match=r"pass its rows: cross_val_score\(estimator, data\.rows"):
        cross_val_score(PanelPoissonRegressor(), data, y, cv=PanelKFold("customer", 3))


def test_rows_index_like_an_array(panel):
    X, _, _ = panel
    rows = PanelDesign(DIMS).fit_transform(X).rows
    assert isinstance(rows, PanelRows) and len(rows) == rows.shape[0] == len(X)
    mask = (X["customer"] < 5).to_numpy()
    np.testing.assert_array_equal(rows[mask].data.index, X.index[mask])
    np.testing.assert_array_equal(rows[3:9].data.index, X.index[3:9])
    with pytest.raises(ValueError, match="more than once"):
        rows[[0, 1, 0]]
    with pytest.raises(IndexError, match="indexed by rows only"):
        rows[0, 1]
