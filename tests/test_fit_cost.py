"""The work around the Newton steps: screens and statistics that reuse the solver's passes.

Each shortcut gives what the pass it replaces would: the statistics at the
solution, the bound that settles the separation screen after the solve, and
the collinearity screen read off Newton's first Hessian.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import panelglm._ident.certificate as certificate
from panelglm import PanelDesign, PanelLogitRegressor, PanelPoissonRegressor
from panelglm._engine.objective import PenalizedObjective
from panelglm._engine.problem import PanelProblem
from panelglm._ident.bounds import curvature_floor, predictor_range, step_bound
from panelglm._model.families import BINOMIAL, POISSON
from panelglm._model.families_gamma_nb import GAMMA
from panelglm._model.terms import build_design, build_model_spec

DIMS = ["i", "j", "k"]


def panel_frame(seed=0, shape=(7, 6, 5), scale=0.4):
    """A long frame with a cell-level, two lower-level and a one-dimension covariate."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([range(n) for n in shape], names=DIMS).to_frame(index=False)
    i, j, k = (idx[d].to_numpy() for d in DIMS)
    x_i = rng.normal(size=shape[0])[i]
    x_jk = rng.uniform(-1, 1, size=(shape[1], shape[2]))[j, k]
    df = idx.assign(x_ijk=rng.normal(size=len(idx)), x_i=x_i, x_jk=x_jk)
    eta = 0.3 + scale * (df.x_ijk - 0.5 * df.x_i + df.x_jk)
    df["y"] = rng.poisson(np.exp(eta)).astype(float)
    df["n"] = rng.integers(1, 5, size=len(df)).astype(float)
    df["yb"] = rng.binomial(df.n.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    df["w"] = rng.uniform(0.5, 2.0, size=len(df))
    return df


X_COLS = [*DIMS, "x_ijk", "x_i", "x_jk"]


def _record(monkeypatch, owner, attr, note=lambda *args, **kw: 1):
    """Wrap ``owner.attr`` so that each call appends ``note(*args, **kw)``; the list."""
    calls = []
    original = getattr(owner, attr)

    def recorded(*args, **kw):
        calls.append(note(*args, **kw))
        return original(*args, **kw)

    monkeypatch.setattr(owner, attr, recorded)
    return calls


# ------------------------------------------------------------- statistics
def test_statistics_at_the_solution_take_no_pass_and_equal_statsmodels(monkeypatch):
    df = panel_frame()
    data = PanelDesign(dims=DIMS).fit_transform(df[X_COLS])
    calls = _record(monkeypatch, PenalizedObjective, "chunk_sums", lambda self, beta, fn: fn)
    est = PanelPoissonRegressor().fit(data, df["y"].to_numpy())
    # The fit's loss sum is the solver's last pass's, the null model's a sum
    # over the counts of y; the only pass left is the separation screen's,
    # which the bound settles here (see below).
    assert calls == []
    x = sm.add_constant(df[["x_ijk", "x_i", "x_jk"]].to_numpy())
    ref = sm.GLM(df["y"].to_numpy(), x, family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(est.deviance_, ref.deviance, rtol=1e-9)
    np.testing.assert_allclose(est.loglik_, ref.llf, rtol=1e-11)
    null = sm.GLM(df["y"].to_numpy(), x[:, :1], family=sm.families.Poisson()).fit()
    np.testing.assert_allclose(est.null_deviance_, null.deviance, rtol=1e-9)
    np.testing.assert_allclose(est.pseudo_r2_, 1 - ref.llf / null.llf, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_from_the_last_pass_equal_those_of_a_pass_of_their_own(weighted):
    df = panel_frame(seed=3)
    data = PanelDesign(dims=DIMS).fit_transform(df[X_COLS])
    w = df["w"].to_numpy() if weighted else None
    est = PanelPoissonRegressor().fit(data, df["y"].to_numpy(), sample_weight=w)
    spec = build_model_spec(data, True, set())
    design, _ = build_design(spec, data)
    problem = est._problem(data, df["y"].to_numpy(), w)
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef))
    beta = est._beta
    obj.loss(beta)  # the solver's last evaluation
    intercept0 = float(np.log(np.average(df["y"], weights=w)))
    fast = obj.fit_statistics(beta, intercept0)
    obj._last_total = None  # forgotten: the statistics take their own pass
    slow = obj.fit_statistics(beta, intercept0)
    for a, b in zip(
        (fast.deviance, fast.loglik, fast.null_deviance, fast.null_loglik),
        (slow.deviance, slow.loglik, slow.null_deviance, slow.null_loglik),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ------------------------------------------------- the bound after the solve
@pytest.mark.parametrize("family", ["poisson", "binomial"])
@pytest.mark.parametrize("weighted", [False, True])
def test_step_bound_holds_on_every_cell(family, weighted):
    df = panel_frame(seed=5)
    data = PanelDesign(dims=DIMS).fit_transform(df[X_COLS])
    spec = build_model_spec(data, True, set())
    design, _ = build_design(spec, data)
    rng = np.random.default_rng(1)
    fam = POISSON if family == "poisson" else BINOMIAL
    y = data.to_grid(df["y" if family == "poisson" else "yb"].to_numpy())
    m = 1.0 if family == "poisson" else data.to_grid(df["n"].to_numpy())
    w = data.to_grid(df["w"].to_numpy()) if weighted else None
    problem = PanelProblem(data.shape, y=y, m=m, w=w)
    beta = rng.normal(scale=0.5, size=design.n_coef)
    eta = design.linear_predictor(beta)
    ranges = {}
    for t in spec.terms:
        if t.kind == "numeric":
            lo, hi, _ = data.column_stats(t.source[0])
            ranges[t.names[0]] = (lo - t.shift, hi - t.shift)
    lo, hi = predictor_range(design, beta, None, ranges)
    assert lo <= eta.min() + 1e-12 and eta.max() <= hi + 1e-12
    curv = -np.broadcast_to(fam.grad_hess(y, eta, m)[1], data.shape) * (1.0 if w is None else w)
    floor = curvature_floor(fam, problem, lo, hi)
    assert 0 < floor <= curv.min() * (1 + 1e-12)
    total = float(np.prod(data.shape) if w is None else w.sum())
    hess = design.hessian(curv) / total
    for _ in range(5):
        grad = rng.normal(size=design.n_coef) * 1e-3
        step = -np.linalg.solve(hess, grad)
        worst = np.max(np.abs(design.linear_predictor(step)))
        bound = step_bound(grad, step, total, floor)
        assert worst <= bound * (1 + 1e-9)
        assert bound < 50 * worst  # and not uselessly loose on this panel


def test_no_curvature_floor_where_none_is_known():
    problem = PanelProblem((2, 2), y=np.zeros((2, 2)), w=None)
    assert curvature_floor(POISSON, problem, np.nan, 1.0) == 0.0
    # A link that is not canonical (gamma's log link): h depends on y.
    assert curvature_floor(GAMMA, problem, 0.0, 1.0) == 0.0
    assert step_bound(np.ones(2), -np.ones(2), 4.0, 0.0) == np.inf


def _count_screen_passes(monkeypatch):
    return _record(monkeypatch, certificate, "_pushes_to_boundary")


@pytest.mark.parametrize("est", [PanelPoissonRegressor, PanelLogitRegressor])
def test_converged_fit_settles_the_separation_screen_without_a_pass(monkeypatch, est):
    df = panel_frame(seed=2)
    calls = _count_screen_passes(monkeypatch)
    y = df["y"] if est is PanelPoissonRegressor else (df["yb"] > 0).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est(dims=DIMS).fit(df[X_COLS], y)
    assert calls == []


def test_float32_work_keeps_the_pass(monkeypatch):
    df = panel_frame(seed=2)
    calls = _count_screen_passes(monkeypatch)
    PanelPoissonRegressor(dims=DIMS, dtype="float32").fit(df[X_COLS], df["y"])
    assert calls == [1]


def test_separating_covariate_is_still_found_by_the_pass(monkeypatch):
    df = panel_frame(seed=4)
    # x_sep is positive only where y = 0: it separates those cells.
    df["x_sep"] = np.where(df["y"] == 0, np.abs(df["x_ijk"]) + 0.1, 0.0)
    df.loc[df.index[:3], "y"] = 0.0
    df.loc[df.index[:3], "x_sep"] = 1.0
    calls = _count_screen_passes(monkeypatch)
    from panelglm.exceptions import SeparationWarning

    with pytest.warns(SeparationWarning, match="x_sep"):
        est = PanelPoissonRegressor(dims=DIMS).fit(df[[*X_COLS, "x_sep"]], df["y"])
    assert calls  # the bound could not settle it: the pass ran and found the cells
    assert est.separated_rows_.sum() == (df["x_sep"] > 0).sum()


# ------------------------------------------- collinearity from the first Hessian
def collinear_frame(seed=0):
    df = panel_frame(seed=seed)
    rng = np.random.default_rng(seed + 10)
    df["x_sum"] = df["x_ijk"] - 2.0 * df["x_jk"]  # exactly collinear, cell level
    df["x_near"] = df["x_ijk"] + 1e-3 * rng.normal(size=len(df))  # kept: R^2 = 1 - 1e-6
    df["x_nearer"] = df["x_i"] + 1e-7 * rng.normal(size=len(df))  # dropped: R^2 = 1 - 1e-14
    df["x_clock"] = 1e6 + df["x_jk"] * (1 + 0.5 * df["k"])  # shifted; collinear with nothing
    df["x_i2"] = 3.0 * df["x_i"] - 1.0  # collinear with x_i (one-dimension block)
    eta = 0.2 + 0.3 * df["x_ijk"]
    df["y_pos"] = np.exp(eta) * rng.gamma(4.0, 0.25, size=len(df))
    df["y_lin"] = eta + rng.normal(size=len(df))
    df["y_bin"] = (rng.uniform(size=len(df)) < 1 / (1 + np.exp(-eta))).astype(float)
    df["log_t"] = rng.uniform(-0.5, 0.5, size=len(df))
    return df


COLLINEAR_COLS = [*X_COLS, "x_sum", "x_near", "x_nearer", "x_clock", "x_i2"]
FITS = {
    "poisson": (PanelPoissonRegressor, "y", {}),
    "logit": (PanelLogitRegressor, "y_bin", {}),
    "linear": ("PanelLinearRegressor", "y_lin", {}),
    "gamma": ("PanelGammaRegressor", "y_pos", {}),
    "negbin": ("PanelNegativeBinomialRegressor", "y", {"theta": 2.0}),
}


def _fit_collinear(monkeypatch, name, weighted, offset, gram_only):
    import panelglm
    import panelglm._ident.reuse as reuse

    cls, target, params = FITS[name]
    cls = getattr(panelglm, cls) if isinstance(cls, str) else cls
    df = collinear_frame()
    cols = list(COLLINEAR_COLS)
    if offset:
        params = {**params, "offset": "log_t"}
        cols.append("log_t")
    grams = _screen_grams(monkeypatch)
    if gram_only:
        monkeypatch.setattr(reuse, "gram_from_hessian", lambda *a: None)
    w = df["w"].to_numpy() if weighted else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = cls(dims=DIMS, fixed_effects=["j"], **params).fit(
            df[cols], df[target], sample_weight=w
        )
    monkeypatch.undo()
    return est, sorted(str(c.message) for c in caught), grams


@pytest.mark.parametrize("name", list(FITS))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("offset", [False, True])
def test_first_hessian_drops_the_columns_the_gram_pass_drops(monkeypatch, name, weighted, offset):
    if offset and name in ("linear", "logit"):
        pytest.skip("no offset parameter")
    est, msgs, grams = _fit_collinear(monkeypatch, name, weighted, offset, gram_only=False)
    ref, ref_msgs, _ = _fit_collinear(monkeypatch, name, weighted, offset, gram_only=True)
    assert set(est.collinear_names_) == {"x_sum", "x_nearer", "x_i2"}
    assert est.collinear_names_ == ref.collinear_names_
    assert msgs == ref_msgs
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
    # The Hessian stands for the Gram matrix exactly where every cell has the
    # same curvature at the start: a canonical link, no offset, one number of trials.
    constant = name in ("poisson", "logit", "linear") and not offset
    assert grams.count("screen") == (0 if constant else 1)
    # Without weights that Hessian is c X'X / N, X'X the panel's (a new panel here).
    assert grams.count("panel") == (1 if constant and not weighted else 0)


def test_first_hessian_is_newtons_first_evaluation(monkeypatch):
    df = collinear_frame(seed=1)
    data = PanelDesign(dims=DIMS).fit_transform(df[[*X_COLS, "x_near"]])
    passes = _record(monkeypatch, PenalizedObjective, "_loss_grad_hess")
    w = df["w"].to_numpy()
    est = PanelPoissonRegressor().fit(data, df["y"].to_numpy(), sample_weight=w)
    # With weights: one evaluation at the start (the screen's and Newton's),
    # then one per iteration.
    assert len(passes) == est.n_iter_ + 1
    passes.clear()
    est = PanelPoissonRegressor().fit(data, df["y"].to_numpy())
    # Without: the start's from the panel's X'X, one pass per iteration only.
    assert len(passes) == est.n_iter_


def test_columns_dropped_by_the_first_hessian_restrict_its_evaluation(monkeypatch):
    df = collinear_frame(seed=2)
    data = PanelDesign(dims=DIMS).fit_transform(df[[*X_COLS, "x_sum"]])
    passes = _record(
        monkeypatch, PenalizedObjective, "_loss_grad_hess", lambda self, beta: self.design.n_coef
    )
    with pytest.warns(match="x_sum"):
        est = PanelPoissonRegressor().fit(data, df["y"].to_numpy())
    full = len(est.coef_) + 1
    # The start's sums on the full design serve the restricted one.
    assert passes == [full - 1] * est.n_iter_
    assert full == 5
    x = sm.add_constant(df[["x_ijk", "x_i", "x_jk"]].to_numpy())
    ref = sm.GLM(df["y"].to_numpy(), x, family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(est.coef_[:3], ref.params[1:], rtol=1e-8)


# ------------------------------------------------ checks of y without a y-sized temporary
def _peak_bytes(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checks_of_y_make_no_array_of_its_size():
    from panelglm._data.validation import check_target
    from panelglm._ident.separation import check_not_all_boundary

    n = 1 << 20
    y = np.random.default_rng(0).poisson(1.0, size=n).astype(float)

    class Rows:
        n_rows = n
        labels = None

    problem = PanelProblem((n,), y=y)
    # A boolean array of y's size would be n bytes.
    assert _peak_bytes(lambda: check_target(y, Rows())) < n // 8
    assert _peak_bytes(lambda: check_not_all_boundary(POISSON, problem)) < n // 8
    assert _peak_bytes(lambda: check_not_all_boundary(BINOMIAL, problem)) < n // 8
    assert _peak_bytes(lambda: POISSON.check_y(y, 1.0)) < n // 8
    yb = np.minimum(y, 1.0)
    assert _peak_bytes(lambda: BINOMIAL.check_y(yb, 1.0)) < n // 8


def test_checks_of_y_still_say_what_is_wrong():
    from panelglm._data.validation import check_target
    from panelglm._ident.separation import check_not_all_boundary

    class Rows:
        n_rows = 2
        labels = None

    # Finite values whose sum overflows are no error.
    np.testing.assert_array_equal(check_target([1e308, 1e308], Rows()), [1e308, 1e308])
    assert POISSON.check_y(np.array([0.0, -1.0]), 1.0) is not None
    assert BINOMIAL.check_y(np.array([0.0, 2.0]), 1.0) is not None
    assert BINOMIAL.check_y(np.array([0.0, 1.0]), 1.0) is None
    with pytest.raises(ValueError, match="equal to the number of trials on every row"):
        check_not_all_boundary(BINOMIAL, PanelProblem((2,), y=np.array([1.0, 1.0])))
    with pytest.raises(ValueError, match="is 0 on every row"):
        check_not_all_boundary(POISSON, PanelProblem((2,), y=np.zeros(2)))
    check_not_all_boundary(POISSON, PanelProblem((2,), y=np.array([0.0, 1.0])))
    # Each side's far extreme is read first; the near one still decides when y is all there.
    with pytest.raises(ValueError, match="is 0 on every row"):
        check_not_all_boundary(BINOMIAL, PanelProblem((3,), y=np.zeros(3), m=2.0))
    with pytest.raises(ValueError, match="equal to the number of trials on every row"):
        check_not_all_boundary(BINOMIAL, PanelProblem((3,), y=np.full(3, 2.0), m=2.0))
    check_not_all_boundary(BINOMIAL, PanelProblem((3,), y=np.array([0.0, 2.0, 2.0]), m=2.0))
    check_not_all_boundary(BINOMIAL, PanelProblem((3,), y=np.array([1.0, 1.0, 1.0]), m=2.0))


def test_null_intercept_once_per_fit(monkeypatch):
    import panelglm._estimators.base as base

    calls = _record(monkeypatch, base, "null_intercept")
    df = panel_frame(seed=6)
    est = PanelPoissonRegressor(dims=DIMS).fit(df[X_COLS], df["y"])
    assert calls == [1]  # Newton's start and the null model's statistics share it
    assert est._null_known is None  # and the fit's arrays are let go


# --------------------------------------------------- small grids: parts on one thread
def test_small_grid_runs_its_parts_on_the_calling_thread(monkeypatch):
    import panelglm._engine.compiled as compiled
    import panelglm._util.threads as threads

    if not compiled.enabled():
        pytest.skip("the compiled sweep is not in use")
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    seen = []
    run = compiled.run_parts

    def spy(jobs, max_threads):
        seen.append((len(jobs), max_threads))
        return run(jobs, max_threads)

    monkeypatch.setattr(compiled, "run_parts", spy)
    df = panel_frame(seed=7)
    default = PanelPoissonRegressor(dims=DIMS).fit(df[X_COLS], df["y"])
    assert seen and set(seen) == {(2, 1)}  # two parts, as many as cores, on one thread
    seen.clear()
    asked = PanelPoissonRegressor(dims=DIMS, n_threads=2).fit(df[X_COLS], df["y"])
    assert set(seen) == {(2, 2)}  # threads asked for by number are used
    # The same parts give the same numbers, bit for bit.
    np.testing.assert_array_equal(default.coef_, asked.coef_)
    assert default.loglik_ == asked.loglik_


@pytest.mark.parametrize("name", ["poisson", "logit", "linear"])
def test_start_from_the_panels_gram_equals_a_pass(monkeypatch, name):
    import panelglm
    import panelglm._ident.reuse as reuse

    cls, target, _ = FITS[name]
    cls = getattr(panelglm, cls) if isinstance(cls, str) else cls
    df = collinear_frame(seed=3)
    data = PanelDesign(dims=DIMS).fit_transform(df[[*X_COLS, "x_clock"]])
    seen = []
    original = reuse.PassReuse._value_from_gram

    def spy(self, problem, objective, coef0, eta0):
        value = original(self, problem, objective, coef0, eta0)
        seen.append((value, objective._loss_grad_hess(coef0)))
        return value

    monkeypatch.setattr(reuse.PassReuse, "_value_from_gram", spy)
    cls().fit(data, df[target].to_numpy())
    cls().fit(data, df[target].to_numpy())  # X'X kept by the panel
    assert len(seen) == 2
    for value, ref in seen:
        np.testing.assert_allclose(value[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(value[1], ref[1], rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(value[2], ref[2], rtol=1e-10, atol=1e-14)
    assert len(reuse._PANEL_GRAMS[data]) == 1


def test_panel_gram_once_per_panel_and_model(monkeypatch):
    import panelglm._ident.reuse as reuse

    made = _record(monkeypatch, reuse, "weighted_gram")
    df = panel_frame(seed=8)
    data = PanelDesign(dims=DIMS).fit_transform(df[X_COLS])
    fits = [PanelPoissonRegressor().fit(data, df["y"].to_numpy()) for _ in range(3)]
    assert made == [1]
    np.testing.assert_array_equal(fits[0].coef_, fits[2].coef_)
    PanelPoissonRegressor(fit_intercept=False).fit(data, df["y"].to_numpy())
    assert made == [1, 1]  # another model, another X'X


# ------------------------------------------- the counts of y in the pass for X'y
@pytest.mark.parametrize("weighted", [False, True])
def test_counts_of_y_are_taken_in_the_pass_for_xy(monkeypatch, weighted):
    import panelglm._engine.objective as objective_module
    from panelglm._engine.tally import tally

    calls = _record(monkeypatch, objective_module, "tally")
    df = panel_frame(seed=9)
    data = PanelDesign(dims=DIMS).fit_transform(df[X_COLS])
    y, w = df["y"].to_numpy(), df["w"].to_numpy() if weighted else None
    seen = []
    real = PenalizedObjective._y_counts

    def spy(self):
        out = real(self)
        seen.append((self, out))
        return out

    monkeypatch.setattr(PenalizedObjective, "_y_counts", spy)
    est = PanelPoissonRegressor().fit(data, y, sample_weight=w)
    assert calls == []  # no pass of its own over y
    obj, counts = seen[-1]
    p = obj.problem
    np.testing.assert_allclose(counts, tally(p.y, p.m, p.w), rtol=1e-14)
    # float32 work keeps its own pass (its y is the float64 one).
    PanelPoissonRegressor(dtype="float32").fit(data, y, sample_weight=w)
    assert calls == [1]
    assert est.converged_


def _screen_grams(monkeypatch):
    import panelglm._ident.reuse as reuse

    # The screen's Gram pass, or the panel's X'X (center=False) for the start.
    return _record(
        monkeypatch, reuse, "weighted_gram", lambda *a, **kw: "panel" if kw else "screen"
    )


@pytest.mark.parametrize("case", ["constant", "dwarfed"])
def test_columns_the_hessian_cannot_centre_go_to_the_gram_pass(monkeypatch, case):
    import panelglm._ident.reuse as reuse

    df = panel_frame(seed=11)
    rng = np.random.default_rng(11)
    w = None
    if case == "constant":  # collinear with the intercept: spread 0
        df["x_odd"] = 5.0
    else:  # mean 10 times its spread unweighted (not shifted), more weighted
        df["x_odd"] = 9.8 + rng.uniform(-0.5, 0.5, size=len(df))
        w = np.where(df["x_odd"] > 9.8, 50.0, 0.1)
    cols = [*X_COLS, "x_odd"]
    fits = {}
    for only_gram in (False, True):
        grams = _screen_grams(monkeypatch)
        if only_gram:
            monkeypatch.setattr(reuse, "gram_from_hessian", lambda *a: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = PanelPoissonRegressor(dims=DIMS).fit(df[cols], df["y"], sample_weight=w)
        fits[only_gram] = (est, sorted(str(c.message) for c in caught), grams)
        monkeypatch.undo()
    (est, msgs, grams), (ref, ref_msgs, _) = fits[False], fits[True]
    assert grams.count("screen") == 1  # the Hessian declined: the Gram pass ran
    assert est.collinear_names_ == ref.collinear_names_
    assert est.collinear_names_ == (["x_odd"] if case == "constant" else [])
    assert msgs == ref_msgs
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8, equal_nan=True)
