"""Bad input: each case raises the right error type with a message naming the culprit."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import CollinearityWarning

DF, DIMS, NAMES, Y = make_panel((4, 3), seed=0)
BASE = DF[[*DIMS, *NAMES]]
Y01 = np.minimum(Y, 1.0)


def poisson(**kw):
    return PanelPoissonRegressor(dims=DIMS, **kw)


def logit(**kw):
    return PanelLogitRegressor(dims=DIMS, **kw)


def with_value(frame, col, row, value):
    out = frame.copy()
    if not isinstance(value, str) and value is not None:
        out[col] = out[col].astype(float)
    else:
        out[col] = out[col].astype(object)
    out.loc[row, col] = value
    return out


def with_y(y, row, value):
    out = np.array(y, dtype=float)
    out[row] = value
    return out


def row_of(i, frame=BASE):
    """How messages locate row i: its position and its cell."""
    return rf"row {i} \(index {i}: d0='{frame.d0[i]}', d1='{frame.d1[i]}'\)"


def weights(row, value):
    w = np.ones(len(Y))
    w[row] = value
    return w


AUX = DF[[*DIMS, *NAMES, "off", "m"]].assign(event=(np.arange(len(DF)) % 2).astype(float))
T = Y + 1.0  # positive durations

# (id, call, error type, regex the message must match)
CASES = [
    ("nan-covariate", lambda: poisson().fit(with_value(BASE, "x_0", 3, np.nan), Y),
     ValueError, "Column 'x_0' has missing values"),
    ("inf-covariate", lambda: poisson().fit(with_value(BASE, "x_01", 3, np.inf), Y),
     ValueError, "Column 'x_01' has infinite values"),
    ("nan-y", lambda: poisson().fit(BASE, with_y(Y, 5, np.nan)),
     ValueError, "target y .* " + row_of(5) + ", is missing"),
    ("inf-y", lambda: poisson().fit(BASE, with_y(Y, 5, np.inf)),
     ValueError, "target y .* " + row_of(5) + ", is infinite"),
    ("nan-offset", lambda: poisson(offset="off").fit(with_value(AUX, "off", 2, np.nan), Y),
     ValueError, "Column 'off' has missing values"),
    ("inf-offset", lambda: poisson(offset="off").fit(with_value(AUX, "off", 2, -np.inf), Y),
     ValueError, "Column 'off' has infinite values"),
    ("nan-trials", lambda: logit(trials="m").fit(with_value(AUX, "m", 2, np.nan), Y01),
     ValueError, "Column 'm' has missing values"),
    ("zero-trials", lambda: logit(trials="m").fit(with_value(AUX, "m", 2, 0.0), Y01),
     ValueError, "trials column 'm' must be positive; e.g. at " + row_of(2)),
    ("nan-weight", lambda: poisson().fit(BASE, Y, sample_weight=weights(4, np.nan)),
     ValueError, "sample_weight contains NaN"),
    ("inf-weight", lambda: poisson().fit(BASE, Y, sample_weight=weights(4, np.inf)),
     ValueError, "sample_weight contains infinity"),
    ("negative-weight", lambda: poisson().fit(BASE, Y, sample_weight=weights(4, -1.0)),
     ValueError, "Negative values in data passed to `sample_weight`"),
    ("zero-weights", lambda: poisson().fit(BASE, Y, sample_weight=np.zeros(len(Y))),
     ValueError, "[Ss]ample.weight"),
    ("negative-y-poisson", lambda: poisson().fit(BASE, with_y(Y, 7, -1.0)),
     ValueError, "non-negative for the Poisson family; e.g. " + row_of(7) + " has y=-1.0"),
    ("y-above-trials", lambda: logit().fit(BASE, with_y(Y01, 7, 2.0)),
     ValueError, "must not exceed the number of trials.*" + row_of(7) + " has y=2.0"),
    ("y-above-trials-column", lambda: logit(trials="m").fit(AUX, with_y(Y01, 7, 99.0)),
     ValueError, "must not exceed the number of trials.*" + row_of(7) + r" has y=99.0 \(trials"),
    ("negative-y-logit", lambda: logit().fit(BASE, with_y(Y01, 7, -0.5)),
     ValueError, "non-negative for the binomial family; e.g. " + row_of(7)),
    ("zero-duration", lambda: PanelExponentialRegressor(dims=DIMS).fit(BASE, with_y(T, 3, 0.0)),
     ValueError, "durations y must be positive; e.g. at " + row_of(3)),
    ("event-not-binary",
     lambda: PanelExponentialRegressor(dims=DIMS, event="event").fit(
         with_value(AUX, "event", 1, 2.0), T),
     ValueError, "event column 'event' must hold only 0 and 1; e.g. at " + row_of(1)),
    ("dim-missing", lambda: poisson().fit(BASE.drop(columns="d1"), Y),
     ValueError, r"Dimension column\(s\) \['d1'\] not found"),
    ("dim-nan", lambda: poisson().fit(with_value(BASE, "d1", 0, None), Y),
     ValueError, "Dimension column 'd1' has missing values"),
    ("dim-nullable-na",
     lambda: poisson().fit(BASE.assign(d0=pd.array([0, 1, None, 3] * 3, dtype="Int64")), Y),
     ValueError, "Dimension column 'd0' has missing values"),
    ("duplicate-cell",
     lambda: poisson().fit(pd.concat([BASE, BASE.iloc[[0]]]), np.r_[Y, 1.0]),
     ValueError, rf"Duplicate cells.*\(d0='{BASE.d0[0]}', d1='{BASE.d1[0]}'\) appears 2 times"),
    ("missing-cell", lambda: poisson().fit(BASE.iloc[1:], Y[1:]),
     ValueError, rf"Missing cells.*\(d0='{BASE.d0[0]}', d1='{BASE.d1[0]}'\).*balanced=False"),
    ("constant-column", lambda: poisson(collinear="raise").fit(BASE.assign(c=2.0), Y),
     ValueError, "Collinearity: the covariate coefficient.* 'c' "),
    ("unknown-offset", lambda: poisson(offset="nope").fit(BASE, Y),
     ValueError, "Unknown column 'nope' named as offset"),
    ("unknown-trials", lambda: logit(trials="nope").fit(BASE, Y01),
     ValueError, "Unknown column 'nope' named as trials"),
    ("unknown-event", lambda: PanelExponentialRegressor(dims=DIMS, event="nope").fit(BASE, T),
     ValueError, "Unknown column 'nope' named as event"),
    ("categorical-offset",
     lambda: poisson(offset="g").fit(BASE.assign(g=np.where(BASE.d0 < "d0_12", "a", "b")), Y),
     TypeError, "Column 'g' \\(offset\\) is categorical"),
    ("empty-frame", lambda: poisson().fit(BASE.iloc[:0], Y[:0]),
     ValueError, "The data has no rows"),
    ("empty-array", lambda: PanelPoissonRegressor().fit(np.empty((0, 2)), []),
     ValueError, "0 sample"),
    ("mixed-object-column",
     lambda: poisson().fit(BASE.assign(g=pd.Series([1, "a"] * 6, dtype=object)), Y),
     TypeError, "Column 'g' mixes values of different types \\(number such as 1, str such"),
    ("numeric-object-column",
     lambda: poisson().fit(BASE.assign(g=pd.Series([1, 2.5] * 6, dtype=object)), Y),
     TypeError, "Column 'g' holds numbers in an object column"),
    ("mixed-dimension",
     lambda: poisson().fit(BASE.assign(d1=pd.Series(["a", 1, "c"] * 4, dtype=object)), Y),
     TypeError, "Dimension 'd1' mixes values of different types"),
    ("nullable-int-na",
     lambda: poisson().fit(BASE.assign(k=pd.array([1, None] * 6, dtype="Int64")), Y),
     ValueError, "Column 'k' has missing values"),
    ("nullable-float-na",
     lambda: poisson().fit(BASE.assign(k=pd.array([1.5, None] * 6, dtype="Float64")), Y),
     ValueError, "Column 'k' has missing values"),
    ("nullable-bool-na",
     lambda: poisson().fit(BASE.assign(k=pd.array([True, None, False] * 4, dtype="boolean")), Y),
     ValueError, "Column 'k' has missing values"),
    ("nullable-y-na", lambda: poisson().fit(BASE, pd.Series([1, None] * 6, dtype="Int64")),
     ValueError, "target y .* " + row_of(1) + ", is missing"),
    ("string-y", lambda: poisson().fit(BASE, pd.Series(["1", "2"] * 6)),
     TypeError, "target y has dtype str"),
    ("y-wrong-length", lambda: poisson().fit(BASE, Y[:-1]),
     ValueError, "y must be one-dimensional with 12 values"),
    ("not-a-frame", lambda: PanelDesign(dims=DIMS).fit(BASE.to_numpy()),
     TypeError, "needs a pandas DataFrame"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_error_names_culprit(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.fixture(scope="module")
def fitted():
    frame = BASE.drop(columns="x_1").assign(g=np.where(BASE.d0 < "d0_12", "a", "b"))
    return frame, poisson(fixed_effects=["d1"]).fit(frame, Y)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda f: f.drop(columns="x_0"), ValueError, "Column 'x_0' \\(covariate\\) is missing"),
        (lambda f: f.assign(g="zz"), ValueError, r"Column 'g' has level\(s\) \['zz'\] not seen"),
        (lambda f: f.assign(d1=f.d1 + "new"), ValueError, "dimension 'd1' were not seen in fit"),
        (lambda f: f.drop(columns="d0"), ValueError, r"\['d0'\] not found"),
    ],
    ids=["missing-covariate", "new-category", "new-fixed-effect-level", "missing-dim"],
)
def test_predict_time_errors_name_culprit(fitted, change, error, match):
    frame, est = fitted
    with pytest.raises(error, match=match):
        est.predict(change(frame))


def test_constant_column_dropped_with_warning_by_default():
    """fixest's choice: the constant column is dropped and named, the rest is fitted."""
    with pytest.warns(CollinearityWarning, match="'c'"):
        est = poisson().fit(BASE.assign(c=2.0), Y)
    ref = sm.GLM(Y, sm.add_constant(BASE[NAMES].to_numpy()), family=sm.families.Poisson())
    ref = ref.fit(tol=1e-13)
    coef = pd.Series(est.coef_, est.coef_names_)
    assert np.isnan(coef["c"]) and est.collinear_names_ == ["c"]
    np.testing.assert_allclose(coef[NAMES], ref.params[1:], rtol=1e-8)
    assert est.intercept_ == pytest.approx(ref.params[0], rel=1e-8)


def test_constant_column_without_intercept_is_kept():
    frame = BASE.assign(c=2.0)
    est = poisson(fit_intercept=False).fit(frame, Y)
    ref = sm.GLM(Y, frame[[*NAMES, "c"]].to_numpy(), family=sm.families.Poisson()).fit(tol=1e-13)
    np.testing.assert_allclose(est.coef_, ref.params, rtol=1e-8)


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "int32", "float32"])
def test_nullable_and_narrow_numeric_dtypes_are_numbers(dtype):
    k = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])
    est = poisson().fit(BASE.assign(k=pd.array(k, dtype=dtype)), Y)
    X = sm.add_constant(np.column_stack([BASE[NAMES].to_numpy(), k.astype(float)]))
    ref = sm.GLM(Y, X, family=sm.families.Poisson()).fit(tol=1e-13)
    np.testing.assert_allclose(
        pd.Series(est.coef_, est.coef_names_)[[*NAMES, "k"]], ref.params[1:], rtol=1e-8
    )


@pytest.mark.parametrize("dtype", ["boolean", "bool"])
def test_boolean_columns_are_categorical(dtype):
    k = np.array([True, False, False] * 4)
    est = poisson().fit(BASE.assign(k=pd.array(k, dtype=dtype)), Y)
    X = sm.add_constant(np.column_stack([BASE[NAMES].to_numpy(), k.astype(float)]))
    ref = sm.GLM(Y, X, family=sm.families.Poisson()).fit(tol=1e-13)
    assert est.coef_names_[-1] == "k[True]"
    assert est.coef_[-1] == pytest.approx(ref.params[-1], rel=1e-8)


def test_nullable_target_and_dims_are_accepted():
    frame = BASE.assign(d0=pd.array(pd.factorize(BASE.d0)[0], dtype="Int64"))
    est = poisson().fit(frame, pd.Series(Y, dtype="Int64"))
    ref = poisson().fit(BASE, Y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12)


def _frames_and_arrays():
    df, dims, _, y = make_panel((5, 4), seed=3)
    df = df.assign(
        k=pd.array(np.arange(len(df)) % 3, dtype="Int64"),
        g=pd.Categorical(np.where(df.d0 < "d0_12", "a", "b")),
    )
    return df, dims, y


def test_inputs_are_never_modified():
    df, dims, y = _frames_and_arrays()
    unbalanced = df.sample(frac=0.7, random_state=1)
    y_unb = y[unbalanced.index.to_numpy()]
    w = np.linspace(0.5, 1.5, len(df))
    frames = [df, unbalanced]
    arrays = [y, y_unb, w]
    snapshots = [copy.deepcopy(f) for f in frames], [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False  # any in-place write raises
    design = PanelDesign(
        dims=dims, fixed_effects=["d1"], covariates=["x_0", "g", "k"], balanced=False
    )
    for est in (
        PanelPoissonRegressor(offset="off"),
        PanelLinearRegressor(),
        PanelLogitRegressor(trials="m"),
    ):
        yy = np.minimum(y, df["m"].to_numpy()) if isinstance(est, PanelLogitRegressor) else y
        yy.flags.writeable = False
        est.fit(design.fit_transform(df), yy, sample_weight=w)
        est.predict(design.transform(unbalanced))
        est.score(design.transform(df), yy, sample_weight=w)
    X = df[["x_0", "x_1"]].to_numpy()
    X.flags.writeable = False
    PanelPoissonRegressor().fit(X, y, sample_weight=w).predict(X)
    PanelPoissonRegressor(offset="off").fit(design.fit_transform(unbalanced), y_unb)
    for f, snap in zip(frames, snapshots[0], strict=True):
        pd.testing.assert_frame_equal(f, snap)
    for a, snap in zip(arrays, snapshots[1], strict=True):
        np.testing.assert_array_equal(a, snap)
