"""Coefficient names are unique strings; a column that would repeat one is refused.

Results are indexed by name (``bse_``, ``cov_params_``, ``summary()``), so a
column named like the intercept, like a categorical or fixed-effect level
(``"g[b]"``, ``"year[1]"``), or two columns whose names print alike (``1``
and ``"1"``) would make two coefficients one label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from panelglm import PanelPoissonRegressor

DIMS = ["firm", "year"]


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(8)
    firm, year = (a.ravel() for a in np.indices((8, 5)))
    df = pd.DataFrame({"firm": firm, "year": year + 2000, "x": rng.normal(size=40)})
    df["size"] = rng.normal(size=8)[firm]
    df["g"] = np.where(firm < 4, "a", "b")
    y = rng.poisson(np.exp(0.2 + 0.4 * df["x"] - 0.3 * df["size"])).astype(float)
    return df, y


def sm_poisson(X, y):
    return sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-13, maxiter=200)


def test_column_named_like_the_intercept_is_refused(frame):
    df, y = frame
    X = df.rename(columns={"size": "Intercept"})[[*DIMS, "x", "Intercept"]]
    with pytest.raises(
        ValueError,
        match=r"'Intercept' would name both the intercept and column 'Intercept'.*"
        r"rename column\(s\) \['Intercept'\], or pass fit_intercept=False",
    ):
        PanelPoissonRegressor(dims=DIMS).fit(X, y)
    with pytest.raises(ValueError, match="'Intercept' would name both the intercept"):
        PanelPoissonRegressor().fit(X[["x", "Intercept"]], y)  # a cross-section too
    # Without an intercept the name is the column's alone.
    est = PanelPoissonRegressor(dims=DIMS, fit_intercept=False).fit(X, y)
    ref = sm_poisson(X[["x", "Intercept"]].to_numpy(), y)
    assert est.coef_names_ == ["x", "Intercept"]
    np.testing.assert_allclose(est.coef_, ref.params, rtol=1e-8)
    assert est.bse_["Intercept"] == pytest.approx(ref.bse[1], rel=1e-8)  # one value


def test_column_named_like_a_categorical_level_is_refused(frame):
    df, y = frame
    X = df.assign(**{"g[b]": df["x"] ** 2})
    with pytest.raises(
        ValueError,
        match=r"'g\[b\]' would name both level 'b' of categorical column 'g' and column "
        r"'g\[b\]'.*rename column\(s\) \['g', 'g\[b\]'\] or recode the categories of \['g'\]",
    ):
        PanelPoissonRegressor(dims=DIMS).fit(X, y)


def test_column_named_like_a_fixed_effect_level_is_refused(frame):
    df, y = frame
    X = df.assign(**{"year[2001]": df["x"] ** 2})
    with pytest.raises(
        ValueError,
        match=r"'year\[2001\]' would name both column 'year\[2001\]' and level 2001 of the "
        r"fixed effect on 'year'",
    ):
        PanelPoissonRegressor(dims=DIMS, fixed_effects=["year"]).fit(X, y)


def test_fixed_effect_level_combinations_that_print_alike_are_refused():
    df = pd.DataFrame({"a": ["1:2", "1:2", "1", "1"], "b": ["3", "2:3", "3", "2:3"]})
    df["x"] = [0.5, -1.0, 0.2, 1.5]
    # Without an intercept no combination is the reference, so both get a name.
    est = PanelPoissonRegressor(dims=["a", "b"], fixed_effects=[("a", "b")], fit_intercept=False)
    with pytest.raises(
        ValueError,
        match=r"'a:b\[1:2:3\]' would name both level \(a='1', b='2:3'\) .* and level "
        r"\(a='1:2', b='3'\).*recode the levels of dimension\(s\) \['a', 'b'\]",
    ):
        est.fit(df, [1.0, 2.0, 0.0, 1.0])


def test_non_string_column_names_become_strings(frame):
    df, y = frame
    X = df[[*DIMS, "x", "size"]].rename(columns={"size": 1})
    est = PanelPoissonRegressor(dims=DIMS).fit(X, y)
    assert est.coef_names_ == ["x", "1"]
    assert all(isinstance(n, str) for n in est.bse_.index)
    ref = sm_poisson(sm.add_constant(X[["x", 1]].to_numpy()), y)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-8)
    assert est.bse_["1"] == pytest.approx(ref.bse[2], rel=1e-8)


def test_columns_whose_names_print_alike_are_refused(frame):
    df, y = frame
    X = df[[*DIMS, "x"]].assign(**{"1": df["size"]})
    X[1] = df["x"] ** 2
    with pytest.raises(
        ValueError, match=r"'1' would name both column '1' and column 1.*rename column\(s\)"
    ):
        PanelPoissonRegressor(dims=DIMS).fit(X, y)
