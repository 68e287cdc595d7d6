"""A dimension with a single level: a cross-section along the other dimensions.

Training panels of :class:`PanelTimeSeriesSplit` (first fold) and
:class:`PanelKFold` (on a dimension with few levels) often have one level of
the split dimension. The fit must equal statsmodels' on the dense matrix of
those rows, and the model must predict for the other levels of that dimension
from their covariates, even for columns that vary along it there.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from panelglm import PanelDesign, PanelLinearRegressor, PanelPoissonRegressor
from panelglm.exceptions import CollinearityWarning
from panelglm.model_selection import PanelKFold, PanelTimeSeriesSplit

SIZES = (6, 3, 5)
# x_1 varies along d1 only: constant on one d1 level, so collinear with the intercept.
VARYING = ["x_0", "x_2", "x_01", "x_02", "x_12", "x_012"]


@pytest.fixture(scope="module")
def panel():
    df, dims, _, y = make_panel(SIZES, seed=21)
    one = (df["d1"] == "d1_11").to_numpy()
    return df, dims, y, one


def sm_glm(df, names, y, family=None, offset=None):
    X = sm.add_constant(df[names].to_numpy(), has_constant="add")
    family = family or sm.families.Poisson()
    return sm.GLM(y, X, family=family, offset=offset).fit(tol=1e-13, maxiter=200)


def fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollinearityWarning)  # x_1 (see VARYING)
        return est.fit(X, y)


@pytest.mark.parametrize(
    "est, family",
    [
        (PanelPoissonRegressor(offset="off", cov_type="robust"), sm.families.Poisson()),
        (PanelLinearRegressor(), sm.families.Gaussian()),
    ],
    ids=["poisson-robust", "gaussian"],
)
def test_fit_on_one_level_equals_statsmodels(panel, est, family):
    df, dims, y, one = panel
    train, y_train = df[one], y[one]
    has_offset = getattr(est, "offset", None) is not None
    cols = [*dims, *VARYING, "x_1", *(["off"] if has_offset else [])]
    est = fit_quietly(est, PanelDesign(dims=dims).fit_transform(train[cols]), y_train)
    offset = train["off"].to_numpy() if has_offset else None
    ref = sm_glm(train, VARYING, y_train, family, offset)
    assert est.collinear_names_ == ["x_1"]
    ours = np.r_[est.intercept_, est.coef_[[est.coef_names_.index(n) for n in VARYING]]]
    np.testing.assert_allclose(ours, ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(est.loglik_, ref.llf, rtol=1e-10)
    bse = ref.bse
    if est.cov_type == "robust":
        # statsmodels' GLM gives HC0 for "HC1"; HC1 is HC0 * n / (n - k).
        hc0 = ref.model.fit(tol=1e-13, maxiter=200, cov_type="HC0")
        n, k = len(y_train), ref.params.size
        bse = hc0.bse * np.sqrt(n / (n - k))
    np.testing.assert_allclose(est.bse_[["Intercept", *VARYING]], bse, rtol=1e-7)


def test_predicts_other_levels_of_the_single_level_dimension(panel):
    """Columns that vary along d1 in the new data are laid out along it."""
    df, dims, y, one = panel
    X_train = df[one].drop(columns=["m", "w"])
    est = fit_quietly(PanelPoissonRegressor(dims=dims, offset="off"), X_train, y[one])
    ref = sm_glm(df[one], VARYING, y[one], offset=df.loc[one, "off"].to_numpy())
    X = sm.add_constant(df[VARYING].to_numpy(), has_constant="add")
    expected = np.exp(X @ ref.params + df["off"].to_numpy())
    np.testing.assert_allclose(est.predict(df.drop(columns=["m", "w"])), expected, rtol=1e-8)


def test_table_column_keyed_on_the_single_level_dimension(panel):
    """A (d0, d1) table column fitted on one d1 level varies along d1 in new data."""
    df, dims, y, one = panel
    table = df[["d0", "d1", "x_01"]].drop_duplicates()
    cols = ["d0", "d1", "d2", "x_02"]
    pipe = make_pipeline(
        PanelDesign(dims=dims, tables={("d0", "d1"): table}), PanelPoissonRegressor()
    )
    pipe.fit(df.loc[one, cols], y[one])
    ref = sm_glm(df[one], ["x_01", "x_02"], y[one])
    X = sm.add_constant(df[["x_01", "x_02"]].to_numpy(), has_constant="add")
    np.testing.assert_allclose(pipe.predict(df[cols]), np.exp(X @ ref.params), rtol=1e-8)


def test_fixed_effect_on_a_single_level_has_no_free_level(panel):
    df, dims, y, one = panel
    cols = [*dims, "x_0", "x_012"]
    data = PanelDesign(dims=dims, fixed_effects=["d1"]).fit_transform(df.loc[one, cols])
    ref = sm_glm(df[one], ["x_0", "x_012"], y[one])
    # With an intercept the one level is its reference: no coefficient at all.
    est = PanelPoissonRegressor().fit(data, y[one])
    assert est.coef_names_ == ["x_0", "x_012"] and est.collinear_names_ == []
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], ref.params, rtol=1e-8)
    # Without one, that level's coefficient is the intercept.
    est = PanelPoissonRegressor(fit_intercept=False).fit(data, y[one])
    assert est.coef_names_ == ["x_0", "x_012", "d1[d1_11]"]
    np.testing.assert_allclose(est.coef_, np.r_[ref.params[1:], ref.params[0]], rtol=1e-8)
    # It cannot be extrapolated to the levels it has not seen.
    with pytest.raises(ValueError, match=r"Level\(s\) \['d1_10', 'd1_12'\] of dimension 'd1'"):
        est.predict(PanelDesign(dims=dims).fit(df[cols]).transform(df[cols]))


def test_unbalanced_panel_with_a_single_level(panel):
    df, dims, y, one = panel
    keep = one & (np.arange(len(df)) % 4 != 0)
    cols = [*dims, "x_0", "x_02", "x_012"]
    design = PanelDesign(dims=dims, balanced=False)
    est = PanelPoissonRegressor().fit(design.fit_transform(df.loc[keep, cols]), y[keep])
    ref = sm_glm(df[keep], cols[3:], y[keep])
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], ref.params, rtol=1e-8)
    X = sm.add_constant(df[cols[3:]].to_numpy(), has_constant="add")
    predicted = est.predict(design.transform(df[cols]))
    np.testing.assert_allclose(predicted, np.exp(X @ ref.params), rtol=1e-8)


def d2_poisson(y, mu):
    poisson = sm.families.Poisson()
    return 1 - poisson.deviance(y, mu) / poisson.deviance(y, np.full(len(y), y.mean()))


@pytest.mark.parametrize(
    "shape, cv",
    [
        ((5, 4), PanelTimeSeriesSplit("week", n_splits=3)),  # the docstring's example
        ((5, 6), PanelTimeSeriesSplit("week")),
        ((5, 6), PanelTimeSeriesSplit("week", n_splits=3, max_train_size=1)),
        ((5, 6), PanelTimeSeriesSplit("week", n_splits=2, max_train_size=1, test_size=2)),
        ((2, 8), PanelKFold("firm", n_splits=2)),
    ],
    ids=["docstring", "default", "max_train_size=1", "test_size=2", "kfold-2-levels"],
)
def test_cross_validation_trains_on_single_levels(shape, cv):
    """Every fold's D^2 is that of statsmodels fitted on the training rows."""
    rng = np.random.default_rng(3)
    firm, week = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    df = pd.DataFrame({"firm": firm.ravel(), "week": week.ravel()})
    df["x"] = rng.normal(size=len(df))
    y = rng.poisson(np.exp(0.3 * df["x"]))
    scores = cross_val_score(
        PanelPoissonRegressor(dims=["firm", "week"]), df, y, cv=cv, error_score="raise"
    )
    X = sm.add_constant(df[["x"]].to_numpy())
    expected = [
        d2_poisson(y[te], sm.GLM(y[tr], X[tr], family=sm.families.Poisson()).fit().predict(X[te]))
        for tr, te in cv.split(df)
    ]
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, expected, rtol=1e-7)
