"""Panel splitters: whole levels held out, balanced panels, scikit-learn's own splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel
from sklearn.model_selection import LeaveOneGroupOut, TimeSeriesSplit

from panelglm import PanelDesign
from panelglm.model_selection import PanelKFold, PanelTimeSeriesSplit

SIZES = (7, 3, 6)  # d0 x d1 x d2


@pytest.fixture(scope="module")
def panel():
    df, dims, _, _ = make_panel(SIZES, seed=4)  # rows shuffled
    return df, dims


def assert_balanced(df, dims):
    """The rows hold every combination of their dims' levels, each once."""
    n_levels = [df[d].nunique() for d in dims]
    assert len(df) == np.prod(n_levels)
    assert not df.duplicated(subset=dims).any()


def levels_of(df, idx, dim):
    return set(df[dim].iloc[idx])


@pytest.mark.parametrize("shuffle", [False, True])
def test_kfold_holds_out_whole_levels_and_leaves_balanced_panels(panel, shuffle):
    df, dims = panel
    cv = PanelKFold("d0", n_splits=3, shuffle=shuffle, random_state=0 if shuffle else None)
    folds = list(cv.split(df))
    assert len(folds) == cv.get_n_splits() == 3
    seen = []
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert len(train) + len(test) == len(df)
        assert not levels_of(df, train, "d0") & levels_of(df, test, "d0")
        assert_balanced(df.iloc[train], dims)
        assert_balanced(df.iloc[test], dims)
        seen += sorted(levels_of(df, test, "d0"))
    assert sorted(seen) == sorted(df["d0"].unique())  # every level tested once
    sizes = sorted(len(levels_of(df, test, "d0")) for _, test in folds)
    assert sizes == [2, 2, 3]


def test_kfold_with_one_level_per_fold_is_leave_one_group_out(panel):
    df, _ = panel
    ours = list(PanelKFold("d2", n_splits=SIZES[2]).split(df))
    ref = list(LeaveOneGroupOut().split(df, groups=df["d2"]))
    assert len(ours) == len(ref)
    for (tr, te), (rtr, rte) in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(te, rte)


def test_kfold_shuffle_is_seeded(panel):
    df, _ = panel

    def tests(cv):
        return [tuple(te) for _, te in cv.split(df)]

    a = tests(PanelKFold("d0", 3, shuffle=True, random_state=1))
    assert a == tests(PanelKFold("d0", 3, shuffle=True, random_state=1))
    assert a != tests(PanelKFold("d0", 3))


def test_splits_read_paneldata_like_the_frame(panel):
    df, dims = panel
    data = PanelDesign(dims=dims).fit_transform(df)
    for cv in (PanelKFold("d1", 3), PanelTimeSeriesSplit("d2", 3)):
        for (a, b), (c, d) in zip(cv.split(df), cv.split(data), strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


@pytest.mark.parametrize(
    "kw", [{}, {"gap": 1}, {"max_train_size": 2}, {"test_size": 1}], ids=lambda kw: str(kw)
)
def test_time_series_split_is_forward_only_and_balanced(panel, kw):
    df, dims = panel
    order = sorted(df["d2"].unique())
    rank = {lv: i for i, lv in enumerate(order)}
    cv = PanelTimeSeriesSplit("d2", n_splits=3, **kw)
    folds = list(cv.split(df))
    assert len(folds) == 3
    ref = list(TimeSeriesSplit(3, **kw).split(np.arange(len(order))))
    for (train, test), (rtrain, rtest) in zip(folds, ref, strict=True):
        tr = sorted(rank[v] for v in levels_of(df, train, "d2"))
        te = sorted(rank[v] for v in levels_of(df, test, "d2"))
        assert max(tr) + kw.get("gap", 0) < min(te)  # forward only, gap respected
        assert tr == list(rtrain) and te == list(rtest)  # scikit-learn's split of the levels
        assert_balanced(df.iloc[train], dims)
        assert_balanced(df.iloc[test], dims)


def test_time_series_split_orders_levels_by_value_not_by_row():
    weeks = pd.to_datetime(["2024-03-04", "2024-01-01", "2024-02-05", "2024-01-15"])
    df = pd.DataFrame({"store": np.repeat([0, 1], 4), "week": np.tile(weeks, 2)})
    (train, test), *_ = PanelTimeSeriesSplit("week", n_splits=3).split(df)
    assert set(df["week"].iloc[train]) == {pd.Timestamp("2024-01-01")}
    assert set(df["week"].iloc[test]) == {pd.Timestamp("2024-01-15")}


def test_splitter_errors_name_the_dimension(panel):
    df, _ = panel
    with pytest.raises(ValueError, match="'customer' is not in X"):
        next(PanelKFold("customer").split(df))
    with pytest.raises(ValueError, match="3 levels of 'd1'"):
        next(PanelKFold("d1", n_splits=5).split(df))
    with pytest.raises(ValueError, match="6 levels of 'd2'"):
        next(PanelTimeSeriesSplit("d2", n_splits=6).split(df))
    with pytest.raises(TypeError, match="DataFrame or a PanelData"):
        next(PanelKFold("d0").split(df.to_numpy()))
    with pytest.raises(ValueError, match="n_splits"):
        PanelKFold("d0", n_splits=1)
    with pytest.raises(ValueError, match="missing values"):
        next(PanelKFold("d0").split(df.assign(d0=df["d0"].where(df.index > 0))))
