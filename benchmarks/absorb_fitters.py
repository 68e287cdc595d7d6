"""Fit one library on one panel written by :mod:`absorb_data`, in its own process.

Run by ``bench_absorb.py`` (one process per library, so the peak RSS is that
library's)::

    python benchmarks/absorb_fitters.py --lib panelglm --data DIR --family poisson --out r.json

The process imports the library, reads the panel from ``DIR`` (only the columns
the model uses), prepares the library's input and fits it ``--repeat`` times:

- panelglm: the cell frame and the dimension tables go to
  ``PanelDesign(dims, absorb, covariates, tables).fit_transform`` (timed on its
  own, as ``layout_s``), then the cell frame is let go and the estimator fits
  the laid-out panel with the cluster-robust covariance.
- pyfixest: the tables' covariates are put on every cell and each interacted
  effect (and a pair cluster) gets an integer id column, outside the timing
  (``prep_s``); then ``feols`` / ``fepois`` / ``feglm(family="logit")`` with the
  effects after ``|`` and ``vcov={"CRV1": cluster}``, timed as the fit (their
  own formula parsing, singleton and separation checks, demeaning and vcov).
  ``pyfixest`` runs with ``fixef_tol=1e-10`` and ``iwls_tol=1e-10`` (the
  accuracy comparison), ``pyfixest-default`` with pyfixest's defaults.

Peak RSS is the process's ``ru_maxrss`` after the fits (imports, data, input and
the fit's working memory); ``rss_before_fit`` is the resident set just before
the first fit.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

try:
    from benchmarks import absorb_data
    from benchmarks.fitters import environment, peak_rss_bytes
except ModuleNotFoundError:  # run as a script: python benchmarks/absorb_fitters.py
    import absorb_data
    from fitters import environment, peak_rss_bytes

LIBS = ("panelglm", "pyfixest", "pyfixest-default")
FAMILIES = ("linear", "poisson", "logit")
PYFIXEST_TIGHT = {"fixef_tol": 1e-10, "iwls_tol": 1e-10, "iwls_maxiter": 100}
PANELGLM_TOL = {"tol": 1e-10, "max_iter": 100}
WARMUP_LEVELS = 5  # levels of the first dimension in the untimed warm-up fit


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _lib_version(lib: str) -> str:
    from importlib.metadata import version

    try:
        return version(lib.removesuffix("-default"))
    except Exception:  # panelglm importable from the tree without being installed
        import panelglm

        return str(panelglm.__version__)


def _cluster(meta: absorb_data.Meta) -> str | tuple[str, ...]:
    c = tuple(meta.cluster or ())
    return c[0] if len(c) == 1 else c


# ---------------------------------------------------------------------------- panelglm


# panelglm's estimator of each family.
ESTIMATORS = {
    "linear": "PanelLinearRegressor",
    "poisson": "PanelPoissonRegressor",
    "logit": "PanelLogitRegressor",
}


def _panelglm_params(meta: absorb_data.Meta, small_sample: str) -> dict[str, Any]:
    ss: bool | str = {"true": True, "false": False}.get(small_sample, small_sample)
    return dict(cov_type="cluster", cluster=_cluster(meta), small_sample=ss, **PANELGLM_TOL)


def record_base(meta: absorb_data.Meta, lib: str, family: str) -> dict[str, Any]:
    """What every record of a fit of ``lib`` on ``meta``'s panel starts with."""
    return {
        "lib": lib,
        "scenario": meta.scenario,
        "family": family,
        "shape": meta.shape,
        "dims": meta.dims,
        "N": meta.n_cells,
        "seed": meta.seed,
    }


def _prepare_panelglm(
    meta: absorb_data.Meta,
    cells: Any,
    y: Any,
    tables: dict[Any, Any],
    family: str,
    params: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any]]:
    import panelglm

    est_cls = getattr(panelglm, ESTIMATORS[family])
    t0 = time.perf_counter()
    design = panelglm.PanelDesign(
        dims=meta.dims,
        absorb=[tuple(a) for a in meta.absorb],
        covariates=meta.covariates,
        tables=tables or None,
    )
    data = design.fit_transform(cells)
    info = {"layout_s": time.perf_counter() - t0}

    def fit() -> Any:
        return est_cls(**params).fit(data, y)

    def result(est: Any) -> dict[str, Any]:
        names = [str(n) for n in est.coef_names_]
        return {
            "coef": dict(zip(names, np.asarray(est.coef_, float).tolist(), strict=True)),
            "se": dict(zip(names, np.asarray(est.bse_, float).tolist(), strict=True)),
            "n_iter": int(est.n_iter_),
            "converged": bool(est.converged_),
            "nobs": _panelglm_nobs(est, data),
            # AIC counts the covariates and the effects' degrees of freedom
            "n_params": round((est.aic_ + 2.0 * est.loglik_) / 2.0),
            "cov_description": str(getattr(est, "_cov_description", "")),
            "fixef_levels": {k: int(np.isfinite(v).sum()) for k, v in est.fixef_.items()},
        }

    return fit, result, info


def _panelglm_nobs(est: Any, data: Any) -> int:
    """Cells left after dropping those in a separated level (whose effect is infinite)."""
    dropped = np.zeros(tuple(data.shape), dtype=bool)
    for fe, series in zip(est._absorb_dims, est.fixef_.values(), strict=True):
        axes = [data.dims.index(d) for d in fe]
        bad = ~np.isfinite(series.to_numpy())
        if not bad.any():
            continue
        idx = np.ravel_multi_index(
            [series.index.get_level_values(i)[bad] for i in range(len(fe))]
            if len(fe) > 1
            else [series.index[bad]],
            [data.shape[a] for a in axes],
        )
        flat = np.zeros(int(np.prod([data.shape[a] for a in axes])), dtype=bool)
        flat[idx] = True
        shape = [data.shape[a] if a in axes else 1 for a in range(len(data.shape))]
        dropped |= flat.reshape([data.shape[a] for a in axes]).reshape(shape)
    return int(dropped.size - dropped.sum())


# ---------------------------------------------------------------------------- pyfixest


def _id_column(cells: Any, dims: tuple[str, ...], meta: absorb_data.Meta) -> str:
    """An integer column for the level combinations of ``dims`` (the dimension itself if one)."""
    if len(dims) == 1:
        return dims[0]
    name = "_".join(dims)
    if name not in cells:
        code = np.zeros(len(cells), dtype=np.int64)
        for d in dims:
            code = code * meta.shape[meta.dims.index(d)] + cells[d].to_numpy()
        cells[name] = code
    return name


def _prepare_pyfixest(
    meta: absorb_data.Meta,
    cells: Any,
    y: Any,
    tables: dict[Any, Any],
    family: str,
    tight: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    import pyfixest as pf

    t0 = time.perf_counter()
    absorb_data.expand_tables(cells, tables, meta)
    cells["y"] = y.to_numpy()
    fes = [_id_column(cells, tuple(a), meta) for a in meta.absorb]
    cluster = _id_column(cells, tuple(meta.cluster or ()), meta)
    info: dict[str, Any] = {"prep_s": time.perf_counter() - t0}
    # Spaces around "+": pyfixest's nested-effect check then uses the data
    # (see benchmarks/README.md).
    fml = f"y ~ {' + '.join(meta.covariates)} | {' + '.join(fes)}"
    kw: dict[str, Any] = {"vcov": {"CRV1": cluster}}
    if tight:
        kw["demeaner"] = pf.MapDemeaner(fixef_tol=PYFIXEST_TIGHT["fixef_tol"])
        if family != "linear":
            kw["iwls_tol"] = PYFIXEST_TIGHT["iwls_tol"]
            kw["iwls_maxiter"] = PYFIXEST_TIGHT["iwls_maxiter"]
    info["formula"] = fml
    info["params"] = {k: (repr(v) if k == "demeaner" else v) for k, v in kw.items()}

    def fit() -> Any:
        if family == "linear":
            return pf.feols(fml, data=cells, **kw)
        if family == "poisson":
            return pf.fepois(fml, data=cells, **kw)
        return pf.feglm(fml, data=cells, family="logit", **kw)

    def result(model: Any) -> dict[str, Any]:
        coef, se = model.coef(), model.se()
        return {
            "coef": {str(k): float(v) for k, v in coef.items()},
            "se": {str(k): float(v) for k, v in se.items()},
            "converged": bool(getattr(model, "convergence", True)),
            "nobs": int(model._N),
            "df_k": int(model._df_k),
            "n_clusters": np.ravel(np.asarray(model._G)).astype(int).tolist(),
            "ssc": np.ravel(np.asarray(model._ssc, dtype=float)).tolist(),
            "n_separation_na": int(getattr(model, "n_separation_na", 0) or 0),
        }

    return fit, result, info


# ---------------------------------------------------------------------------- one run


def _prepare(
    lib: str,
    meta: absorb_data.Meta,
    cells: Any,
    y: Any,
    tables: dict[Any, Any],
    family: str,
    params: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any]]:
    if lib == "panelglm":
        return _prepare_panelglm(meta, cells, y, tables, family, params)
    return _prepare_pyfixest(meta, cells, y, tables, family, lib == "pyfixest")


def _warm_up(
    lib: str,
    meta: absorb_data.Meta,
    cells: Any,
    y: Any,
    tables: dict[Any, Any],
    family: str,
    params: dict[str, Any],
) -> float:
    """Fit the first few levels of the first dimension once, untimed; return its time.

    A library's first fit in a process pays for compiling or loading code (numba
    for pyfixest, a BLAS's first call), which is not what the timings compare.
    """
    keep = (cells[meta.dims[0]] < WARMUP_LEVELS).to_numpy()
    sub_meta = absorb_data.Meta(**{**meta.__dict__, "shape": list(meta.shape)})
    sub_meta.shape[0] = min(meta.shape[0], WARMUP_LEVELS)
    sub_tables = {
        k: t[t[meta.dims[0]] < WARMUP_LEVELS].reset_index(drop=True) if meta.dims[0] in t else t
        for k, t in tables.items()
    }
    sub_cells = cells[keep].reset_index(drop=True)
    sub_y = y[keep].reset_index(drop=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit, _, _ = _prepare(lib, sub_meta, sub_cells, sub_y, sub_tables, family, params)
        fit()
    return time.perf_counter() - t0


def run_one(
    lib: str,
    data_dir: Path,
    family: str,
    repeat: int = 1,
    small_sample: str = "true",
    profile: bool = False,
) -> dict[str, Any]:
    """Read the panel in ``data_dir``, prepare ``lib``'s input, fit and measure."""
    meta = absorb_data.read_meta(data_dir)
    rec = record_base(meta, lib, family)
    t0 = time.perf_counter()
    if lib == "panelglm":
        import panelglm  # noqa: F401 (its import is timed)

        params = _panelglm_params(meta, small_sample)
        rec["small_sample_used"] = params["small_sample"]
    else:
        import pyfixest  # noqa: F401

        params = {}
    rec["import_s"] = time.perf_counter() - t0
    rec["version"] = _lib_version(lib)
    t0 = time.perf_counter()
    cells, y = absorb_data.read_cells(data_dir, meta, family)
    tables = absorb_data.read_tables(data_dir, meta)
    rec["read_s"] = time.perf_counter() - t0
    rec["warmup_s"] = _warm_up(lib, meta, cells, y, tables, family, params)
    rec["rss_after_read"] = peak_rss_bytes()
    fit, result, info = _prepare(lib, meta, cells, y, tables, family, params)
    rec.update(info)
    del cells, tables  # panelglm's laid-out panel holds what it needs; pyfixest's frame stays
    gc.collect()
    rec["rss_before_fit"] = current_rss_bytes()
    times, caught = [], []
    for _ in range(max(repeat, 1)):
        gc.collect()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            model = fit()
            times.append(time.perf_counter() - t0)
        caught += [f"{x.category.__name__}: {str(x.message)[:200]}" for x in w]
    rec["rss_peak"] = peak_rss_bytes()
    rec["fit_times_s"] = times
    rec["fit_s"] = statistics.median(times)
    rec["warnings"] = sorted(set(caught))
    rec.update(result(model))
    if profile:
        prof = cProfile.Profile()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prof.runcall(fit)
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out).strip_dirs()
        stats.sort_stats("cumulative").print_stats(15)
        stats.sort_stats("tottime").print_stats(15)
        rec["profile"] = out.getvalue()
    rec["status"] = "ok"
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit one library on one absorb_data panel.")
    ap.add_argument("--lib", required=True, choices=LIBS)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--small-sample", default="true", help="panelglm: true, false or fixest")
    ap.add_argument("--profile", action="store_true", help="cProfile one more fit")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rec = run_one(
        args.lib, args.data, args.family, args.repeat, args.small_sample.lower(), args.profile
    )
    rec["environment"] = environment()
    Path(args.out).write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
