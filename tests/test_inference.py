"""Standard errors against statsmodels GLM fitted on the dense matrix of the long frame.

Weights are frequency weights for the likelihood, the scale and the model-based
covariance (statsmodels ``freq_weights``). In the robust sandwiches a cell's
score is ``w * g * x``, so the HC meat is ``X' diag((w g)^2) X`` and a cluster's
score is the sum of its cells' weighted scores: statsmodels computes exactly
that with ``var_weights`` (HC) and with either kind of weight (cluster), while
its HC meat under ``freq_weights`` is ``X' diag(w g^2) X``. The HC meat used
here is the one-cell-per-cluster case of the cluster meat.
"""

from __future__ import annotations

import tracemalloc
import warnings
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import make_panel
from statsmodels.tools.sm_exceptions import SpecificationWarning

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)

SIZES = {1: (40,), 2: (8, 6), 3: (6, 5, 4)}
RTOL = 1e-6

FAMILIES = [
    ("poisson", {}),
    ("poisson", {"offset": True, "weights": True}),
    ("binomial", {}),
    ("binomial", {"trials": True, "weights": True}),
    ("gaussian", {}),
    ("gaussian", {"weights": True}),
]

# (cov_type, cluster, small_sample, smallest D it applies to)
COVS = [
    ("nonrobust", None, True, 1),
    ("robust", None, False, 1),
    ("robust", None, True, 1),
    ("cluster", "d0", True, 1),
    ("cluster", "d0", False, 1),
    ("cluster", "d1", True, 2),
    ("cluster", ["d0", "d1"], True, 2),
    ("cluster", ["d0", "d1"], False, 2),
    ("cluster", ("d1", "d2"), True, 3),
    ("cluster", [("d0", "d1"), "d2"], True, 3),
]
CASES = [(D, *cov[:3]) for D in (1, 2, 3) for cov in COVS if D >= cov[3]]


def dense(df, names, intercept=True):
    X = df[names].to_numpy()
    return sm.add_constant(X, has_constant="add") if intercept else X


def sm_glm(family, df, names, y, *, offset=False, trials=False, weights=None, intercept=True):
    kw = {}
    if offset:
        kw["offset"] = df["off"].to_numpy()
    if weights is not None:
        kw[weights] = df["w"].to_numpy()
    if family == "poisson":
        fam, endog = sm.families.Poisson(), y
    elif family == "binomial":
        m = df["m"].to_numpy() if trials else np.ones(len(y))
        fam, endog = sm.families.Binomial(), np.column_stack([y, m - y])
    else:
        fam, endog = sm.families.Gaussian(), y
    return sm.GLM(endog, dense(df, names, intercept), family=fam, **kw)


def groups(df, cluster):
    """Integer cluster codes built straight from the long frame's columns."""
    cols = [cluster] if isinstance(cluster, str) else list(cluster)
    return df.groupby(cols, sort=True).ngroup().to_numpy()


def sm_cov(family, df, names, y, cov_type, cluster, small_sample, extra):
    """statsmodels' covariance for our (cov_type, cluster, small_sample)."""
    weighted = extra.get("weights")
    kind = "var_weights" if cov_type == "robust" else "freq_weights"
    model = sm_glm(
        family,
        df,
        names,
        y,
        offset=extra.get("offset", False),
        trials=extra.get("trials", False),
        weights=kind if weighted else None,
    )
    fit = {"tol": 1e-13, "maxiter": 200}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecificationWarning)
        if cov_type == "nonrobust":
            return model.fit(**fit).cov_params()
        if cov_type == "robust":
            # statsmodels' GLM returns HC0 for "HC1"; HC1 is HC0 * n / (n - k).
            ref = model.fit(cov_type="HC0", **fit)
            n, k = len(y), ref.params.size
            return ref.cov_params() * (n / (n - k) if small_sample else 1.0)
        clusters = cluster if isinstance(cluster, list) else [cluster]
        g = np.column_stack([groups(df, c) for c in clusters]).squeeze()
        cov_kwds = {"groups": g, "use_correction": small_sample}
        return model.fit(cov_type="cluster", cov_kwds=cov_kwds, **fit).cov_params()


def our_fit(family, df, dims, y, *, extra=None, **params):
    extra = extra or {}
    if family == "poisson":
        est = PanelPoissonRegressor(offset="off" if extra.get("offset") else None, **params)
    elif family == "binomial":
        est = PanelLogitRegressor(trials="m" if extra.get("trials") else None, **params)
    else:
        est = PanelLinearRegressor(**params)
    unused = [c for c in ("off", "m", "w") if c not in est._aux_columns().values()]
    data = PanelDesign(dims=dims).fit_transform(df.drop(columns=unused))
    w = df["w"].to_numpy() if extra.get("weights") else None
    return est.fit(data, y, sample_weight=w)


def assert_cov_close(ours, ref, rtol=RTOL):
    """Variances to ``rtol`` relative; every covariance to ``rtol`` of its scale.

    An off-diagonal entry can be tiny next to the variances, so it is compared
    relative to ``sqrt(|var_i var_j|)`` (a correlation to ``rtol``), not to
    itself. (A multiway cluster covariance may have negative "variances".)
    """
    ours, ref = np.asarray(ours), np.asarray(ref)
    np.testing.assert_allclose(np.diag(ours), np.diag(ref), rtol=rtol)
    size = np.sqrt(np.abs(np.outer(np.diag(ref), np.diag(ref))))
    np.testing.assert_array_less(np.abs(ours - ref), rtol * size + 1e-300)


def as_ours(est, names):
    """Our covariance in statsmodels' column order (const first, then names)."""
    labels = ["Intercept", *names] if "Intercept" in est.cov_params_.index else list(names)
    return est.cov_params_.loc[labels, labels].to_numpy()


@pytest.mark.parametrize("family, extra", FAMILIES)
@pytest.mark.parametrize(
    "D, cov_type, cluster, small_sample", CASES, ids=[f"D{c[0]}-{c[1:]}" for c in CASES]
)
def test_covariance_matches_statsmodels(D, cov_type, cluster, small_sample, family, extra):
    df, dims, names, y = make_panel(SIZES[D], seed=D, family=family)
    if family == "binomial" and not extra.get("trials"):
        y = np.minimum(y, 1.0)
    est = our_fit(
        family,
        df,
        dims,
        y,
        extra=extra,
        cov_type=cov_type,
        cluster=cluster,
        small_sample=small_sample,
    )
    ref = sm_cov(family, df, names, y, cov_type, cluster, small_sample, extra)
    assert_cov_close(as_ours(est, names), ref)
    var = np.diag(est.cov_params_)
    if np.all(var >= 0):  # else bse_ warns and has NaNs, tested elsewhere
        np.testing.assert_allclose(est.bse_.to_numpy(), np.sqrt(var))


def test_three_way_cluster_is_inclusion_exclusion_of_statsmodels_one_way():
    """Cameron-Gelbach-Miller with three cluster dims: V = sum over the 7 intersections."""
    df, dims, names, y = make_panel(SIZES[3], seed=21, family="poisson")
    est = our_fit("poisson", df, dims, y, cov_type="cluster", cluster=["d0", "d1", "d2"])
    model = sm_glm("poisson", df, names, y)
    ref = np.zeros((len(names) + 1,) * 2)
    for r in (1, 2, 3):
        for subset in combinations(dims, r):
            one_way = model.fit(
                tol=1e-13, cov_type="cluster", cov_kwds={"groups": groups(df, subset)}
            )
            ref += (-1) ** (r + 1) * one_way.cov_params()
    assert_cov_close(as_ours(est, names), ref)


def test_ols_hc1_and_cluster():
    """The linear model's robust covariances are OLS's (statsmodels OLS applies HC1 itself)."""
    df, dims, names, y = make_panel((10, 6), seed=4, family="gaussian")
    X = dense(df, names)
    for params, kw in [
        ({"cov_type": "robust"}, {"cov_type": "HC1"}),
        ({"cov_type": "robust", "small_sample": False}, {"cov_type": "HC0"}),
        (
            {"cov_type": "cluster", "cluster": "d1"},
            {"cov_type": "cluster", "cov_kwds": {"groups": groups(df, "d1")}},
        ),
    ]:
        est = our_fit("gaussian", df, dims, y, **params)
        ref = sm.OLS(y, X).fit(**kw)
        assert_cov_close(as_ours(est, names), ref.cov_params())


def test_cluster_by_dimension_covariates_and_fixed_effects_do_not_vary_along():
    """Firm fixed effects and a firm-level covariate, clustered by year (and two-way)."""
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(5)
    firms, years = [f"f{i:02d}" for i in range(15)], list(range(2001, 2011))
    df = pd.MultiIndex.from_product([firms, years], names=["firm", "year"]).to_frame(index=False)
    df["size"] = df["firm"].map(dict(zip(firms, rng.normal(size=15), strict=True)))
    df["gdp"] = df["year"].map(dict(zip(years, rng.normal(size=10), strict=True)))
    df["rate"] = rng.normal(size=len(df))
    df["y"] = rng.poisson(np.exp(0.3 + 0.2 * df["gdp"] + 0.3 * df["rate"])).astype(float)
    df = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    ref_model = smf.glm("y ~ gdp + rate + C(firm)", df, family=sm.families.Poisson())
    for cluster in ["year", ["firm", "year"]]:
        est = PanelPoissonRegressor(
            dims=["firm", "year"], fixed_effects=["firm"], cov_type="cluster", cluster=cluster
        ).fit(df[["firm", "year", "gdp", "rate"]], df["y"])
        g = np.column_stack(
            [groups(df, c) for c in (cluster if isinstance(cluster, list) else [cluster])]
        ).squeeze()
        ref = ref_model.fit(tol=1e-13, cov_type="cluster", cov_kwds={"groups": g})
        ref_cov = ref.cov_params().rename(
            lambda n: n.replace("C(firm)[T.", "firm[").replace(")", "")
        )
        ref_cov.columns = ref_cov.index
        assert_cov_close(est.cov_params_.loc[ref_cov.index, ref_cov.index], ref_cov)
    # Two-way clustering with firm effects gives some negative "variances" here
    # (inclusion-exclusion need not be positive semi-definite), as in statsmodels.
    negative = np.diag(ref_cov) < 0
    assert negative.any()
    with pytest.warns(RuntimeWarning, match="negative variances"):
        bse = est.bse_[ref_cov.index]
    assert np.array_equal(bse.isna().to_numpy(), negative)
    # And a covariate that does not vary along the cluster dimension at all.
    est = PanelPoissonRegressor(dims=["firm", "year"], cov_type="cluster", cluster="firm")
    est.fit(df[["firm", "year", "size", "gdp", "rate"]], df["y"])
    ref = smf.glm("y ~ size + gdp + rate", df, family=sm.families.Poisson()).fit(
        tol=1e-13, cov_type="cluster", cov_kwds={"groups": groups(df, "firm")}
    )
    np.testing.assert_allclose(est.bse_[ref.bse.index], ref.bse, rtol=RTOL)


def test_exponential_model_standard_errors():
    """The exponential model's are those of a Poisson GLM of events with offset log T."""
    df, dims, names, _ = make_panel(SIZES[3], seed=6)
    rng = np.random.default_rng(6)
    T = rng.exponential(size=len(df)) + 0.1
    df = df.assign(event=(rng.uniform(size=len(df)) < 0.7).astype(float))
    data = PanelDesign(dims=dims).fit_transform(df[[*dims, *names, "event"]])
    model = sm.GLM(
        df["event"].to_numpy(), dense(df, names), family=sm.families.Poisson(), offset=np.log(T)
    )
    for params, kw in [
        ({}, {}),
        ({"cov_type": "cluster", "cluster": ["d0", "d2"]}, {"cov_type": "cluster"}),
    ]:
        if kw:
            kw["cov_kwds"] = {"groups": np.column_stack([groups(df, "d0"), groups(df, "d2")])}
        est = PanelExponentialRegressor(event="event", **params).fit(data, T)
        ref = model.fit(tol=1e-13, **kw)
        assert_cov_close(as_ours(est, names), ref.cov_params())


def test_summary_table_matches_statsmodels():
    df, dims, names, y = make_panel(SIZES[3], seed=8, family="poisson")
    est = our_fit("poisson", df, dims, y, extra={"offset": True}, cov_type="cluster", cluster="d1")
    ref = sm_glm("poisson", df, names, y, offset=True).fit(
        tol=1e-13, cov_type="cluster", cov_kwds={"groups": groups(df, "d1")}
    )
    table = est.summary(ci_level=0.9)
    assert list(table.columns) == ["coef", "std_err", "z", "p_value", "ci_low", "ci_high"]
    assert list(table.index) == ["Intercept", *est.coef_names_]
    theirs = pd.DataFrame(
        {
            "coef": ref.params,
            "std_err": ref.bse,
            "z": ref.tvalues,
            "p_value": ref.pvalues,
            "ci_low": ref.conf_int(alpha=0.1)[:, 0],
            "ci_high": ref.conf_int(alpha=0.1)[:, 1],
        },
        index=["Intercept", *names],
    )
    np.testing.assert_allclose(table.loc[theirs.index], theirs, rtol=RTOL)
    assert "cluster" in table.attrs["cov_type"] and "d1" in table.attrs["cov_type"]
    assert "note" not in table.attrs


def test_no_intercept_labels_and_covariance():
    df, dims, names, y = make_panel(SIZES[2], seed=9, family="poisson")
    est = our_fit("poisson", df, dims, y, fit_intercept=False, cov_type="robust")
    assert list(est.summary().index) == est.coef_names_
    ref = sm_glm("poisson", df, names, y, intercept=False).fit(tol=1e-13, cov_type="HC0")
    n, k = len(y), len(names)
    assert_cov_close(as_ours(est, names), ref.cov_params() * n / (n - k))
    # The null model keeps its intercept, as statsmodels' null_deviance.
    assert est.null_deviance_ == pytest.approx(ref.null_deviance, rel=1e-9)


@pytest.mark.parametrize(
    "family, extra",
    [
        ("poisson", {"offset": True, "weights": True}),
        ("binomial", {"trials": True, "weights": True}),
        ("gaussian", {"weights": True}),
    ],
)
def test_fit_statistics_match_statsmodels(family, extra):
    df, dims, names, y = make_panel(SIZES[3], seed=10, family=family)
    est = our_fit(family, df, dims, y, extra=extra)
    ref = sm_glm(
        family,
        df,
        names,
        y,
        offset=extra.get("offset", False),
        trials=extra.get("trials", False),
        weights="freq_weights",
    ).fit(tol=1e-13)
    assert est.null_deviance_ == pytest.approx(ref.null_deviance, rel=1e-9)
    assert est.aic_ == pytest.approx(ref.aic, rel=1e-10)
    assert est.bic_ == pytest.approx(ref.bic_llf, rel=1e-10)
    if family == "gaussian":
        # A density's likelihood depends on the units of y: no pseudo R^2.
        assert not hasattr(est, "pseudo_r2_")
    else:
        assert est.pseudo_r2_ == pytest.approx(ref.pseudo_rsquared(kind="mcf"), rel=1e-9)


def test_penalized_fit_warns_and_says_so():
    df, dims, names, y = make_panel(SIZES[2], seed=11, family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitting itself does not warn
        est = our_fit("poisson", df, dims, y, alpha=0.05)
    with pytest.warns(UserWarning, match="penalized"):
        table = est.summary()
    assert "not valid" in table.attrs["note"]
    with pytest.warns(UserWarning, match="penalized"):
        bse = est.bse_
    # What is reported: the inverse information of the unpenalized likelihood
    # at the penalized estimate, computed here from the dense matrix.
    X = dense(df, names)
    mu = np.exp(X @ np.r_[est.intercept_, pd.Series(est.coef_, est.coef_names_)[names]])
    ref = np.sqrt(np.diag(np.linalg.inv(X.T @ (mu[:, None] * X))))
    np.testing.assert_allclose(bse[["Intercept", *names]], ref, rtol=1e-8)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"cov_type": "cluster"}, "needs cluster"),
        ({"cov_type": "robust", "cluster": "d0"}, "only used with cov_type='cluster'"),
        ({"cov_type": "cluster", "cluster": "customer"}, r"\['customer'\].*not panel dim"),
        ({"cov_type": "cluster", "cluster": ["d0", ("d0",)]}, "appears twice"),
        ({"cov_type": "cluster", "cluster": [("d0", 3)]}, "dimension name or a non-empty"),
        ({"cov_type": "sandwich"}, "cov_type"),
    ],
)
def test_bad_cov_options(params, match):
    df, dims, _, y = make_panel(SIZES[2], seed=12)
    with pytest.raises(ValueError, match=match):
        our_fit("poisson", df, dims, y, **params)


def test_single_cluster_is_an_error():
    df, dims, _, y = make_panel((12, 2), seed=13)
    cols = [*dims, "x_0", "x_01"]
    one = (df["d1"] == df["d1"].iloc[0]).to_numpy()
    data = PanelDesign(dims=dims).fit_transform(df.loc[one, cols])
    y = y[one]
    est = PanelPoissonRegressor(cov_type="cluster", cluster="d1")
    with pytest.raises(ValueError, match="'d1' gives a single cluster"):
        est.fit(data, y)


def test_chunked_cluster_scores_equal_the_dense_reference(monkeypatch):
    """Scores built in slices along a cluster axis (with indicator blocks) sum to S'S."""
    from panelglm._inference import covariance as _inference

    df, dims, _, y = make_panel((7, 5, 4), seed=14)
    design_data = PanelDesign(dims=dims, fixed_effects=["d0", ("d1", "d2")])
    # Only covariates the fixed effects do not absorb.
    data = design_data.fit_transform(df[[*dims, "x_01", "x_02", "x_012"]])
    est = PanelPoissonRegressor().fit(data, y)
    from panelglm._model.terms import build_design

    design, _ = build_design(est._spec, data)
    rng = np.random.default_rng(0)
    u = rng.normal(size=design.shape)
    Xd = design.to_dense()
    for keep in [(0,), (1,), (0, 2), (1, 2)]:
        codes = np.ravel_multi_index(
            np.indices(design.shape)[list(keep)].reshape(len(keep), -1),
            [design.shape[a] for a in keep],
        )
        S = np.zeros((codes.max() + 1, Xd.shape[1]))
        np.add.at(S, codes, u.reshape(-1)[:, None] * Xd)
        ref = S.T @ S
        monkeypatch.setattr(_inference, "SCORE_CHUNK_BYTES", 8 * design.n_coef * 3)
        chunked = _inference.cluster_meat(design, u, keep)
        monkeypatch.undo()
        np.testing.assert_allclose(chunked, ref, rtol=1e-10)
        np.testing.assert_allclose(_inference.cluster_meat(design, u, keep), ref, rtol=1e-10)
    all_axes = _inference.cluster_meat(design, u, (0, 1, 2))
    np.testing.assert_allclose(all_axes, Xd.T @ (u.reshape(-1, 1) ** 2 * Xd), rtol=1e-10)


def test_cluster_covariance_memory_is_far_below_the_dense_matrix():
    """A panel whose dense design would take 2 GB: fit + two-way cluster covariance.

    400 x 25 x 25 = 250,000 cells and 1,027 coefficients (fixed effects by d0
    and by d1 x d2, three covariates, the intercept): 2.05 GB as a dense
    float64 matrix. The d0 x d1 intersection has 10,000 clusters, so its
    scores are built in slices. tracemalloc sees numpy's allocations.
    """
    sizes = (400, 25, 25)
    rng = np.random.default_rng(0)
    idx = np.indices(sizes).reshape(3, -1)
    df = pd.DataFrame({"d0": idx[0], "d1": idx[1], "d2": idx[2]})
    df["x01"] = rng.normal(size=sizes[:2])[idx[0], idx[1]]
    df["x02"] = rng.normal(size=(sizes[0], sizes[2]))[idx[0], idx[2]]
    df["x012"] = rng.normal(size=len(df))
    eta = 0.3 * df["x01"] - 0.2 * df["x02"] + rng.normal(scale=0.3, size=sizes[0])[idx[0]]
    y = rng.poisson(np.exp(eta)).astype(float)
    data = PanelDesign(dims=["d0", "d1", "d2"], fixed_effects=["d0", ("d1", "d2")])
    data = data.fit_transform(df)
    est = PanelPoissonRegressor(cov_type="cluster", cluster=["d0", "d1"])
    tracemalloc.start()
    try:
        est.fit(data, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dense_bytes = len(df) * (len(est.coef_) + 1) * 8
    assert dense_bytes > 2e9
    assert peak < 0.1 * dense_bytes, f"peak {peak / 1e6:.0f} MB"
    var = np.diag(est.cov_params_.loc[["x01", "x02", "x012"], ["x01", "x02", "x012"]])
    assert np.all(np.isfinite(var)) and np.all(var > 0)


@pytest.mark.parametrize(
    "params", [{"cov_type": "robust"}, {"cov_type": "cluster", "cluster": ["d0", "d1"]}]
)
def test_zero_weight_cells_are_missing_observations(params):
    """Zero weight = the cell is not there: n and the cluster counts leave it out."""
    df, dims, names, y = make_panel(SIZES[3], seed=15, family="poisson")
    w = df["w"].to_numpy().copy()
    w[df["d0"] == "d0_10"] = 0.0  # a whole d0 cluster
    w[np.random.default_rng(1).uniform(size=len(w)) < 0.1] = 0.0  # and scattered cells
    data = PanelDesign(dims=dims).fit_transform(df[[*dims, *names]])
    est = PanelPoissonRegressor(**params).fit(data, y, sample_weight=w)
    keep = w > 0
    sub = df[keep].reset_index(drop=True)
    ref = sm_cov(
        "poisson",
        sub,
        names,
        y[keep],
        params["cov_type"],
        params.get("cluster"),
        True,
        {"weights": True},
    )
    assert_cov_close(as_ours(est, names), ref)


def test_robust_covariance_undefined_with_more_coefficients_than_cells():
    """A penalized fit with k > n still fits; its HC1 factor n / (n - k) is undefined."""
    rng = np.random.default_rng(16)
    X, y = rng.normal(size=(8, 12)), rng.poisson(1.0, size=8)
    est = PanelPoissonRegressor(alpha=1.0, cov_type="robust")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    messages = " ".join(str(w.message) for w in caught)
    # The unpenalized information is singular too (12 coefficients, 8 cells).
    assert "undefined (n=8, k=13)" in messages and "singular" in messages
    assert np.isfinite(est.coef_).all()
    with pytest.warns(UserWarning, match="penalized"):
        assert est.cov_params_.isna().all().all()
