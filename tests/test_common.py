"""scikit-learn's estimator checks on every public estimator and on PanelDesign.

The estimators run the checks on their plain-array path, where a 2-D array is
a cross-section (one panel dimension). Anything expected to fail is listed in
:data:`EXPECTED_FAILURES`, with its reason, and nowhere else.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from conftest import make_panel
from scipy.special import expit
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from panelglm import (
    PanelDesign,
    PanelExponentialRegressor,
    PanelGammaRegressor,
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelNegativeBinomialRegressor,
    PanelPoissonRegressor,
)


class LogitOnRealTargets(PanelLogitRegressor):
    """The logit regressor, with targets mapped into its domain by ``expit``.

    scikit-learn's regressor checks draw real-valued targets (shifted to
    ``y >= 1`` under the ``positive_only`` tag), and no tag asks for targets
    in ``[0, 1]``: every check would stop at the binomial family's range
    error. Mapping ``y`` elementwise by ``expit`` keeps everything the checks
    probe (row order, subsets, weights, pickling, ...) and leaves the
    estimator's own code under test; ``expit`` of a linear predictor is
    exactly the mean a logit model fits.
    """

    def fit(self, X, y, sample_weight=None):
        return super().fit(X, _to_unit(y), sample_weight)

    def score(self, X, y, sample_weight=None):
        return super().score(X, _to_unit(y), sample_weight)


def _to_unit(y):
    # A fixed elementwise map, so that weighting, repeating, reordering or
    # subsetting rows commutes with it. Non-numeric y is passed through so that
    # the estimator's own validation answers the checks that probe it.
    arr = np.asarray(y)
    if np.iscomplexobj(arr):
        return y
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        return y
    return np.where(np.isfinite(arr), expit(arr), arr)  # NaN and inf stay invalid


# The one place that lists what is expected to fail, with the reason.
_NEEDS_FRAME = (
    "PanelDesign lays out a long-format DataFrame by its dimension columns; a bare "
    "array has no dimension columns, and PanelDesign refuses it with a TypeError"
)
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "PanelPoissonRegressor": {},
    "PanelLogitRegressor": {},
    "PanelLinearRegressor": {},
    "PanelExponentialRegressor": {},
    "PanelGammaRegressor": {},
    "PanelNegativeBinomialRegressor": {},
    # Every check that fits PanelDesign on a bare array stops at its TypeError.
    # The frame-based tests below check the properties that apply on long frames.
    "PanelDesign": {
        "check_fit_score_takes_y": _NEEDS_FRAME,
        "check_estimators_overwrite_params": _NEEDS_FRAME,
        "check_dont_overwrite_parameters": _NEEDS_FRAME,
        "check_estimators_fit_returns_self": _NEEDS_FRAME,
        "check_readonly_memmap_input": _NEEDS_FRAME,
        "check_n_features_in_after_fitting": _NEEDS_FRAME,
        "check_positive_only_tag_during_fit": _NEEDS_FRAME,
        "check_estimators_dtypes": _NEEDS_FRAME,
        "check_complex_data": _NEEDS_FRAME,
        "check_dtype_object": _NEEDS_FRAME,
        "check_estimators_empty_data_messages": _NEEDS_FRAME,
        "check_pipeline_consistency": _NEEDS_FRAME,
        "check_estimators_nan_inf": _NEEDS_FRAME,
        "check_estimators_pickle": _NEEDS_FRAME,
        "check_f_contiguous_array_estimator": _NEEDS_FRAME,
        "check_transformer_data_not_an_array": _NEEDS_FRAME,
        "check_transformer_general": _NEEDS_FRAME,
        "check_transformer_preserve_dtypes": _NEEDS_FRAME,
        "check_methods_sample_order_invariance": _NEEDS_FRAME,
        "check_methods_subset_invariance": _NEEDS_FRAME,
        "check_fit2d_1sample": _NEEDS_FRAME,
        "check_fit2d_1feature": _NEEDS_FRAME,
        "check_dict_unchanged": _NEEDS_FRAME,
        "check_fit_idempotent": _NEEDS_FRAME,
        "check_fit_check_is_fitted": _NEEDS_FRAME,
        "check_n_features_in": _NEEDS_FRAME,
        "check_fit1d": _NEEDS_FRAME,
        "check_fit2d_predict1d": _NEEDS_FRAME,
    },
}


def _expected_failures(estimator):
    # The test adapter of the logit regressor answers to the public class's entry.
    return next(
        EXPECTED_FAILURES[c.__name__]
        for c in type(estimator).__mro__
        if c.__name__ in EXPECTED_FAILURES
    )


# The checks include a fit of 30 features on 15 samples (sample-weight
# equivalence), where maximum likelihood (alpha=0, the default) has no unique
# solution; a small ridge penalty makes every problem the checks pose well posed.
ALPHA = 1e-3
ESTIMATORS = [
    PanelPoissonRegressor(alpha=ALPHA),
    LogitOnRealTargets(alpha=ALPHA),
    PanelLinearRegressor(alpha=ALPHA),
    PanelExponentialRegressor(alpha=ALPHA),
    PanelGammaRegressor(alpha=ALPHA),
    PanelNegativeBinomialRegressor(alpha=ALPHA),  # theta estimated
    PanelNegativeBinomialRegressor(theta=2.0, alpha=ALPHA),
    PanelPoissonRegressor(alpha=0.01, l1_ratio=0.5),  # the proximal-Newton path
    PanelDesign(dims=["d"]),
]


# Strict: a listed check that starts passing must be taken off the list.
# The fit-time covariance (the unpenalized information) is singular in the
# checks' fit of 30 features on 15 samples, and says so; the checks test the
# coefficients and predictions, which the penalty keeps well defined.
@pytest.mark.filterwarnings("ignore:The information matrix is singular:RuntimeWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures, xfail_strict=True)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# PanelDesign's side of the same contract, on the long frames it is made for.


def _layout(data):
    """Every column of a PanelData as laid out, for comparisons."""
    return {name: data.numeric(name) for name in data.spec}


def _same_layout(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        assert a[name][1] == b[name][1]


def test_design_fit_transform_idempotent_pickle_and_input_untouched():
    df, dims, _, y = make_panel((4, 3, 2), seed=1)
    before = df.copy(deep=True)
    design = PanelDesign(dims=dims)
    assert design.fit(df, y) is design
    assert design.n_features_in_ == df.shape[1]
    assert list(design.feature_names_in_) == list(df.columns)
    first = _layout(design.transform(df))
    _same_layout(_layout(PanelDesign(dims=dims).fit_transform(df, y)), first)
    _same_layout(_layout(design.fit(df, y).transform(df)), first)  # refit: same state
    restored = pickle.loads(pickle.dumps(design))
    _same_layout(_layout(restored.transform(df)), first)
    pd.testing.assert_frame_equal(df, before)


def test_design_clone_params_and_unfitted():
    design = PanelDesign(dims=["a", "b"], fixed_effects=["a"], covariates=["x"])
    twin = clone(design)
    assert twin.get_params() == design.get_params()
    assert not hasattr(twin, "spec_")
    assert twin.set_params(covariates=None).covariates is None
    with pytest.raises(NotFittedError):
        twin.transform(pd.DataFrame({"a": [0], "b": [0], "x": [1.0]}))


@pytest.mark.parametrize(
    "make_x, error, match",
    [
        (lambda df: df.iloc[:0], ValueError, "no rows"),
        (lambda df: df.assign(x_0=df["x_0"].where(df.index != 3)), ValueError, "'x_0'.*missing"),
        (
            lambda df: df.assign(x_01=np.where(df.index == 2, np.inf, df["x_01"])),
            ValueError,
            "'x_01'.*infinite",
        ),
        (lambda df: df.to_numpy(), TypeError, "DataFrame"),
        (lambda df: scipy.sparse.csr_array(df[["x_0"]].to_numpy()), TypeError, "sparse"),
    ],
    ids=["empty", "nan", "inf", "array", "sparse"],
)
def test_design_rejects_bad_input_naming_it(make_x, error, match):
    df, dims, _, _ = make_panel((4, 3), seed=2)
    with pytest.raises(error, match=match):
        PanelDesign(dims=dims).fit_transform(make_x(df))


@pytest.mark.parametrize(
    "est, bad",
    [
        (PanelDesign(dims="d0"), "dims"),
        (PanelPoissonRegressor(alpha=-1.0), "alpha"),
        (PanelLogitRegressor(max_iter=0), "max_iter"),
        (PanelLinearRegressor(tol=0.0), "tol"),
        (PanelExponentialRegressor(event=3), "event"),
        (PanelPoissonRegressor(offset=1.5), "offset"),
    ],
)
def test_parameters_are_validated_declaratively(est, bad):
    X = pd.DataFrame({"d0": [0, 1, 2], "x": [0.1, 0.2, 0.4]})
    with pytest.raises(InvalidParameterError, match=f"'{bad}' parameter"):
        est.fit(X, [1.0, 2.0, 1.0])
