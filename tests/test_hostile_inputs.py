"""Inputs that used to fail deep inside numpy or pandas: each now gets an error naming its cause.

Duplicated column names, complex numbers, arrays in cells, and a dimension
named as a covariate or an auxiliary column, through every entry point that
takes them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import SparsePanelWarning

DIMS = ["c", "w"]


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"c": np.repeat(np.arange(6), 4), "w": np.tile(np.arange(4), 6)})
    df["x"] = rng.normal(size=len(df))
    df["expo"] = rng.normal(scale=0.1, size=len(df))
    df["m"] = 3.0
    df["ev"] = (rng.uniform(size=len(df)) < 0.7).astype(float)
    df["note"] = "a"
    y = rng.poisson(1.0, size=len(df)).astype(float)
    return df, y


def with_copy(df, name):
    """``df`` with a second column named ``name``."""
    return pd.concat([df, df[[name]]], axis=1)


@pytest.fixture(autouse=True)
def no_silent_casts():
    # numpy's ComplexWarning (the imaginary part dropped) must never be the only sign.
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        yield


# ------------------------------------------------------- duplicated columns
@pytest.mark.parametrize("name", ["x", "note", "c"])
def test_duplicate_columns_panel_design(frame, name):
    df, y = frame
    bad = with_copy(df, name)
    with pytest.raises(ValueError, match=rf"duplicated column name.*'{name}'"):
        PanelDesign(DIMS).fit(bad)
    with pytest.raises(ValueError, match=rf"duplicated column name.*'{name}'"):
        PanelDesign(DIMS, covariates=["x"]).fit_transform(bad, y)
    design = PanelDesign(DIMS).fit(df)
    with pytest.raises(ValueError, match=rf"duplicated column name.*'{name}'"):
        design.transform(bad)


def test_duplicate_columns_estimators(frame):
    df, y = frame
    bad = with_copy(df[["c", "w", "x"]], "x")
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        PanelPoissonRegressor(dims=DIMS).fit(bad, y)
    model = PanelPoissonRegressor(dims=DIMS).fit(df[["c", "w", "x"]], y)
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        model.score(bad, y)
    pipe = make_pipeline(PanelDesign(DIMS), PanelPoissonRegressor())
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        pipe.fit(bad, y)
    # A cross-section given as a frame (no dims).
    flat = bad.drop(columns=["c", "w"])
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        PanelPoissonRegressor().fit(flat, y)
    model = PanelPoissonRegressor().fit(df[["x"]], y)
    with pytest.raises(ValueError, match=r"duplicated column name.*'x'"):
        model.predict(flat)


def test_duplicate_columns_in_table(frame):
    df, _ = frame
    firms = pd.DataFrame({"c": np.arange(6), "size": np.arange(6.0), "age": 1.0})
    bad = with_copy(firms, "age")
    with pytest.raises(ValueError, match=r"table for 'c' has duplicated column name.*'age'"):
        PanelDesign(DIMS, tables={"c": bad}).fit(df[["c", "w", "x"]])


# ---------------------------------------------------------- complex numbers
def test_complex_covariate(frame):
    df, y = frame
    bad = df.assign(x=df["x"] + 1j)
    with pytest.raises(TypeError, match="Column 'x' holds complex numbers"):
        PanelDesign(DIMS).fit(bad)
    with pytest.raises(TypeError, match="Column 'x' holds complex numbers"):
        PanelPoissonRegressor(dims=DIMS).fit(bad, y)
    model = PanelPoissonRegressor(dims=DIMS).fit(df[["c", "w", "x"]], y)
    with pytest.raises(TypeError, match="Column 'x' holds complex numbers"):
        model.predict(bad[["c", "w", "x"]])
    firms = pd.DataFrame({"c": np.arange(6), "size": np.arange(6.0) + 2j})
    with pytest.raises(TypeError, match="Column 'size' holds complex numbers"):
        PanelDesign(DIMS, tables={"c": firms}).fit(df[["c", "w", "x"]])


@pytest.mark.parametrize(
    ("make", "column", "role"),
    [
        (lambda: PanelPoissonRegressor(dims=DIMS, offset="expo"), "expo", "offset"),
        (lambda: PanelLogitRegressor(dims=DIMS, trials="m"), "m", "trials"),
        (lambda: PanelExponentialRegressor(dims=DIMS, event="ev"), "ev", "event"),
    ],
)
def test_complex_auxiliary_column(frame, make, column, role):
    df, y = frame
    df = df.drop(columns="note")
    y = np.minimum(y, 1.0) if role == "trials" else y + 0.5
    bad = df.assign(**{column: df[column] + 0.5j})
    with pytest.raises(TypeError, match=f"Column '{column}' holds complex numbers"):
        make().fit(bad, y)
    # Left out of PanelDesign's covariates, it is named when the model asks for it.
    est = make().set_params(dims=None)
    pipe = make_pipeline(PanelDesign(DIMS, covariates=["x"]), est)
    with pytest.raises(TypeError, match=rf"Column '{column}' holds complex numbers.*as {role}"):
        pipe.fit(bad, y)


@pytest.mark.parametrize("kind", ["array", "series", "list"])
def test_complex_target(frame, kind):
    df, y = frame
    yc = y + 1j
    yc = {"array": yc, "series": pd.Series(yc), "list": list(yc)}[kind]
    with pytest.raises(TypeError, match="target y holds complex numbers"):
        PanelPoissonRegressor(dims=DIMS).fit(df[["c", "w", "x"]], yc)
    model = PanelPoissonRegressor(dims=DIMS).fit(df[["c", "w", "x"]], y)
    with pytest.raises(TypeError, match="target y holds complex numbers"):
        model.score(df[["c", "w", "x"]], yc)


def test_complex_sample_weight(frame):
    df, y = frame
    with pytest.raises(TypeError, match="sample_weight holds complex numbers"):
        PanelPoissonRegressor(dims=DIMS).fit(df[["c", "w", "x"]], y, sample_weight=y * 0 + 1j)


# ------------------------------------------------------------ arrays in cells
@pytest.mark.parametrize("value", [np.arange(2), [1, 2], {"a": 1}, (1, [2])])
def test_unhashable_values_named(frame, value):
    df, y = frame
    cells = pd.Series([value] * len(df), dtype=object)
    kind = type(value).__name__
    with pytest.raises(TypeError, match=f"Column 'z' holds {kind} values"):
        PanelDesign(DIMS).fit(df.assign(z=cells))
    with pytest.raises(TypeError, match=f"Column 'z' holds {kind} values"):
        PanelPoissonRegressor(dims=DIMS).fit(df.assign(z=cells), y)
    # As a dimension.
    with pytest.raises(TypeError, match=f"Dimension 'z' holds {kind} values"):
        PanelDesign(["z", "w"]).fit(df.assign(z=cells))
    # Not a covariate but named as the offset.
    pipe = make_pipeline(PanelDesign(DIMS, covariates=["x"]), PanelPoissonRegressor(offset="z"))
    with pytest.raises(TypeError, match=rf"Column 'z' holds {kind} values.*as offset"):
        pipe.fit(df.assign(z=cells), y)
    # Tuples are hashable: a column of them stays a categorical covariate.
    tuples = pd.Series([(k % 2, "a") for k in df["c"]], dtype=object)
    codes, axes = PanelDesign(DIMS).fit_transform(df.assign(z=tuples)).category_codes("z")
    assert axes == (0,)
    np.testing.assert_array_equal(codes, np.arange(6) % 2)


def test_unhashable_values_in_tables(frame):
    df, _ = frame
    sizes = pd.Series([np.arange(2)] * 6, dtype=object)
    firms = pd.DataFrame({"c": np.arange(6), "size": sizes})
    with pytest.raises(TypeError, match="Column 'size' holds ndarray values"):
        PanelDesign(DIMS, tables={"c": firms}).fit(df[["c", "w", "x"]])
    keys = pd.Series([np.arange(k + 1) for k in range(6)], dtype=object)
    firms = pd.DataFrame({"c": keys, "size": np.arange(6.0)})
    with pytest.raises(TypeError, match="Key column 'c' of the table 'c' holds ndarray"):
        PanelDesign(DIMS, tables={"c": firms}).fit(df[["c", "w", "x"]])


# ----------------------------------------------- a dimension named as a column
def test_dimension_named_as_covariate(frame):
    df, _ = frame
    with pytest.raises(ValueError, match=r"Covariate 'w' is a panel dimension.*fixed_effects"):
        PanelDesign(DIMS, covariates=["x", "w"]).fit(df)
    with pytest.raises(ValueError, match="Covariate 'x' is the target y"):
        PanelDesign(DIMS, covariates=["x"]).fit(df, df["x"])


@pytest.mark.parametrize(
    ("make", "role"),
    [
        (lambda: PanelPoissonRegressor(dims=DIMS, offset="w"), "offset"),
        (lambda: PanelLogitRegressor(dims=DIMS, trials="w"), "trials"),
        (lambda: PanelExponentialRegressor(dims=DIMS, event="w"), "event"),
    ],
)
def test_dimension_named_as_auxiliary_column(frame, make, role):
    df, y = frame
    y = np.minimum(y, 1.0) if role == "trials" else y + 0.5
    with pytest.raises(ValueError, match=f"Column 'w' named as {role} is a panel dimension"):
        make().fit(df.drop(columns="note"), y)


# ------------------------------------------------------- ID-like dimensions
def id_like(n_levels, n_rows, seed=0, repeat=0):
    """``n_rows`` distinct random cells of an ``n_levels x n_levels`` grid (plus repeats)."""
    rng = np.random.default_rng(seed)
    flat = np.unique(rng.integers(0, n_levels * n_levels, int(n_rows * 1.1)))[:n_rows]
    flat = rng.permutation(np.concatenate([flat, np.repeat(flat[:1], repeat)]))
    return pd.DataFrame({"a": flat // n_levels, "b": flat % n_levels, "x": 1.0})


def peak_bytes(fn):
    """Peak memory traced while ``fn`` runs (numpy's arrays included), and its error."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    except ValueError as exc:
        error = exc
    else:
        error = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def grid_numbers(df):
    na, nb = df["a"].nunique(), df["b"].nunique()
    return na, nb, na * nb


@pytest.mark.parametrize("n_levels", [20_000, 100_000])
def test_id_like_dims_balanced_fail_fast(n_levels):
    # 74.5 GiB for a count per cell at 100,000 x 100,000 levels; 3.2 GB at 20,000.
    df = id_like(n_levels, 60_000)
    *_, n_cells = grid_numbers(df)
    peak, error = peak_bytes(lambda: PanelDesign(["a", "b"]).fit(df))
    assert error is not None
    assert f"Missing cells: the panel over ['a', 'b'] has {n_cells} cells" in str(error)
    assert f"{n_cells - 60_000} have no row" in str(error)
    # The rows' size (60,000 rows: a few MB), not the grid's (GBs).
    assert peak < 20e6
    y = np.zeros(len(df))
    peak, error = peak_bytes(lambda: PanelPoissonRegressor(dims=["a", "b"]).fit(df, y))
    assert error is not None and "Missing cells" in str(error)
    assert peak < 20e6


@pytest.mark.parametrize("n_levels", [20_000, 100_000])
def test_id_like_dims_unbalanced_refused(n_levels):
    df = id_like(n_levels, 60_000)
    na, nb, n_cells = grid_numbers(df)
    design = PanelDesign(["a", "b"], balanced=False)
    peak, error = peak_bytes(lambda: design.fit(df))
    assert error is not None
    text = str(error)
    assert f"has {n_cells:,} cells ({na:,} x {nb:,} levels) but only 60,000 rows" in text
    assert f"{8 * n_cells:,} bytes" in text and "1,073,741,824 bytes" in text
    assert "max_sparse_grid_bytes" in text
    assert peak < 20e6
    # transform lays out new data on a grid of its own: the same limit holds.
    full = pd.DataFrame({"a": np.repeat([0, 1, 2], 3), "b": np.tile([0, 1, 2], 3), "x": 1.0})
    small = PanelDesign(["a", "b"]).fit(full)
    peak, error = peak_bytes(lambda: small.transform(df))
    assert error is not None and f"{8 * n_cells:,} bytes" in str(error)
    assert peak < 20e6


def test_sparse_grid_limit_overridable():
    # 4,000 x 4,000 levels, 12,000 rows: 128 MB per float64 array, under the default limit.
    df = id_like(4_000, 12_000, seed=1)
    *_, n_cells = grid_numbers(df)
    design = PanelDesign(["a", "b"], balanced=False)
    design.max_sparse_grid_bytes = 2**20
    peak, error = peak_bytes(lambda: design.fit(df))
    assert error is not None and f"{8 * n_cells:,} bytes" in str(error)
    assert "1,048,576 bytes" in str(error)
    assert peak < 10e6
    design.max_sparse_grid_bytes = None
    with pytest.warns(SparsePanelWarning):
        data = design.fit_transform(df)
    assert data.n_cells == n_cells and data.n_rows == len(df)
    with pytest.warns(SparsePanelWarning):
        data = PanelDesign(["a", "b"], balanced=False).fit_transform(df)  # the default
    np.testing.assert_array_equal(data.from_grid(data.to_grid(df["a"])), df["a"])


def test_duplicates_found_without_a_count_per_cell():
    # A cell three times in a grid of 1e10 cells: found by sorting the rows.
    df = id_like(100_000, 60_000, repeat=2)
    first = df[["a", "b"]].iloc[np.flatnonzero(df.duplicated(["a", "b"]))[0]]
    cell = f"(a={first['a']}, b={first['b']}) appears 3 times"
    peak, error = peak_bytes(lambda: PanelDesign(["a", "b"]).fit(df))
    assert error is not None and "Duplicate cells: 1 level combination(s)" in str(error)
    assert cell in str(error)
    assert peak < 20e6
    design = PanelDesign(["a", "b"], balanced=False)
    design.max_sparse_grid_bytes = None  # past the size check, to the duplicate check
    peak, error = peak_bytes(lambda: design.fit(df))
    assert error is not None and cell in str(error)
    assert peak < 20e6


def test_missing_cell_example_without_a_count_per_cell():
    # 1,000 x 1,000 cells for 2,000 rows: the sorted rows give the first empty cell.
    df = id_like(1_000, 2_000, seed=2)
    a_levels, b_levels = np.sort(df["a"].unique()), np.sort(df["b"].unique())
    taken = set(zip(df["a"], df["b"], strict=True))
    first = next((a, b) for a in a_levels for b in b_levels if (a, b) not in taken)
    peak, error = peak_bytes(lambda: PanelDesign(["a", "b"]).fit(df))
    assert error is not None and f"e.g. (a={first[0]}, b={first[1]})" in str(error)
    assert peak < 2e6  # a count per cell alone is 8 MB
