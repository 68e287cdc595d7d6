"""PanelDesign(levels=...): a column's level stated rather than detected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import PoissonRegressor
from sklearn.metrics import d2_tweedie_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelPoissonRegressor
from panelglm.model_selection import PanelTimeSeriesSplit

DIMS = ["customer", "product", "week"]


@pytest.fixture
def prices():
    """A price by product and week, equal across products in the first three weeks."""
    rng = np.random.default_rng(0)
    c, p, w = (a.ravel() for a in np.indices((30, 4, 6)))
    price = rng.normal(size=(4, 6))
    price[:, :3] = price[0, :3]
    X = pd.DataFrame({"customer": c, "product": p, "week": w, "price": price[p, w]})
    y = rng.poisson(np.exp(0.2 - 0.5 * X["price"])).astype(float)
    return X, y


def test_a_fold_can_no_longer_change_a_stated_level(prices):
    X, y = prices
    ts = PanelTimeSeriesSplit("week", n_splits=2, test_size=2)
    detected = make_pipeline(PanelDesign(DIMS), PanelPoissonRegressor())
    # Detected on weeks 0-1 the price is a week column; the error names the
    # dimension it then varies along (product), not every other one.
    with pytest.raises(
        ValueError,
        match=r"'price' was fitted as varying only along \['week'\] but varies along "
        r"\['product'\] here, e\.g\. at row \d+ \(customer=\d+, product=\d+, week=[23]\)",
    ):
        cross_val_score(detected, X, y, cv=ts, error_score="raise")
    levels = {"price": ("product", "week")}
    stated = make_pipeline(PanelDesign(DIMS, levels=levels), PanelPoissonRegressor())
    scores = cross_val_score(stated, X, y, cv=ts, error_score="raise")
    expected = []
    for train, test in ts.split(X):
        ref = PoissonRegressor(alpha=0, tol=1e-12, max_iter=1000)
        ref.fit(X[["price"]].iloc[train], y[train])
        expected.append(d2_tweedie_score(y[test], ref.predict(X[["price"]].iloc[test]), power=1))
    np.testing.assert_allclose(scores, expected, rtol=1e-7)
    assert stated[0].levels is levels and levels == {"price": ("product", "week")}
    assert clone(stated[0]).get_params()["levels"] == levels


def test_a_stated_level_is_used_as_given_and_checked(prices):
    X, _ = prices
    X = X.assign(segment=np.where(X["customer"] % 2, "a", "b"), const=1.5)
    design = PanelDesign(
        DIMS, levels={"price": ["week", "product"], "segment": "customer", "const": ()}
    ).fit(X)
    assert design.spec_["price"].axes == (1, 2)
    assert design.spec_["segment"].axes == (0,)
    assert design.spec_["const"].axes == ()
    with pytest.raises(
        ValueError,
        match=r"'price' is stated in levels= as varying only along \['week'\] but varies along "
        r"\['product'\] here, e\.g\. at row \d+ \(customer=0, product=\d, week=[345]\)",
    ):
        PanelDesign(DIMS, levels={"price": "week"}).fit(X)
    with pytest.raises(ValueError, match=r"'segment' is stated .* along \[\] but varies along "):
        PanelDesign(DIMS, levels={"segment": ()}).fit(X)


def test_a_stated_table_column_may_reach_beyond_its_key(prices):
    X, y = prices
    table = X.groupby(["product", "week"], as_index=False)["price"].first()
    cells = X[DIMS]
    est = make_pipeline(
        PanelDesign(DIMS, tables={("product", "week"): table}, levels={"price": DIMS}),
        PanelPoissonRegressor(),
    ).fit(cells, y)
    assert est[0].spec_["price"].axes == (0, 1, 2)
    ref = PoissonRegressor(alpha=0, tol=1e-12, max_iter=1000).fit(X[["price"]], y)
    np.testing.assert_allclose(est.predict(cells), ref.predict(X[["price"]]), rtol=1e-7)
    with pytest.raises(ValueError, match=r"'price' is stated in levels= as varying only along"):
        PanelDesign(DIMS, tables={("product", "week"): table}, levels={"price": "product"}).fit(
            cells
        )


@pytest.mark.parametrize(
    "levels, match",
    [
        ({"week": "week"}, r"level of 'week', which is a dimension"),
        ({"nope": "week"}, r"level of 'nope', which is not a column"),
        ({"price": "store"}, r"levels\['price'\] = 'store' must name .* \['store'\] not in"),
        ({"price": ("week", "week")}, r"levels\['price'\] .* must name distinct"),
        ({"price": 3}, r"levels\['price'\] must be a dimension or a tuple"),
    ],
)
def test_bad_levels_are_errors_naming_them(prices, levels, match):
    X, _ = prices
    with pytest.raises(ValueError, match=match):
        PanelDesign(DIMS, levels=levels).fit(X)


def test_the_target_cannot_have_a_stated_level(prices):
    X, y = prices
    X = X.assign(sales=y)
    with pytest.raises(ValueError, match=r"level of 'sales', which is the target"):
        PanelDesign(DIMS, levels={"sales": "week"}).fit(X, X["sales"])
