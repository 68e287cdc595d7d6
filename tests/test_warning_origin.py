"""Every warning panelglm emits points at the caller's line, not at panelglm's own code.

Warnings are raised at various depths (identification, separation, Newton,
inference, layout); each must be attributed to the first frame outside the
package, so that ``python -W error`` tracebacks and the default "once per
location" filter refer to the user's code.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

import panelglm
from panelglm import (
    PanelDesign,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from panelglm.exceptions import CollinearityWarning, SeparationWarning, SparsePanelWarning

PACKAGE = os.path.dirname(os.path.realpath(panelglm.__file__))


def caught_from(fn, category, match):
    """The warnings of ``category`` matching ``match`` that ``fn()`` emits (at least one)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    hits = [
        w for w in caught if issubclass(w.category, category) and re.search(match, str(w.message))
    ]
    assert hits, [str(w.message) for w in caught]
    return hits


def assert_from_here(fn, category, match):
    """``fn``, a lambda of this file, is where the warning points: its file and its line."""
    line = inspect.getsourcelines(fn)[1]
    for w in caught_from(fn, category, match):
        assert os.path.realpath(w.filename) == os.path.realpath(__file__), w.filename
        assert w.lineno == line


def panel(seed=0, n_c=6, n_w=4):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"c": np.repeat(np.arange(n_c), n_w), "w": np.tile(np.arange(n_w), n_c)})
    df["x"] = rng.normal(size=len(df))
    y = rng.poisson(np.exp(0.2 + 0.3 * df["x"])).astype(float)
    return df, y


def test_collinearity_warning():
    df, y = panel()
    df["x2"] = 2.0 * df["x"]
    est = PanelPoissonRegressor(dims=["c", "w"])
    assert_from_here(lambda: est.fit(df, y), CollinearityWarning, "Collinearity")
    data = PanelDesign(["c", "w"]).fit_transform(df)
    assert_from_here(lambda: PanelPoissonRegressor().fit(data, y), CollinearityWarning, "")


def test_separation_warning():
    df, y = panel(1)
    y[df["c"].to_numpy() == 2] = 0.0  # a fixed effect level without any event
    est = PanelPoissonRegressor(dims=["c", "w"], fixed_effects=["c"])
    assert_from_here(lambda: est.fit(df, y), SeparationWarning, "Separation")
    yb = np.tile([0.0, 1.0, 1.0, 0.0], 6)
    yb[df["c"].to_numpy() == 1] = 1.0  # a level with only successes
    est = PanelLogitRegressor(dims=["c", "w"], fixed_effects=["c"])
    assert_from_here(lambda: est.fit(df, yb), SeparationWarning, "Separation")


def test_convergence_warning():
    df, y = panel(2)
    est = PanelPoissonRegressor(dims=["c", "w"], max_iter=1, tol=1e-14)
    assert_from_here(lambda: est.fit(df, y), ConvergenceWarning, "did not converge")


def test_runtime_warnings():
    # No residual degrees of freedom: as many coefficients as rows.
    df, y = panel(3, n_c=2, n_w=2)
    est = PanelLinearRegressor(dims=["c", "w"], fixed_effects=["c", "w"])
    assert_from_here(lambda: est.fit(df, y), RuntimeWarning, "No residual degrees")
    # An overflowing prediction.
    df, y = panel(4)
    df["off"] = 0.0
    est = PanelPoissonRegressor(dims=["c", "w"], offset="off").fit(df, y)
    huge = df.assign(off=800.0)
    assert_from_here(lambda: est.predict(huge), RuntimeWarning, "overflow to inf")
    # Robust covariance undefined, information singular (12 coefficients, 8 rows).
    rng = np.random.default_rng(16)
    X, yy = rng.normal(size=(8, 12)), rng.poisson(1.0, size=8)
    est = PanelPoissonRegressor(alpha=1.0, cov_type="robust")
    assert_from_here(lambda: est.fit(X, yy), RuntimeWarning, "undefined")
    assert_from_here(lambda: est.fit(X, yy), RuntimeWarning, "singular")


def test_sparse_panel_and_user_warnings():
    df, y = panel(5, n_c=20, n_w=20)
    sparse = df[df["c"] == df["w"]]  # 20 of 400 cells
    design = PanelDesign(["c", "w"], balanced=False)
    assert_from_here(lambda: design.fit(sparse), SparsePanelWarning, "rows")
    data = PanelDesign(["c", "w"]).fit_transform(df)
    est = PanelPoissonRegressor(fixed_effects=["w"])
    assert_from_here(lambda: est.fit(data, y), UserWarning, "PanelData keeps its own")
    est = PanelPoissonRegressor(alpha=0.1).fit(data, y)
    assert_from_here(lambda: est.summary(), UserWarning, "penalized")


def test_through_a_pipeline_the_warning_is_not_panelglm_s():
    df, y = panel()
    df["x2"] = 2.0 * df["x"]
    pipe = make_pipeline(PanelDesign(["c", "w"]), PanelPoissonRegressor())
    for w in caught_from(lambda: pipe.fit(df, y), CollinearityWarning, ""):
        assert not os.path.realpath(w.filename).startswith(PACKAGE + os.sep), w.filename
    sparse = df.iloc[::3]
    pipe = make_pipeline(PanelDesign(["c", "w"], balanced=False), PanelPoissonRegressor())
    for w in caught_from(lambda: pipe.fit(sparse, y[::3]), Warning, ""):
        assert not os.path.realpath(w.filename).startswith(PACKAGE + os.sep), w.filename


def test_no_fixed_stacklevel_left():
    # Every warning goes through the helper that finds the caller.
    src = "".join(
        open(os.path.join(PACKAGE, f)).read() for f in os.listdir(PACKAGE) if f.endswith(".py")
    )
    assert "stacklevel=" not in src.replace("stacklevel=caller_stacklevel()", "")
