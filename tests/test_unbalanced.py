"""Unbalanced panels: a fit on the full grid with weight-zero holes equals one on the rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from sklearn.metrics import d2_tweedie_score

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import SparsePanelWarning


def unbalanced(sizes, seed, family="poisson", keep=0.7):
    """A panel with a random ~30 % of its cells missing, and one whole (d0, d1) pair gone."""
    df, dims, names, y = make_panel(sizes, seed=seed, family=family)
    rng = np.random.default_rng(seed + 100)
    rows = rng.uniform(size=len(df)) < keep
    if len(dims) >= 3:
        # Every cell of one (d0, d1) pair is missing, so x_01 has a level
        # combination without any row: its laid-out value there is a filler.
        pair = (df.d0 == df.d0.iloc[0]) & (df.d1 == df.d1.iloc[0])
        rows &= ~pair.to_numpy()
    return df[rows], dims, names, y[rows]


def sm_fit(family, df, names, y, **kw):
    X = sm.add_constant(df[names].to_numpy(), has_constant="add")
    fam = {"poisson": sm.families.Poisson(), "gaussian": sm.families.Gaussian()}
    if family == "binomial":
        m = df["m"].to_numpy()
        return sm.GLM(np.column_stack([y, m - y]), X, family=sm.families.Binomial(), **kw).fit(
            tol=1e-13
        )
    return sm.GLM(y, X, family=fam[family], **kw).fit(tol=1e-13)


def params(est):
    return pd.Series(np.r_[est.intercept_, est.coef_], ["const", *est.coef_names_])


@pytest.mark.parametrize("sizes", [(9, 7), (5, 4, 4), (4, 3, 3, 3)])
def test_poisson_offset_matches_statsmodels_on_observed_rows(sizes):
    df, dims, names, y = unbalanced(sizes, seed=len(sizes))
    design = PanelDesign(dims=dims, covariates=names, balanced=False)
    data = design.fit_transform(df)
    assert data.n_rows == len(df) < data.n_cells
    est = PanelPoissonRegressor(offset="off").fit(data, y)
    ref = sm_fit("poisson", df, names, y, offset=df["off"].to_numpy())
    np.testing.assert_allclose(params(est)[["const", *names]], ref.params, rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    assert est.deviance_ == pytest.approx(ref.deviance, rel=1e-9)
    # Predictions only for the rows given, in their order.
    np.testing.assert_allclose(est.predict(data), ref.fittedvalues, rtol=1e-8)


def test_logit_trials_and_weighted_gaussian_match_statsmodels():
    df, dims, names, y = unbalanced((5, 4, 4), seed=7, family="binomial")
    design = PanelDesign(dims=dims, covariates=names, balanced=False)
    est = PanelLogitRegressor(trials="m").fit(design.fit_transform(df), y)
    ref = sm_fit("binomial", df, names, y)
    np.testing.assert_allclose(params(est)[["const", *names]], ref.params, rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)

    df, dims, names, y = unbalanced((5, 4, 4), seed=8, family="gaussian")
    w = df["w"].to_numpy()
    est = PanelLinearRegressor().fit(design.fit_transform(df), y, sample_weight=w)
    ref = sm_fit("gaussian", df, names, y, freq_weights=w)
    np.testing.assert_allclose(params(est)[["const", *names]], ref.params, rtol=1e-8)
    assert est.scale_ == pytest.approx(ref.scale, rel=1e-9)


def test_exponential_with_missing_cells_equals_poisson_on_rows():
    df, dims, names, _ = unbalanced((6, 5, 3), seed=4)
    rng = np.random.default_rng(4)
    T = rng.exponential(size=len(df)) + 0.1
    event = (rng.uniform(size=len(df)) < 0.7).astype(float)
    df = df.assign(event=event)
    design = PanelDesign(dims=dims, covariates=names, balanced=False)
    est = PanelExponentialRegressor(event="event").fit(design.fit_transform(df), T)
    ref = sm_fit("poisson", df, names, event, offset=np.log(T))
    np.testing.assert_allclose(params(est)[["const", *names]], ref.params, rtol=1e-8)
    assert est.loglik_ == pytest.approx(ref.llf - np.sum(event * np.log(T)), rel=1e-10)


def test_fixed_effects_on_unbalanced_panel_match_formula():
    smf = pytest.importorskip("statsmodels.formula.api")
    df, dims, _, y = unbalanced((10, 6), seed=11)
    df = df.assign(y=y)
    est = PanelPoissonRegressor(offset="off").fit(
        PanelDesign(dims=dims, fixed_effects=["d0", "d1"], balanced=False).fit_transform(
            df[[*dims, "x_01", "off"]]
        ),
        y,
    )
    ref = smf.glm(
        "y ~ x_01 + C(d0) + C(d1)", df, offset=df["off"], family=sm.families.Poisson()
    ).fit(tol=1e-13)
    assert pd.Series(est.coef_, est.coef_names_)["x_01"] == pytest.approx(
        ref.params["x_01"], rel=1e-8
    )
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)


def test_tuple_fixed_effect_levels_without_rows():
    """Pairs with no row are not estimated: no warning at fit, an error if predicted."""
    df, dims, _, y = make_panel((6, 5, 4), seed=12)
    cols = [*dims, "x_2", "x_012"]
    pair = (df.d0 == "d0_10") & (df.d1 == "d1_10")  # the reference pair, entirely missing
    design = PanelDesign(dims=dims, fixed_effects=[("d0", "d1")], balanced=False)
    data = design.fit_transform(df.loc[~pair, cols])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = PanelPoissonRegressor().fit(data, y[~pair.to_numpy()])
    ref = sm.GLM(
        y[~pair.to_numpy()],
        np.column_stack(
            [
                df.loc[~pair, ["x_2", "x_012"]].to_numpy(),
                pd.get_dummies(df.loc[~pair, "d0"] + df.loc[~pair, "d1"], dtype=float),
            ]
        ),
        family=sm.families.Poisson(),
    ).fit(tol=1e-13)
    np.testing.assert_allclose(est.predict(data), ref.fittedvalues, rtol=1e-8)
    assert "d0:d1[d0_10:d1_10]" not in est.coef_names_  # the reference, as usual
    assert len(est.collinear_names_) == 1  # one pair becomes the new reference
    with pytest.raises(ValueError, match=r"fixed effect 'd0:d1'.*\(d0='d0_10', d1='d1_10'\)"):
        est.predict(design.transform(df[cols]))


def test_layout_detected_on_rows_with_structured_holes():
    """Each (d0, d1) pair is observed at a single d2: a d2-level column still varies."""
    rng = np.random.default_rng(13)
    pairs = pd.MultiIndex.from_product([range(4), range(4)], names=["d0", "d1"]).to_frame(
        index=False
    )
    df = pairs.assign(d2=(pairs.d0 + pairs.d1) % 2)
    df["x"] = np.array([-0.7, 1.3])[df.d2]  # varies along d2 only
    df["z"] = rng.normal(size=len(df))
    y = rng.poisson(np.exp(0.5 + 0.4 * df["x"] + 0.3 * df["z"])).astype(float)
    design = PanelDesign(dims=["d0", "d1", "d2"], balanced=False)
    data = design.fit_transform(df)
    assert design.spec_["x"].axes == (2,)
    est = PanelPoissonRegressor().fit(data, y)
    ref = sm.GLM(y, sm.add_constant(df[["x", "z"]].to_numpy()), family=sm.families.Poisson())
    np.testing.assert_allclose(est.coef_, ref.fit(tol=1e-13).params[1:], rtol=1e-8)


def test_score_is_d2_of_observed_rows():
    df, dims, names, y = unbalanced((8, 5, 3), seed=2)
    design = PanelDesign(dims=dims, covariates=names, balanced=False)
    data = design.fit_transform(df)
    est = PanelPoissonRegressor().fit(data, y)
    assert est.score(data, y) == pytest.approx(
        d2_tweedie_score(y, est.predict(data), power=1), rel=1e-10
    )


def test_balanced_design_predicts_for_any_subset_of_cells():
    df, dims, names, y = make_panel((6, 5, 4), seed=9)
    design = PanelDesign(dims=dims, covariates=names)
    est = PanelPoissonRegressor().fit(design.fit_transform(df), y)
    full = est.predict(design.transform(df))
    subset = df.sample(frac=0.4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparsePanelWarning)  # 40 % observed: no warning
        part = est.predict(design.transform(subset))
    np.testing.assert_allclose(part, full[subset.index.to_numpy()], rtol=1e-12)


def test_sparse_grid_warns_and_dense_one_does_not():
    df, dims, names, _ = make_panel((10, 10, 5), seed=1)
    sparse = df.sample(frac=0.08, random_state=0)
    design = PanelDesign(dims=dims, covariates=names, balanced=False)
    with pytest.warns(SparsePanelWarning, match=r"500 cells but only 40 rows \(8.0% observed\)"):
        design.fit_transform(sparse)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SparsePanelWarning)
        design.fit_transform(df.sample(frac=0.2, random_state=0))


def test_missing_cells_need_balanced_false():
    df, dims, _, _ = unbalanced((4, 4), seed=0)
    with pytest.raises(ValueError, match="balanced=False"):
        PanelDesign(dims=dims).fit(df)
