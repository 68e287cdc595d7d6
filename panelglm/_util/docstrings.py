"""Docstring sections the estimators share, written once.

Each estimator's docstring holds ``{common_params}`` and ``{common_attrs}``
where its own Parameters and Attributes sections continue; :func:`fill_doc`
fills them in.
"""

from __future__ import annotations

_COMMON_PARAMS = """alpha : float, default=0.0
        Penalty strength, scikit-learn's (and glum's) GLM convention: the
        objective is ``mean_w(-loglik) + alpha * (l1_ratio * ||coef||_1 +
        (1 - l1_ratio) / 2 * ||coef||^2)``; the intercept is not penalized.
        ``alpha=0`` is maximum likelihood.
    l1_ratio : float, default=0.0
        Elastic-net mixing, in [0, 1]: ``0`` is the ridge (L2) penalty,
        ``1`` the lasso (L1). With an L1 part the model is fitted by proximal
        Newton (coordinate descent on each Newton model) and coefficients the
        penalty removes are exactly zero.
    fit_intercept : bool, default=True
        Whether to fit an intercept. With it, every categorical covariate and
        fixed effect drops its first level; without it, the first such term
        keeps all its levels and the others still drop their first (patsy's
        full-rank coding).
    tol : float, default=1e-10
        Stop when the decrease a Newton step predicts is at most ``tol``
        times the objective's excess over the saturated fit (half the
        deviance per unit of weight; at least the smaller of 1 and its value
        at the start, so the rule does not depend on the units of ``y``);
        the final step makes the coefficients accurate to roughly ``tol``
        relative.
    max_iter : int, default=100
        Maximum number of Newton iterations.
    verbose : int, default=0
        Print the objective at every iteration if positive.
    dims : list of str, default=None
        Dimension columns, used when ``fit`` receives a long DataFrame
        directly: ``PanelDesign(dims, fixed_effects)`` with its defaults is
        then fitted internally, so the panel must be balanced and every
        other column is a covariate, except the offset, trials or event
        column and the target itself (a column that ``y``, a Series, is
        named after and equals row by row, as ``df["sales"]``). For
        ``balanced=False``, ``covariates=``, ``tables=`` or ``levels=``, use
        ``make_pipeline(PanelDesign(...), estimator)``. A :class:`PanelData`
        keeps the dims and fixed effects of its own PanelDesign. With an
        ``xarray.Dataset``, the panel dimensions (``None``: all of its own).
    fixed_effects : list of str or tuple of str, default=None
        Fixed effects, used with ``dims`` (without ``dims`` a ValueError);
        see :class:`PanelDesign`.
    absorb : list of str or tuple of str, default=None
        Absorbed fixed effects, used with ``dims`` (without ``dims`` a
        ValueError): nuisance parameters with any number of levels, reported
        in ``fixef_`` rather than ``coef_``; see :class:`PanelDesign`. The
        constant is then one of the effects (``intercept_`` is 0).
    cov_type : {"nonrobust", "robust", "cluster"}, default="nonrobust"
        Covariance of the coefficients, computed at fit time from the factored
        design: ``"nonrobust"`` the inverse Fisher information (times the
        scale for the linear and gamma models); ``"robust"`` the
        heteroskedasticity-robust sandwich (HC1, or HC0 with
        ``small_sample=False``); ``"cluster"`` the cluster-robust sandwich
        over ``cluster``.
    cluster : str, tuple of str or list of (str or tuple of str), default=None
        With ``cov_type="cluster"``: a panel dimension (clusters are its
        levels), a tuple of dimensions (clusters are their level combinations,
        e.g. exporter-importer pairs), or a list of those for multiway
        clustering (Cameron-Gelbach-Miller), e.g. ``["exporter", "importer"]``.
    small_sample : bool or "fixest", default=True
        Small-sample factors of the covariances. ``True``: statsmodels',
        ``n / (n - k)`` for ``"robust"`` (HC1) and, as statsmodels'
        ``use_correction=True``, ``G / (G - 1) * (n - 1) / (n - k)`` for each
        term of a cluster covariance (``n`` observations of positive weight,
        ``k`` coefficients plus the absorbed effects' degrees of freedom,
        ``G`` clusters). ``False`` applies none. ``"fixest"``: fixest's and
        pyfixest's defaults, so that numbers compare with theirs: ``k``
        counts each absorbed effect's levels, less one per effect after the
        first, and, for a cluster covariance, only one level of an effect
        nested in a cluster; the model-based covariance gets
        ``(n - 1) / (n - k)``; every term of a multiway cluster covariance
        gets ``G / (G - 1)`` with the smallest ``G``.
    dtype : {np.float64, np.float32}, default=np.float64
        Precision of the work over the cells (the linear predictor, the
        family's derivatives and their sums within a chunk of the panel);
        every accumulated sum, the coefficients and the Newton solve stay in
        float64. ``np.float32`` halves the memory of what panelglm itself
        holds per cell and uses float32 covariate, response and weight
        columns without copying them; coefficients then agree with float64
        to about 1e-5 relative (see ``benchmarks/PERF_NOTES.md``). Every
        ``cov_type`` and the elastic net (``l1_ratio > 0``) work in either
        precision; standard errors in float32 agree to about 1e-5 relative.
    collinear : {"drop", "raise"}, default="drop"
        What to do, when ``alpha=0``, with a coefficient that is a linear
        combination of others on the observed rows (for example a covariate
        that varies by customer only, next to a customer fixed effect):
        ``"drop"`` leaves it out of the fit with a ``CollinearityWarning``
        naming it and reports it as NaN, as fixest does; ``"raise"`` raises a
        ValueError instead. The intercept, then fixed effects, then covariates
        in their order claim the column space first, so the later of two
        collinear covariates is the one dropped. Fixed-effect levels with no
        observed row are always NaN, without a warning.
    n_threads : int, default=None
        Threads a fit runs on: one part of each compiled pass over the cells
        per thread, and BLAS threads for the Newton solve when there are more
        than 1000 coefficients (below that BLAS keeps one thread, its calls
        being many and small). ``None`` uses every core available to the
        process (its CPU affinity where the system reports one, else
        ``os.cpu_count()``). The parts' sums are added in a fixed order, so a
        given ``n_threads`` gives the same bits on every run, and different
        values agree to rounding; ``n_threads=1`` runs every sum in one
        order. Without the compiled sweep, the numpy passes use one thread
        unless ``n_threads`` is given; fits with ``absorb`` run their passes
        on one thread. Not scikit-learn's ``n_jobs``, whose ``None`` means
        one job and ``-1`` every core: threads here share the fit's memory,
        and ``None`` already means every core."""

_COMMON_ATTRS = """coef_ : ndarray of shape (n_coef,)
        Coefficients, without the intercept, aligned with ``coef_names_``.
    coef_names_ : list of str
        Name of every coefficient: a numeric column's name (converted with
        ``str``), ``"column[level]"`` for a categorical column's level,
        ``"dim[level]"`` (``"dim1:dim2[level1:level2]"``) for a fixed
        effect's. Names are unique: ``fit`` raises a ValueError naming the
        columns when two would coincide (a column named ``"Intercept"``
        next to the intercept, ``"g[b]"`` next to a categorical ``g``).
    intercept_ : float
        The intercept (0.0 when not fitted, and with absorbed fixed effects,
        which hold the constant instead).
    n_iter_ : int
        Newton iterations performed.
    converged_ : bool
        Whether Newton converged within ``max_iter``.
    loglik_ : float
        Full log-likelihood at the solution, as statsmodels reports ``llf``.
    deviance_ : float
        Deviance at the solution.
    cov_params_ : DataFrame of shape (n_params, n_params)
        Covariance of the estimates chosen by ``cov_type``, indexed by name
        both ways, ``"Intercept"`` first when fitted (then ``coef_names_``).
        Warns when ``alpha > 0``: penalized estimates have no valid one.
    bse_ : Series of shape (n_params,)
        Standard errors, indexed like ``cov_params_``; see :meth:`summary`.
    null_deviance_ : float
        Deviance of the intercept-only model with the same offset, trials and
        weights (as statsmodels, also when ``fit_intercept=False``).
    aic_ : float
        ``-2 * loglik_ + 2 * k``, ``k`` the number of coefficients with the
        intercept (statsmodels' GLM ``aic``; the scale is not counted), or
        with absorbed fixed effects the covariates and the effects' degrees
        of freedom.
    bic_ : float
        ``-2 * loglik_ + k * log(n)``, ``n`` the total weight (statsmodels'
        GLM ``bic_llf``).
    scale_ : float
        Dispersion: ``1`` for the Poisson, binomial, negative binomial and
        exponential models.
    collinear_names_ : list of str
        Coefficients not estimated (NaN in ``coef_``): collinear with the
        intercept, fixed effects (absorbed or not) or earlier covariates, or
        without any observed row of positive weight.
    fixef_ : dict of str to Series
        Only with absorbed fixed effects (``absorb``): each effect's fitted
        values, keyed by its name (``"firm"``, ``"exporter:year"``) and
        indexed by its levels (a MultiIndex for a tuple of dimensions). Every
        effect but the first has its first observed level at 0; the first
        carries the overall level. Levels without an observed row are absent
        (predicting for them raises); a separated level is ``-inf`` or
        ``+inf``. See the user guide's page on absorbed fixed effects.
    separated_rows_ : ndarray of bool of shape (n_rows,)
        Rows dropped from the fit as separated (``alpha=0`` only): rows of a
        fixed-effect level whose ``y`` are all 0 (or all equal to the trials),
        or rows that a covariate fits perfectly as its coefficient goes to
        infinity. The fit is the maximum likelihood fit of the other rows; a
        ``SeparationWarning`` names the levels or covariates, and predictions
        at a separated fixed-effect level are its limit (0 or the trials)."""


# Fragments of the common attribute text a model may replace (``_attr_docs``
# on the class): the common text is the Poisson and logit models'.
_OVERRIDABLE = {
    "loglik_": "Full log-likelihood at the solution, as statsmodels reports ``llf``.",
    "scale_": (
        "Dispersion: ``1`` for the Poisson, binomial, negative binomial and\n"
        "        exponential models."
    ),
    "separated_rows_": "fixed-effect level whose ``y`` are all 0 (or all equal to the trials),",
    "separated_at": "at a separated fixed-effect level are its limit (0 or the trials).",
}


def fill_doc(cls: type) -> type:
    """Fill the shared parameter and attribute sections into a class docstring."""
    attrs = _COMMON_ATTRS
    for name, text in getattr(cls, "_attr_docs", {}).items():
        if _OVERRIDABLE[name] not in attrs:
            raise ValueError(f"no common description of {name!r} to replace")
        attrs = attrs.replace(_OVERRIDABLE[name], text)
    cls.__doc__ = cls.__doc__.format(common_params=_COMMON_PARAMS, common_attrs=attrs)
    return cls
