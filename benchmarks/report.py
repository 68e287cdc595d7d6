"""Turn benchmark records into a markdown report and a log-log figure.

Records are the dicts written by :func:`fitters.run_one` (``status == "ok"``) or by
:mod:`run` for a skipped or failed run (``status`` ``"skipped"`` / ``"failed"`` and a
``reason``). :func:`compare` adds the check against panelglm to each record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

COEF_TOL = 1e-6
REFERENCE = "panelglm"


def group_key(rec: dict[str, Any]) -> tuple:
    """Records with the same key were fitted to the same data."""
    return (tuple(rec["shape"]), rec["p"], rec["seed"])


def compare(records: Sequence[dict[str, Any]], tol: float = COEF_TOL) -> None:
    """Set ``max_abs_diff`` and ``check`` on every record, in place.

    Coefficients (the intercept included) are matched by name against panelglm's
    fit of the same data. ``check`` is ``"ok"``, ``"WRONG"`` (difference above
    ``tol``, or a coefficient missing on either side), ``"reference"`` (panelglm
    itself) or ``"-"`` (nothing to compare).
    """
    refs = {group_key(r): r for r in records if r["lib"] == REFERENCE and r["status"] == "ok"}
    for rec in records:
        rec["max_abs_diff"], rec["check"] = None, "-"
        if rec["status"] != "ok":
            continue
        if rec["lib"] == REFERENCE:
            rec["check"] = "reference"
            lib_ll = rec.get("lib_loglik")
            if lib_ll is not None and not math.isnan(lib_ll):
                if abs(lib_ll - rec["loglik"]) > 1e-8 * max(1.0, abs(rec["loglik"])):
                    rec["check"] = "WRONG (loglik_ disagrees with the recomputed one)"
            continue
        ref = refs.get(group_key(rec))
        if ref is None:
            rec["check"] = "- (no panelglm fit)"
            continue
        names = set(ref["coef"]) | set(rec["coef"])
        diff = max(
            abs(rec["coef"].get(n, math.inf) - ref["coef"].get(n, math.inf))
            if n in rec["coef"] and n in ref["coef"]
            else math.inf
            for n in names
        )
        rec["max_abs_diff"] = diff
        rec["check"] = "ok" if diff <= tol else "WRONG"


def _gb(nbytes: float | None) -> str:
    return "" if nbytes is None else f"{nbytes / 1e9:.2f}"


def _size(rec: dict[str, Any]) -> str:
    return "x".join(str(s) for s in rec["shape"])


def _fit_cell(rec: dict[str, Any]) -> str:
    times = rec.get("fit_times_s", [])
    return f"{rec['fit_s']:.3g} (n={len(times)})"


def _blas_line(env: dict[str, Any]) -> str:
    parts = [
        f"{b.get('internal_api')} {b.get('version')} (kernel/core type "
        f"{b.get('architecture')}, {b.get('num_threads')} threads, "
        f"{b.get('threading_layer')}; {b.get('prefix')})"
        for b in env.get("blas", [])
    ]
    return "; ".join(parts) or "unknown"


def machine_lines(env: dict[str, Any]) -> list[str]:
    """Markdown bullet lines describing the machine and BLAS of a child process."""
    mem = env.get("mem_total")
    openblas = env.get("openblas_env") or {}
    return [
        f"- CPU: {env.get('cpu')} ({env.get('cpu_count')} logical cores)",
        f"- RAM: {_gb(mem)} GB" if mem else "- RAM: unknown",
        f"- OS: {env.get('platform')}; Python {env.get('python')}; numpy {env.get('numpy')}",
        f"- BLAS (threadpoolctl, in the children after their fits): {_blas_line(env)}",
        "- OPENBLAS_* and *_NUM_THREADS variables in the children: "
        + (", ".join(f"{k}={v}" for k, v in openblas.items()) or "none"),
    ]


def markdown(records: Sequence[dict[str, Any]], env: dict[str, Any], command: str) -> str:
    """Render the results table, the Newton-step table and the machine description."""
    out = [
        "# panelglm benchmark results",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        *machine_lines(env),
        "",
        "## Fits",
        "",
        "Fit time: median wall time of the repeated fits (n = number of fits). Prep: "
        "building the dense matrix (peers) or the cell frame + tables and "
        "`PanelDesign.fit_transform` (panelglm); never charged to the fit. Peak RSS: "
        "the max RSS of the library's own process (imports, data, prep and fit). "
        "Log-likelihood: the full Poisson log-likelihood at the library's "
        "coefficients, recomputed by the harness. Max |Δcoef|: against panelglm, "
        f"matched by name, intercept included; WRONG if above {COEF_TOL:g}.",
        "",
        "| size | N | P | library | status | prep (s) | fit (s) | iters | peak RSS (GB) "
        "| log-likelihood | max abs Δcoef | check |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rec in records:
        row = [_size(rec), f"{rec['N']:.3g}", str(rec["P"]), rec["lib"]]
        if rec["status"] == "ok":
            diff = rec.get("max_abs_diff")
            row += [
                "ok"
                + ("" if rec.get("converged", True) else " (NOT CONVERGED)")
                + (" (warnings)" if rec.get("warnings") else ""),
                f"{rec['prep_s']:.3g}",
                _fit_cell(rec),
                str(rec["n_iter"]),
                _gb(rec["rss_peak"]),
                f"{rec['loglik']:.10g}",
                "" if diff is None else f"{diff:.1e}",
                rec.get("check", "-"),
            ]
        else:
            row += [f"{rec['status']}: {rec.get('reason', '')}", *[""] * 7]
        out.append("| " + " | ".join(row) + " |")

    steps = [r for r in records if r["status"] == "ok" and "step" in r]
    if steps:
        out += [
            "",
            "## panelglm: one Newton step against one memory pass",
            "",
            "exp: fastest `np.exp(a, out=b)` on N float64 (one pass over N values, "
            "the floor for N-sized work; 7 runs before the fits, one after each pair "
            "of fits, 7 after). Newton step: timed inside the solver, the mean of a "
            "fit's iterations after the first, fastest over the full fits. P x P "
            "solve: fastest of 21 Newton solves of that size, which the target does "
            "not count. Marginal: (fastest full fit - fastest fit with "
            "max_iter=1) / (iterations - 1), the same from outside; crude: median fit "
            "time / iterations. Fit / steps: the whole fit against its Newton steps "
            "(iterations x (step - solve)), i.e. crude / (step - solve): what the work "
            "around the steps (layout checks, screens, statistics, inference) costs.",
            "",
            "| size | N | P | exp (ms) | Newton step (ms) | step / exp | P x P solve (ms) "
            "| (step - solve) / exp | marginal (ms) | crude (ms) | fit / steps |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for rec in steps:
            s = rec["step"]
            # Records from before the solve and the in-solver step were timed.
            solve = s.get("solve_s", math.nan)
            marginal = s.get("step_marginal_s", s["step_s"])
            steps_only = s["step_s"] - (0.0 if math.isnan(solve) else solve)
            # panelglm runs with --n-threads are told apart by their name
            size = _size(rec) + ("" if rec["lib"] == REFERENCE else f" ({rec['lib']})")
            out.append(
                f"| {size} | {rec['N']:.3g} | {rec['P']} | {1e3 * s['exp_s']:.3g} "
                f"| {1e3 * s['step_s']:.3g} | {s['step_over_exp']:.1f} | {1e3 * solve:.2g} "
                f"| {s.get('step_wo_solve_over_exp', math.nan):.1f} "
                f"| {1e3 * marginal:.3g} | {1e3 * s['step_crude_s']:.3g} "
                f"| {s['step_crude_s'] / steps_only:.1f} |"
            )

    by_phase = [r for r in records if r["status"] == "ok" and "phases" in r]
    if by_phase:
        out += [
            "",
            "## panelglm: one fit by phase",
            "",
            "One more fit after the timed ones, its functions timed from outside "
            "(`benchmarks/phases.py`): spec (the model's terms and blocks from the "
            "laid-out panel), screens (collinearity, separation, certificate: the "
            "identification less the Newton solves), steps (the Newton solves), "
            "statistics (at the solution, and the results' bookkeeping), inference "
            "(the covariance), other (input checks, the objective's set-up). Layout: "
            "`PanelDesign.fit_transform` of the cell frame and tables (before the fit). "
            "Milliseconds.",
            "",
            "| size | N | P | layout | spec | screens | steps | statistics | inference "
            "| other | fit |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for rec in by_phase:
            ph = rec["phases"]
            size = _size(rec) + ("" if rec["lib"] == REFERENCE else f" ({rec['lib']})")
            cells = " | ".join(
                f"{1e3 * ph[k]:.3g}"
                for k in ("spec", "screens", "steps", "statistics", "inference", "other", "fit")
            )
            out.append(
                f"| {size} | {rec['N']:.3g} | {rec['P']} "
                f"| {1e3 * rec.get('design_s', rec['prep_s']):.3g} | {cells} |"
            )

    notes = [
        f"- {_size(r)} {r['lib']}: {w}"
        for r in records
        if r["status"] == "ok"
        for w in [*r.get("warnings", []), r.get("design_mode", ""), r.get("step", {}).get("note")]
        if w and w != "cell frame + tables"
    ]
    versions = sorted({f"{r['lib']} {r['version']}" for r in records if r.get("version")})
    tols = {r["lib"]: r["tolerances"] for r in records if r.get("tolerances")}
    out += ["", "## Notes", "", "- versions: " + ", ".join(versions)]
    out += [f"- {lib} settings: {t}" for lib, t in sorted(tols.items())]
    out += notes
    return "\n".join(out) + "\n"


def figure(records: Sequence[dict[str, Any]], path: str) -> None:
    """Log-log fit time and peak RSS against N, one line per library (and P)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok"]
    p_values = sorted({r["P"] for r in ok})
    lines: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        lines[(r["lib"], r["P"])].append(r)
    libs = sorted({lib for lib, _ in lines}, key=lambda lib: (lib != REFERENCE, lib))

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for (lib, P), recs in sorted(lines.items(), key=lambda kv: (libs.index(kv[0][0]), kv[0][1])):
        recs = sorted(recs, key=lambda r: r["N"])
        n = [r["N"] for r in recs]
        style = {
            "color": f"C{libs.index(lib)}",  # one colour per library, one line style per P
            "linestyle": ("-", "--", ":", "-.")[p_values.index(P) % 4],
            "marker": "o" if lib == REFERENCE else "s",
            "label": lib + (f" (P={P})" if len(p_values) > 1 else ""),
        }
        ax_t.plot(n, [r["fit_s"] for r in recs], **style)
        ax_m.plot(n, [r["rss_peak"] / 1e9 for r in recs], **style)
    for ax, ylabel in ((ax_t, "fit wall time (s)"), (ax_m, "peak RSS of the process (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (cells)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    ax_t.set_title("Poisson GLM fit time")
    ax_m.set_title("Peak memory")
    fig.savefig(path, dpi=120)
    plt.close(fig)
