"""Tables and the figure of ``bench_absorb.py``: records of :mod:`absorb_fitters` runs.

A record is the dict an ``absorb_fitters.py`` child writes (``status == "ok"``) or
the one ``bench_absorb.py`` writes for a skipped or failed run (``status``
``"skipped"`` / ``"failed"`` and a ``reason``). :func:`compare` adds to each
pyfixest record its differences from panelglm's fit of the same data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

try:
    from benchmarks.report import machine_lines
except ModuleNotFoundError:  # run as a script
    from report import machine_lines

REFERENCE = "panelglm"
LIB_ORDER = ("panelglm", "pyfixest", "pyfixest-default")


def group_key(rec: dict[str, Any]) -> tuple:
    """Records with the same key were fitted to the same data and model."""
    return (rec["scenario"], rec["family"], tuple(rec["shape"]), rec["seed"])


def sort_key(rec: dict[str, Any]) -> tuple:
    order = LIB_ORDER.index(rec["lib"]) if rec["lib"] in LIB_ORDER else 99
    return (rec["scenario"], rec["N"], rec["family"], order)


def _panelglm_factor(ref: dict[str, Any], n_clusters: int) -> float:
    """panelglm's cluster factor ``G/(G-1) (N-1)/(N-k)`` (statsmodels' convention)."""
    if ref.get("small_sample_used") is False:
        return 1.0
    if ref.get("small_sample_used") not in (True, None):
        return math.nan  # another convention: no closed form here
    n, k, g = ref["nobs"], ref["n_params"], n_clusters
    return g / (g - 1) * (n - 1) / (n - k)


def compare(records: Sequence[dict[str, Any]]) -> None:
    """Set the differences from panelglm on every ok record that is not panelglm's, in place.

    ``max_rel_coef``: the largest ``|b - b_panelglm| / |b_panelglm|`` over the
    covariates (inf if a name is missing on either side). ``se_ratio``: each
    covariate's SE over panelglm's. ``se_ratio_expected``: the ratio the two
    small-sample conventions alone give, ``sqrt(ssc_pyfixest / factor_panelglm)``
    with panelglm's factor ``G/(G-1) (N-1)/(N-k)`` (``k`` the covariates plus
    the effects' degrees of freedom) and pyfixest's own ``ssc`` (its ``df_k``
    counts an effect nested in the cluster as one level); 1 when panelglm ran
    with ``small_sample="fixest"``.
    """
    refs = {group_key(r): r for r in records if r["lib"] == REFERENCE and r["status"] == "ok"}
    for rec in records:
        if rec["status"] != "ok" or rec["lib"] == REFERENCE:
            continue
        ref = refs.get(group_key(rec))
        if ref is None:
            continue
        names = set(ref["coef"]) | set(rec["coef"])
        rec["max_rel_coef"] = max(
            abs(rec["coef"][n] - ref["coef"][n]) / abs(ref["coef"][n])
            if n in rec["coef"] and n in ref["coef"]
            else math.inf
            for n in names
        )
        rec["se_ratio"] = {
            n: rec["se"][n] / ref["se"][n] for n in ref["se"] if n in rec.get("se", {})
        }
        if ref.get("small_sample_used") == "fixest":
            rec["se_ratio_expected"] = 1.0
        elif rec.get("ssc") and rec.get("n_clusters"):
            factor = _panelglm_factor(ref, rec["n_clusters"][0])
            rec["se_ratio_expected"] = math.sqrt(rec["ssc"][0] / factor)
        rec["same_sample"] = rec.get("nobs") == ref.get("nobs")


def _gb(nbytes: float | None) -> str:
    return "" if nbytes is None else f"{nbytes / 1e9:.2f}"


def _size(rec: dict[str, Any]) -> str:
    return " x ".join(f"{n:,}" for n in rec["shape"])


def _fit(rec: dict[str, Any]) -> str:
    times = rec.get("fit_times_s", [])
    extra = "" if rec.get("converged", True) else " (NOT CONVERGED)"
    return f"{rec['fit_s']:.3g}" + (f" (n={len(times)})" if len(times) > 1 else "") + extra


def _prep(rec: dict[str, Any]) -> str:
    return f"{rec.get('layout_s', rec.get('prep_s', math.nan)):.3g}"


def _rel(rec: dict[str, Any]) -> str:
    if rec["lib"] == REFERENCE:
        return "reference"
    v = rec.get("max_rel_coef")
    return "" if v is None else f"{v:.1e}"


def _warnings(rec: dict[str, Any]) -> list[str]:
    """The fit's warnings, without pandas' deprecation notices raised inside pyfixest."""
    return [w for w in rec.get("warnings", []) if not w.startswith("Pandas4Warning")]


def _row(rec: dict[str, Any], lead: list[str]) -> str:
    if rec["status"] != "ok":
        cells = [*lead, rec["lib"], f"{rec['status']}: {rec.get('reason', '')}", *[""] * 6]
    else:
        cells = [
            *lead,
            rec["lib"],
            "ok" + (" (warnings)" if _warnings(rec) else ""),
            _prep(rec),
            _fit(rec),
            _gb(rec["rss_peak"]),
            _gb(rec.get("rss_before_fit")),
            f"{rec.get('nobs', '')}",
            _rel(rec),
        ]
    return "| " + " | ".join(cells) + " |"


def scenario_table(records: Sequence[dict[str, Any]]) -> list[str]:
    out = [
        "| scenario | family | size | N | absorbed levels | library | status "
        "| layout / prep (s) | fit (s) | peak RSS (GB) | RSS at fit (GB) | nobs "
        "| max rel Δcoef |",
        "| --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rec in records:
        lead = [rec["scenario"], rec["family"], _size(rec), f"{rec['N']:.3g}"]
        lead.append(f"{rec['absorbed_levels']:,}" if "absorbed_levels" in rec else "")
        out.append(_row(rec, lead))
    return out


def se_table(records: Sequence[dict[str, Any]]) -> list[str]:
    refs = {group_key(r): r for r in records if r["lib"] == REFERENCE and r["status"] == "ok"}
    out = [
        "| scenario | family | size | coefficient | panelglm SE | library | SE "
        "| ratio | expected ratio | ratio / expected |",
        "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for rec in records:
        ref = refs.get(group_key(rec))
        if ref is None or rec is ref or "se_ratio" not in rec:
            continue
        expected = rec.get("se_ratio_expected", math.nan)
        for name, ratio in rec["se_ratio"].items():
            out.append(
                f"| {rec['scenario']} | {rec['family']} | {_size(rec)} | {name} "
                f"| {ref['se'][name]:.6g} | {rec['lib']} | {rec['se'][name]:.6g} "
                f"| {ratio:.6f} | {expected:.6f} | {ratio / expected:.8f} |"
            )
    return out


def markdown(
    scenarios: Sequence[dict[str, Any]],
    levels: Sequence[dict[str, Any]],
    env: dict[str, Any],
    commands: Sequence[str],
) -> str:
    """The report: scenario fits, pair-clustered SEs, the levels sweep, the machine."""
    out = [
        "# Absorbed fixed effects: panelglm and pyfixest",
        "",
        *[f"Command: `{c}`" for c in commands],
        "",
        "## Machine",
        "",
        *machine_lines(env),
        "",
        "Each library fits in its own process, after an untimed warm-up fit on the "
        "first levels of the first dimension (pyfixest compiles with numba on its "
        "first fit). Layout / prep: panelglm's `PanelDesign.fit_transform` of the "
        "cell frame and tables; pyfixest: the tables' columns put on every cell and "
        "integer ids of the interacted effects. Neither is in the fit time. Fit: "
        "the estimator's fit with its cluster-robust covariance (median of n). Peak "
        "RSS: the process's maximum (imports, data, input, fit); RSS at fit: "
        "resident just before the first fit. nobs: cells left after each library "
        "drops separated levels (and pyfixest singletons). Max rel Δcoef: the "
        "largest |b - b_panelglm| / |b_panelglm| over the covariates.",
        "",
    ]
    if scenarios:
        out += ["## Scenarios", "", *scenario_table(scenarios), ""]
        se = se_table(scenarios)
        if len(se) > 2:
            out += [
                "## Cluster-robust standard errors",
                "",
                "Expected ratio: what the two small-sample conventions alone give, "
                "sqrt(ssc_pyfixest / factor_panelglm), panelglm's factor "
                "G/(G-1) (N-1)/(N-k) with k the covariates plus the effects' degrees "
                "of freedom (statsmodels' convention, `small_sample=True`), "
                "pyfixest's `_ssc` (its df_k counts an effect nested in the cluster "
                "as one level). Ratio / expected is 1 where the sandwiches agree.",
                "",
                *se,
                "",
            ]
    if levels:
        out += [
            "## Absorbed levels sweep",
            "",
            "![fit time and peak memory against absorbed levels](absorb_levels.png)",
            "",
            *scenario_table(levels),
            "",
        ]
    notes = [
        f"- {r['scenario']} {r['family']} {_size(r)} {r['lib']}: {w}"
        for r in [*scenarios, *levels]
        if r["status"] == "ok"
        for w in _warnings(r)
        if w
    ]
    versions = sorted(
        {f"{r['lib']} {r['version']}" for r in [*scenarios, *levels] if "version" in r}
    )
    params = {
        (r["scenario"], r["lib"]): r["params"] for r in [*scenarios, *levels] if "params" in r
    }
    out += ["## Notes", "", "- versions: " + ", ".join(versions)]
    out += [f"- {sc} {lib} settings: {p}" for (sc, lib), p in sorted(params.items())]
    out += notes
    return "\n".join(out) + "\n"


def levels_figure(records: Sequence[dict[str, Any]], path: str) -> None:
    """Log-log fit time and peak RSS against the number of absorbed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            lines[r["lib"]].append(r)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for n, (lib, recs) in enumerate(sorted(lines.items(), key=lambda kv: sort_key(kv[1][0]))):
        recs = sorted(recs, key=lambda r: r["absorbed_levels"])
        x = [r["absorbed_levels"] for r in recs]
        style = {"color": f"C{n}", "marker": "o" if lib == REFERENCE else "s", "label": lib}
        ax_t.plot(x, [r["fit_s"] for r in recs], **style)
        ax_m.plot(x, [r["rss_peak"] / 1e9 for r in recs], **style)
    for ax, ylabel in ((ax_t, "fit wall time (s)"), (ax_m, "peak RSS of the process (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("absorbed levels (firms + years)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    shape = records[0]["shape"] if records else ["?", "?"]
    ax_t.set_title(f"Poisson, firm + year absorbed, firms x {shape[-1]} years: fit time")
    ax_m.set_title("Peak memory")
    fig.savefig(path, dpi=120)
    plt.close(fig)
