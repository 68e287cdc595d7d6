"""Absorbed fixed effects: panelglm against pyfixest on the same data, one process each.

Usage (from the repository root; see benchmarks/README.md)::

    python benchmarks/bench_absorb.py scenarios          # gravity, firm x year, retail
    python benchmarks/bench_absorb.py levels --levels 1e3 1e4 1e5 1e6
    python benchmarks/bench_absorb.py all --gravity 30x5 --firm 2000x20 \\
        --retail 200x20x10 --levels 1e3 1e4          # small: seconds

Each panel is generated once (:mod:`absorb_data`) into a temporary directory as
parquet; then every library fits it in its own child process
(:mod:`absorb_fitters`, started by :func:`run.spawn`), which reads the same
files. Records go to ``OUT_DIR/raw/absorb/``; ``report`` (and every run) rewrites
``OUT_DIR/absorb.md`` from all records there, and the levels sweep's figure
``OUT_DIR/absorb_levels.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from benchmarks import absorb_data, absorb_report
    from benchmarks.absorb_fitters import FAMILIES, LIBS, record_base
    from benchmarks.fitters import environment
    from benchmarks.run import spawn
except ModuleNotFoundError:  # run as a script: python benchmarks/bench_absorb.py
    import absorb_data
    import absorb_report
    from absorb_fitters import FAMILIES, LIBS, record_base
    from fitters import environment
    from run import spawn

HERE = Path(__file__).resolve().parent
SIZE_KEYS = {
    "gravity": ("exporters", "years"),
    "firm": ("firms", "years"),
    "retail": ("customers", "products", "weeks"),
}


def _sizes(scenario: str) -> Any:
    keys = SIZE_KEYS[scenario]

    def parse(text: str) -> dict[str, int]:
        parts = text.lower().replace(",", "").split("x")
        if len(parts) != len(keys) or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"{scenario} size is {'x'.join(keys)}, got {text!r}")
        return dict(zip(keys, map(int, parts), strict=True))

    return parse


def _count(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"a positive whole number, got {text!r}")
    return int(value)


def absorbed_levels(meta: absorb_data.Meta) -> int:
    """Levels of all absorbed effects (before any identification)."""
    total = 0
    for fe in meta.absorb:
        n = 1
        for d in fe:
            n *= meta.shape[meta.dims.index(d)]
        total += n
    return total


def _raw_dir(out_dir: Path) -> Path:
    return out_dir / "raw" / "absorb"


def _stem(meta: absorb_data.Meta, family: str, lib: str, sweep: bool) -> str:
    kind = "levels" if sweep else meta.scenario
    return f"{kind}_{'x'.join(map(str, meta.shape))}_s{meta.seed}_{family}_{lib}"


def run_panel(
    meta: absorb_data.Meta,
    data_dir: Path,
    families: Sequence[str],
    args: argparse.Namespace,
    sweep: bool = False,
) -> list[dict[str, Any]]:
    """Fit every library (and family) on the panel in ``data_dir``; return the records."""
    records = []
    raw = _raw_dir(Path(args.out_dir))
    raw.mkdir(parents=True, exist_ok=True)
    for family in families:
        for lib in args.libs:
            base = dict(
                record_base(meta, lib, family),
                absorbed_levels=absorbed_levels(meta),
                sweep=sweep,
            )
            out = raw / f"{_stem(meta, family, lib, sweep)}.json"
            label = f"{meta.scenario} {family} {'x'.join(map(str, meta.shape))} {lib}"
            if lib != "panelglm" and meta.n_cells > args.pyfixest_max_cells:
                rec = dict(base, status="skipped")
                rec["reason"] = f"N > --pyfixest-max-cells {args.pyfixest_max_cells:.3g}"
                out.write_text(json.dumps(rec, indent=1))
            else:
                print(f"{label} ...", end=" ", flush=True)
                script_args = [
                    "--lib",
                    lib,
                    "--data",
                    str(data_dir),
                    "--family",
                    family,
                    "--repeat",
                    str(args.repeat),
                    "--small-sample",
                    args.small_sample,
                ]
                if args.profile and lib == "panelglm":
                    script_args.append("--profile")
                rec = spawn(
                    HERE / "absorb_fitters.py", script_args, out, base, args.timeout, args.threads
                )
                rec.update(absorbed_levels=base["absorbed_levels"], sweep=sweep)
                out.write_text(json.dumps(rec, indent=1))
            print(_summary(rec), flush=True)
            if rec.get("profile"):
                print(rec["profile"])
            records.append(rec)
    return records


def _summary(rec: dict[str, Any]) -> str:
    if rec["status"] != "ok":
        return f"{rec['lib']}: {rec['status']}: {rec.get('reason', '')}"
    prep = rec.get("layout_s", rec.get("prep_s", 0.0))
    return (
        f"fit {rec['fit_s']:.3g} s (layout/prep {prep:.3g} s), peak RSS "
        f"{rec['rss_peak'] / 1e9:.2f} GB, coef {rec['coef']}"
    )


def _generate(scenario: str, sizes: dict[str, int], root: Path, seed: int) -> tuple[Any, Path]:
    data_dir = root / f"{scenario}_{'x'.join(map(str, sizes.values()))}"
    print(f"generating {scenario} {sizes} in {data_dir} ...", flush=True)
    return absorb_data.write_panel(scenario, sizes, data_dir, seed), data_dir


def run(args: argparse.Namespace) -> None:
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="absorb_bench_"))
    try:
        if args.what in ("scenarios", "all"):
            for scenario in args.scenarios:
                sizes = getattr(args, scenario)
                meta, data_dir = _generate(scenario, sizes, root, args.seed)
                families = [f for f in args.families if f in meta.responses]
                run_panel(meta, data_dir, families, args)
                if not args.keep_data:
                    shutil.rmtree(data_dir)
        if args.what in ("levels", "all"):
            for firms in args.levels:
                sizes = {"firms": firms, "years": args.level_years}
                meta, data_dir = _generate("firm", sizes, root, args.seed)
                run_panel(meta, data_dir, ["poisson"], args, sweep=True)
                if not args.keep_data:
                    shutil.rmtree(data_dir)
    finally:
        if not args.keep_data and not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)


def write_report(out_dir: Path, command: str) -> None:
    """Rewrite ``absorb.md`` (and ``absorb_levels.png``) from every record in the raw dir."""
    records = [json.loads(f.read_text()) for f in sorted(_raw_dir(out_dir).glob("*.json"))]
    records.sort(key=absorb_report.sort_key)
    absorb_report.compare(records)
    scenarios = [r for r in records if not r.get("sweep")]
    levels = [r for r in records if r.get("sweep")]
    envs = [r["environment"] for r in records if "environment" in r] or [environment()]
    env = dict(envs[0])
    env["blas"] = list({b["filepath"]: b for e in envs for b in e["blas"]}.values())
    commands_file = out_dir / "raw" / "absorb" / "commands.txt"
    commands = commands_file.read_text().splitlines() if commands_file.exists() else []
    if command and command not in commands:
        commands.append(command)
        commands_file.parent.mkdir(parents=True, exist_ok=True)
        commands_file.write_text("\n".join(commands) + "\n")
    md = absorb_report.markdown(scenarios, levels, env, commands)
    (out_dir / "absorb.md").write_text(md)
    if levels:
        absorb_report.levels_figure(levels, str(out_dir / "absorb_levels.png"))
    print(f"wrote {out_dir / 'absorb.md'}" + (" and absorb_levels.png" if levels else ""))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "what", nargs="?", default="all", choices=["scenarios", "levels", "all", "report"]
    )
    ap.add_argument("--scenarios", nargs="+", default=list(absorb_data.SCENARIOS),
                    choices=absorb_data.SCENARIOS)  # fmt: skip
    for scenario, keys in SIZE_KEYS.items():
        default = absorb_data.DEFAULT_SIZES[scenario]
        ap.add_argument(
            f"--{scenario}",
            type=_sizes(scenario),
            default=default,
            help=f"{'x'.join(keys)} (default {'x'.join(str(default[k]) for k in keys)})",
        )
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                    help="firm x year responses (gravity, retail: Poisson)")  # fmt: skip
    ap.add_argument("--levels", nargs="+", type=_count, default=[1000, 10_000, 100_000, 1_000_000],
                    help="firms in the levels sweep (Poisson, firm + year)")  # fmt: skip
    ap.add_argument("--level-years", type=int, default=5, help="years in the levels sweep")
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    ap.add_argument("--repeat", type=int, default=1, help="timed fits per run (median)")
    ap.add_argument("--small-sample", default="true", choices=["true", "false", "fixest"],
                    help="panelglm small_sample (fixest: if accepted)")  # fmt: skip
    ap.add_argument("--pyfixest-max-cells", type=float, default=2e7,
                    help="skip pyfixest on larger panels (its long frame and copies)")  # fmt: skip
    ap.add_argument("--profile", action="store_true", help="cProfile one more panelglm fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    ap.add_argument("--threads", type=int, default=None,
                    help="set OMP/OPENBLAS/MKL_NUM_THREADS in the children")  # fmt: skip
    ap.add_argument(
        "--data-dir", default=None, help="where to write the panels (default: a temp dir)"
    )
    ap.add_argument("--keep-data", action="store_true", help="keep the generated parquet files")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    command = ""
    if args.what != "report":
        run(args)
        tail = sys.argv[1:] if argv is None else list(argv)
        command = "python benchmarks/bench_absorb.py " + shlex.join(tail)
    write_report(out_dir, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
