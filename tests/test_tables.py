"""Dimension tables: the same fit as the long frame, without expanding the tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel

from panelglm import PanelDesign, PanelLinearRegressor, PanelPoissonRegressor

KEYS = [("d0",), ("d1",), ("d2",), ("d0", "d1"), ("d0", "d2"), ("d1", "d2")]


def star(df, rng, extra_levels=False):
    """The long frame's covariates as one table per level (rows shuffled)."""
    tables = {}
    for key in KEYS:
        name = "x_" + "".join(k[1] for k in key)
        t = df[[*key, name]].drop_duplicates()
        if extra_levels:  # a level the cells never use
            extra = t.iloc[:1].copy()
            extra[key[0]] = "unused"
            t = pd.concat([t, extra])
        tables[key if len(key) > 1 else key[0]] = t.sample(
            frac=1, random_state=int(rng.integers(99))
        )
    return tables


def coefs(est):
    return pd.Series(np.r_[est.intercept_, est.coef_], index=["const", *est.coef_names_])


def test_tables_fit_equals_long_frame_fit():
    rng = np.random.default_rng(0)
    df, dims, names, y = make_panel((6, 5, 4), seed=1)
    long_design = PanelDesign(dims=dims)
    long = PanelPoissonRegressor().fit(long_design.fit_transform(df[[*dims, *names]]), y)
    design = PanelDesign(dims=dims, tables=star(df, rng, extra_levels=True))
    cells = df[[*dims, "x_012"]]
    est = PanelPoissonRegressor().fit(design.fit_transform(cells), y)
    a, b = coefs(long), coefs(est)
    np.testing.assert_allclose(b[a.index], a, rtol=1e-12, atol=1e-14)
    assert est.loglik_ == pytest.approx(long.loglik_, rel=1e-13)
    # Same columns, same layout: predictions and scores agree too.
    np.testing.assert_allclose(
        est.predict(design.transform(cells)),
        long.predict(long_design.transform(df[[*dims, *names]])),
        rtol=1e-12,
    )
    assert design.covariates_[0] == "x_012" and set(design.covariates_) == set(names)
    assert design.spec_["x_01"].axes == (0, 1)


def test_cv_fold_of_cells_uses_full_tables():
    """A fold holding some levels of d0 fits like the long frame restricted to it."""
    rng = np.random.default_rng(1)
    df, dims, names, y = make_panel((8, 4, 3), seed=2, family="gaussian")
    tables = star(df, rng)
    keep = df["d0"].isin(["d0_10", "d0_12", "d0_13", "d0_15", "d0_16"]).to_numpy()
    fold, y_fold = df[keep], y[keep]
    est = PanelLinearRegressor().fit(
        PanelDesign(dims=dims, tables=tables).fit_transform(fold[[*dims, "x_012"]]), y_fold
    )
    ref = PanelLinearRegressor().fit(
        PanelDesign(dims=dims).fit_transform(fold[[*dims, *names]]), y_fold
    )
    a, b = coefs(ref), coefs(est)
    np.testing.assert_allclose(b[a.index], a, rtol=1e-10)
    # The closed form on the dense matrix of the fold.
    X = np.column_stack([np.ones(keep.sum()), fold[names].to_numpy()])
    np.testing.assert_allclose(a[["const", *names]], np.linalg.lstsq(X, y_fold)[0], rtol=1e-8)


def test_categorical_table_column_and_integer_keys():
    rng = np.random.default_rng(4)
    cells = pd.MultiIndex.from_product([range(30), range(6)], names=["shop", "week"])
    cells = cells.to_frame(index=False)
    cells["promo"] = rng.normal(size=len(cells))
    shops = pd.DataFrame({"shop": np.arange(31)[::-1], "region": list("nsew" * 8)[:31]})
    y = rng.poisson(
        np.exp(
            0.3 * cells["promo"]
            + (shops.set_index("shop").loc[cells["shop"], "region"].to_numpy() == "s")
        )
    )
    long = cells.assign(region=shops.set_index("shop").loc[cells["shop"], "region"].to_numpy())
    a = PanelPoissonRegressor(dims=["shop", "week"]).fit(long, y)
    est = PanelPoissonRegressor().fit(
        PanelDesign(dims=["shop", "week"], tables={"shop": shops}).fit_transform(cells), y
    )
    assert est.coef_names_ == a.coef_names_ == ["promo", "region[n]", "region[s]", "region[w]"]
    np.testing.assert_allclose(est.coef_, a.coef_, rtol=1e-12)


@pytest.mark.parametrize(
    "tables, match",
    [
        ({"d0": "not a frame"}, "must be a DataFrame"),
        ({"nope": pd.DataFrame({"nope": [1]})}, "must name distinct panel dimensions"),
        ({("d0", "d1"): pd.DataFrame({"d0": ["d0_10"]})}, r"no key column\(s\) \['d1'\]"),
    ],
)
def test_bad_table_specs(tables, match):
    df, dims, _, _ = make_panel((3, 2, 2), seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        PanelDesign(dims=dims, tables=tables).fit(df[dims])


def test_missing_and_duplicated_keys_are_named():
    df, dims, _, _ = make_panel((3, 4, 2), seed=0)
    t = df[["d1", "x_1"]].drop_duplicates()
    with pytest.raises(ValueError, match=r"table for 'd1' has no row .*d1='d1_12'"):
        PanelDesign(dims=dims, tables={"d1": t[t["d1"] != "d1_12"]}).fit(df[dims])
    dup = pd.concat([t, t.iloc[[1]]])
    with pytest.raises(ValueError, match=r"duplicated key, e.g. \(d1='d1_11'\)"):
        PanelDesign(dims=dims, tables={"d1": dup}).fit(df[dims])
    pair = df[["d0", "d1", "x_01"]].drop_duplicates()
    pair = pair[(pair["d0"] != "d0_10") | (pair["d1"] != "d1_10")]
    with pytest.raises(
        ValueError, match=r"no row for 1 level combination.*d0='d0_10', d1='d1_10'"
    ):
        PanelDesign(dims=dims, tables={("d1", "d0"): pair}).fit(df[dims])
    with pytest.raises(ValueError, match="'x_1' of the table for 'd1' is also in the data"):
        PanelDesign(dims=dims, tables={"d1": t}).fit(df[[*dims, "x_1"]])
    nan = t.assign(d1=t["d1"].where(t["d1"] != "d1_11"))
    with pytest.raises(ValueError, match="missing values in key column 'd1'"):
        PanelDesign(dims=dims, tables={"d1": nan}).fit(df[dims])


def test_tables_are_not_modified():
    df, dims, _, y = make_panel((3, 4, 2), seed=0)
    t = df[["d1", "x_1"]].drop_duplicates().sample(frac=1, random_state=0)
    before = t.copy()
    PanelPoissonRegressor().fit(
        PanelDesign(dims=dims, tables={"d1": t}).fit_transform(df[dims]), y
    )
    pd.testing.assert_frame_equal(t, before)


@pytest.mark.parametrize("drop_pairs", [False, True])
def test_unbalanced_panel_with_tables_fits_the_observed_rows(drop_pairs):
    """balanced=False with tables: the fit of the expanded observed rows (statsmodels).

    With ``drop_pairs`` some (d0, d1) pairs have no cell and no row in the pair
    table either; the table only needs the combinations that the cells have.
    """
    sm = pytest.importorskip("statsmodels.api")
    df, dims, names, y = make_panel((6, 5, 4), seed=12)
    rng = np.random.default_rng(12)
    keep = rng.uniform(size=len(df)) < 0.6
    if drop_pairs:
        first_pairs = (df["d0"] == df["d0"].iloc[0]) & (df["d1"] != df["d1"].iloc[0])
        keep &= ~first_pairs.to_numpy()
    cells, y_obs = df[keep], y[keep]
    tables = star(cells, rng)
    cell_cols = [n for n in names if n == "x_012"]
    data = PanelDesign(dims=dims, tables=tables, balanced=False).fit_transform(
        cells[[*dims, *cell_cols]]
    )
    est = PanelPoissonRegressor().fit(data, y_obs)
    X = sm.add_constant(cells[est.coef_names_].to_numpy())
    ref = sm.GLM(y_obs, X, family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(est.coef_, ref.params[1:], rtol=1e-7, atol=1e-9)
    assert est.loglik_ == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(est.predict(data), ref.predict(X), rtol=1e-8)


def test_duplicated_integer_key_is_shown_as_written():
    cells = pd.DataFrame({"firm": [0, 0, 1, 1], "year": [0, 1, 0, 1], "x": [1.0, 2.0, 3.0, 5.0]})
    table = pd.DataFrame({"firm": [0, 0, 1], "size": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"duplicated key, e\.g\. \(firm=0\)\."):
        PanelDesign(dims=["firm", "year"], tables={"firm": table}).fit(cells)
