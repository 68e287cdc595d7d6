"""The lean grid: small codes, no copies for C-ordered rows, the same results in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_panel

from panelglm import PanelDesign, PanelPoissonRegressor
from panelglm._data.columns import detect_axes, lay_out
from panelglm._data.grid_build import build_grid


def c_ordered_frame(shape=(7, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([np.arange(n, dtype=np.int16) * 3 + 5 for n in shape])
    df = idx.to_frame(index=False, name=["a", "b", "c"])
    df["cell"] = rng.normal(size=len(df))
    df["ab"] = np.repeat(rng.normal(size=shape[0] * shape[1]), shape[2])
    df["c_only"] = np.tile(rng.normal(size=shape[2]), shape[0] * shape[1])
    return df, rng.poisson(1.0, size=len(df)).astype(float)


def test_integer_dims_factorize_like_pandas_into_small_codes():
    df, _ = c_ordered_frame()
    grid = build_grid(df, ["a", "b", "c"])
    for d, codes, levels in zip(["a", "b", "c"], grid.codes, grid.levels, strict=True):
        ref_codes, ref_levels = pd.factorize(df[d], sort=True)
        assert codes.dtype == np.int8
        np.testing.assert_array_equal(codes, ref_codes)
        pd.testing.assert_index_equal(levels, pd.Index(ref_levels, name=d))


def test_c_ordered_rows_need_no_permutation_and_no_copy():
    df, _ = c_ordered_frame()
    grid = build_grid(df, ["a", "b", "c"])
    assert grid.row_of_cell is None
    values = df["cell"].to_numpy()
    laid = lay_out(values, grid, (0, 1, 2), "cell")
    assert np.shares_memory(laid, values)
    assert detect_axes(df["ab"].to_numpy(), grid) == (0, 1)
    assert detect_axes(df["c_only"].to_numpy(), grid) == (2,)
    np.testing.assert_array_equal(
        lay_out(df["ab"].to_numpy(), grid, (0, 1), "ab").ravel(), df["ab"].to_numpy()[::4]
    )
    with pytest.raises(
        ValueError, match=r"Column 'cell' .* varies along \['c'\] here, e.g. at row 1"
    ):
        lay_out(values, grid, (0, 1), "cell")


def test_any_row_order_gives_the_same_fit_and_predictions_in_caller_order():
    df, y = c_ordered_frame()
    dims = ["a", "b", "c"]
    base = PanelPoissonRegressor(dims=dims).fit(df, y)
    perm = np.random.default_rng(1).permutation(len(df))
    shuffled = df.iloc[perm]
    grid = build_grid(shuffled, dims)
    assert grid.row_of_cell is not None
    np.testing.assert_array_equal(
        grid.from_grid(grid.to_grid(np.arange(len(df)))), np.arange(len(df))
    )
    est = PanelPoissonRegressor(dims=dims).fit(shuffled, y[perm])
    np.testing.assert_allclose(est.coef_, base.coef_, rtol=1e-12)
    np.testing.assert_allclose(est.predict(shuffled), base.predict(df)[perm], rtol=1e-12)


def test_duplicate_and_missing_cells_still_named():
    df, _ = c_ordered_frame()
    with pytest.raises(ValueError, match=r"Duplicate cells: .*\(a=5, b=5, c=5\) appears 2 times"):
        build_grid(pd.concat([df, df.iloc[:1]]), ["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"Missing cells: .*1 have no row, e.g. \(a=5, b=5, c=8\)"
    ):
        build_grid(df.drop(index=1), ["a", "b", "c"])


def test_string_dims_and_caller_data_untouched():
    df, dims, names, y = make_panel((4, 3, 2), seed=0)
    before = df.copy()
    PanelPoissonRegressor().fit(PanelDesign(dims=dims).fit_transform(df[[*dims, *names]]), y)
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize(
    "values",
    [
        np.array([2**63 + 7, 2**63 + 1, 2**64 - 1, 2**63 + 1], dtype=np.uint64),  # hashed ids
        np.array([-100, 100, 27, -100], dtype=np.int8),  # a range wider than int8
        np.array([250, 3, 7, 250], dtype=np.uint8),
    ],
)
def test_integer_dims_at_the_edges_of_their_type(values):
    """Offsets from the minimum are taken without overflowing the column's type."""
    frame = pd.DataFrame({"id": values, "t": [0, 0, 0, 1]})
    grid = build_grid(frame, ["id", "t"], balanced=False)
    code, uniq = pd.factorize(frame["id"], sort=True)
    np.testing.assert_array_equal(grid.codes[0], code)
    np.testing.assert_array_equal(grid.levels[0].to_numpy(), uniq)
    assert grid.levels[0].dtype == values.dtype


@pytest.mark.parametrize("shuffle", [False, True])
def test_predictions_are_fresh_writeable_arrays(shuffle):
    """Like scikit-learn's: writeable, and not a view of anything the caller passed."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = rng.poisson(np.exp(X @ [0.3, -0.2]))
    order = rng.permutation(50) if shuffle else np.arange(50)
    est = PanelPoissonRegressor().fit(X, y)
    pred = est.predict(X[order])
    assert pred.flags.writeable and pred.flags.owndata
    np.testing.assert_allclose(pred, np.exp(est.intercept_ + X[order] @ est.coef_), rtol=1e-12)


def _shuffled_fit_peak(q, rng):
    import tracemalloc

    shape = (40, 50, 50)
    n = int(np.prod(shape))
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    df = pd.DataFrame(grid.reshape(-1, 3), columns=["i", "j", "k"])
    for c in range(q):
        df[f"x{c}"] = rng.normal(size=n)
    y = rng.poisson(np.exp(0.1 * df["x0"].to_numpy())).astype(float)
    order = rng.permutation(n)
    data = PanelDesign(dims=["i", "j", "k"]).fit_transform(df.iloc[order])
    y_shuffled = y[order]
    est = PanelPoissonRegressor()
    tracemalloc.start()
    est.fit(data, y_shuffled)
    peak = tracemalloc.get_traced_memory()[1] / (8 * n)
    tracemalloc.stop()
    ref = PanelPoissonRegressor().fit(PanelDesign(dims=["i", "j", "k"]).fit_transform(df), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10)
    return peak


def test_shuffled_cell_columns_are_held_once():
    """A shuffled frame's cell-level columns are gathered into the design's block
    without the panel keeping a second copy of each: the fit's peak grows by about
    1.7 N-arrays per cell-level column (the block, and transients), not 2.7."""
    rng = np.random.default_rng(0)
    per_column = (_shuffled_fit_peak(6, rng) - _shuffled_fit_peak(2, rng)) / 4
    assert per_column < 2.0, per_column  # 2.7 when the panel kept a copy of each


def _reference_grid(frame, dims):
    """The grid through factorizing (the rows shuffled, so the C-order path cannot apply)."""
    order = np.random.default_rng(0).permutation(len(frame))
    grid = build_grid(frame.iloc[order].reset_index(drop=True), dims)
    cells = np.empty(len(frame), dtype=np.intp)
    cells[order] = grid.cells()
    return grid, cells


@pytest.mark.parametrize(
    "levels",
    [
        [np.array([3, 8, 11]), np.array([-5, 0]), np.arange(4, dtype=np.uint8)],
        [np.array([2001], dtype=np.int16), np.array([10, 20, 40, 80]), np.array([7])],
        [pd.date_range("2020-01-01", periods=3).to_numpy(), np.array([1, 2])],
    ],
)
def test_rows_in_c_order_are_read_off_their_pattern(levels):
    """Rows that are every cell once in C order: levels read from the pattern,
    no factorizing, codes made only when asked for; the same grid as the
    factorized one."""
    import panelglm._data.grid_build as layout

    dims = [f"d{a}" for a in range(len(levels))]
    grids = np.meshgrid(*levels, indexing="ij")
    frame = pd.DataFrame({d: g.reshape(-1) for d, g in zip(dims, grids, strict=True)})
    grid = build_grid(frame, dims)
    assert isinstance(grid.codes, layout.RampCodes)
    assert grid.row_of_cell is None and grid.n_rows == len(frame)
    ref, cells = _reference_grid(frame, dims)
    for ours, theirs in zip(grid.levels, ref.levels, strict=True):
        pd.testing.assert_index_equal(ours, theirs)
    np.testing.assert_array_equal(grid.cells(), cells)
    np.testing.assert_array_equal(grid.cells(), np.arange(len(frame)))


@pytest.mark.parametrize(
    "break_it",
    [
        lambda f: f.iloc[[1, 0, *range(2, len(f))]],  # two rows swapped
        lambda f: f.assign(d0=f["d0"].to_numpy()[::-1].copy()),  # first dim descending
        lambda f: f.iloc[:-1],  # a cell missing
        lambda f: pd.concat([f, f.iloc[[3]]]),  # a cell twice
        lambda f: f.assign(d1=f["d1"].astype(float)),  # a float dimension
        lambda f: f.assign(d2=f["d2"].astype(str)),  # a string dimension
    ],
)
def test_rows_not_in_c_order_are_factorized(break_it):
    """Anything but every cell once in C order takes the factorizing path, with
    its results (or its errors)."""
    import panelglm._data.grid_build as layout

    shape = (3, 4, 2)
    idx = np.indices(shape).reshape(3, -1)
    frame = break_it(pd.DataFrame({"d0": idx[0] + 10, "d1": idx[1] * 3, "d2": idx[2]}))
    dims = ["d0", "d1", "d2"]
    assert layout._grid_in_c_order(frame.reset_index(drop=True), tuple(dims)) is None
    try:
        grid = build_grid(frame.reset_index(drop=True), dims)
    except ValueError as exc:
        assert "Duplicate cells" in str(exc) or "Missing cells" in str(exc)
    else:
        _, cells = _reference_grid(frame.reset_index(drop=True), dims)
        np.testing.assert_array_equal(grid.cells(), cells)
