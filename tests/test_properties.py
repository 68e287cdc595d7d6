"""Property tests: random panels, random layouts, random holes; the fit equals statsmodels.

Each example draws a number of dimensions D in 1..4, their sizes, covariates at
random subsets of the dimensions, maybe a fixed effect, a family, maybe sample
weights, shuffled rows and (in unbalanced mode) random missing cells. The
reference is statsmodels' GLM on the dense matrix built straight from the long
frame's observed rows. Small random panels are often rank deficient (a
covariate at a dimension that also has a fixed effect, or too few levels): then
panelglm drops columns, and what both must agree on is the fit itself -- the
fitted means and the log-likelihood -- with coefficients compared when the
dense matrix has full rank. Responses are kept off the boundary of their range
so that separation (tested on purpose elsewhere) does not arise by chance.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import scipy.linalg
import statsmodels.api as sm
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from panelglm import PanelDesign, PanelLinearRegressor, PanelLogitRegressor, PanelPoissonRegressor

# Enough to cover every D, family and mode in a few seconds; raise it to hunt for
# rare failures (1500 examples ran clean when this was written).
N_EXAMPLES = int(os.environ.get("PANELGLM_HYPOTHESIS_EXAMPLES", "40"))

FAMILIES = {
    "poisson": (PanelPoissonRegressor, sm.families.Poisson),
    "binomial": (PanelLogitRegressor, sm.families.Binomial),
    "gaussian": (PanelLinearRegressor, sm.families.Gaussian),
}


@st.composite
def panels(draw):
    D = draw(st.integers(1, 4))
    # A dimension may have a single level: a cross-section along the others.
    sizes = draw(st.lists(st.integers(1, 5 if D < 3 else 3), min_size=D, max_size=D))
    if D == 1:
        sizes = [draw(st.integers(12, 30))]
    subsets = st.sets(st.integers(0, D - 1), min_size=1).map(lambda s: tuple(sorted(s)))
    layout = draw(st.lists(subsets, min_size=1, max_size=4))
    fixed_effect = draw(st.one_of(st.none(), subsets)) if D > 1 else None
    family = draw(st.sampled_from(sorted(FAMILIES)))
    unbalanced = draw(st.booleans())
    weighted = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return sizes, layout, fixed_effect, family, unbalanced, weighted, seed


def build(sizes, layout, fixed_effect, family, unbalanced, weighted, seed):
    rng = np.random.default_rng(seed)
    D = len(sizes)
    dims = [f"d{a}" for a in range(D)]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, D)
    df = pd.DataFrame({d: [f"{d}_{v}" for v in grid[:, a]] for a, d in enumerate(dims)})
    names = []
    for i, axes in enumerate(layout):
        block = rng.normal(size=tuple(sizes[a] for a in axes))
        df[f"x{i}"] = block[tuple(grid[:, a] for a in axes)]
        names.append(f"x{i}")
    eta = 0.3 + df[names].to_numpy() @ rng.uniform(-0.5, 0.5, len(names))
    df["m"] = rng.integers(1, 5, len(df)).astype(float)
    if family == "poisson":  # PPML: strictly positive, non-integer responses
        y = rng.poisson(np.exp(eta)) + rng.uniform(0.1, 1.0, len(df))
    elif family == "binomial":  # successes strictly between 0 and the trials
        y = df["m"].to_numpy() * rng.uniform(0.05, 0.95, len(df))
    else:
        y = eta + rng.normal(size=len(df))
    w = rng.uniform(0.2, 3.0, len(df)) if weighted else None
    keep = rng.uniform(size=len(df)) < (0.7 if unbalanced else 1.1)
    perm = rng.permutation(np.flatnonzero(keep))  # shuffled rows
    return (
        df.iloc[perm].reset_index(drop=True),
        dims,
        names,
        y[perm],
        None if w is None else w[perm],
    )


def dense(df, dims, names, fixed_effect):
    X = df[names].to_numpy()
    if fixed_effect is not None:
        key = df[[dims[a] for a in fixed_effect]].astype(str).agg(":".join, axis=1)
        X = np.column_stack([X, pd.get_dummies(key, drop_first=True, dtype=float)])
    return sm.add_constant(X, has_constant="add")


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(panels())
def test_fit_equals_statsmodels_on_observed_rows(case):
    _, _, fixed_effect, family, unbalanced, _, _ = case
    df, dims, names, y, w = build(*case)
    assume(len(df) > 0)  # holes may leave no row at all...
    X = dense(df, dims, names, fixed_effect)
    # ...or fewer rows than coefficients.
    assume(len(df) >= X.shape[1] + 3)
    # statsmodels' pseudo-inverse IRLS can diverge on a rank-deficient matrix, so it
    # gets a set of independent columns instead (by pivoted QR); the fit is the same.
    _, r, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    rank = int(np.sum(np.abs(np.diag(r)) > 1e-9 * np.abs(r[0, 0])))
    assert rank == np.linalg.matrix_rank(X)
    event(f"D={len(dims)} {family} {'unbalanced' if unbalanced else 'balanced'}")
    event("weighted" if w is not None else "unweighted")
    if any(df[d].nunique() == 1 for d in dims):
        event("a dimension with a single level")
    event("rank deficient" if rank < X.shape[1] else "full rank")

    est_cls, sm_family = FAMILIES[family]
    kw = {"trials": "m"} if family == "binomial" else {}
    fe = [tuple(dims[a] for a in fixed_effect)] if fixed_effect is not None else None
    design = PanelDesign(dims=dims, fixed_effects=fe, covariates=names, balanced=not unbalanced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collinearity and sparse-grid notices
        data = design.fit_transform(df)
        est = est_cls(**kw).fit(data, y, sample_weight=w)
        endog = np.column_stack([y, df["m"] - y]) if family == "binomial" else y
        ref = sm.GLM(endog, X[:, np.sort(piv[:rank])], family=sm_family(), freq_weights=w)
        ref = ref.fit(tol=1e-13, maxiter=300)

    assert data.is_balanced is not unbalanced or data.n_rows == data.n_cells
    assert est.converged_
    # Estimated coefficients: as many as the rank of the dense matrix.
    assert 1 + np.count_nonzero(~np.isnan(est.coef_)) == rank
    mu = est.predict(data)
    scale = df["m"].to_numpy() if family == "binomial" else 1.0
    np.testing.assert_allclose(mu, ref.fittedvalues * scale, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(est.loglik_, ref.llf, rtol=1e-9)
    if rank == X.shape[1] and not est.collinear_names_:
        # Same parametrization (a fixed effect whose first level combination has no
        # row is re-referenced differently), so the coefficients themselves agree.
        ours = np.r_[est.intercept_, est.coef_]
        np.testing.assert_allclose(
            ours[: 1 + len(names)], ref.params[: 1 + len(names)], rtol=1e-6, atol=1e-8
        )
