"""Benchmark panelglm against scikit-learn, glum and statsmodels on 3-D Poisson panels.

Usage (from the repository root; see benchmarks/README.md)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/run.py --sizes 20 50 100 --p 10
    python benchmarks/run.py --smoke      # seconds; exit status 1 if a library disagrees

Every (library, size) pair is fitted in its own child process (``fitters.py``), which
regenerates the same data from the seed, so its peak RSS is that library's alone.
Outputs go to ``--out-dir`` (default ``benchmarks/results``): ``results.md``,
``benchmark.png`` and one JSON record per run in ``raw/``.

:func:`run_smoke` is the entry point for the test suite: a tiny panel, fitted
in-process (no timing, no memory), returning whether every library agrees with
panelglm to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

try:
    from benchmarks import datagen, fitters, report
except ModuleNotFoundError:  # run as a script: python benchmarks/run.py
    import datagen
    import fitters
    import report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SMOKE_SHAPE = (6, 5, 4)
SMOKE_P = 2


def parse_size(text: str) -> tuple[int, int, int]:
    """``"50"`` -> ``(50, 50, 50)``; ``"20x30x40"`` -> ``(20, 30, 40)``."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not all(s.isdigit() and int(s) > 0 for s in parts):
        raise argparse.ArgumentTypeError(f"size must be n or IxJxK, got {text!r}")
    return tuple(int(s) for s in parts)  # type: ignore[return-value]


def _base_record(lib: str, shape: tuple[int, int, int], p: int, seed: int) -> dict[str, Any]:
    return {
        "lib": lib,
        "shape": list(shape),
        "p": p,
        "seed": seed,
        "N": int(shape[0] * shape[1] * shape[2]),
        "P": 11 + 3 * p,
    }


def _raw_path(raw_dir: Path, lib: str, shape: tuple[int, int, int], p: int, seed: int) -> Path:
    return raw_dir / f"{'x'.join(map(str, shape))}_p{p}_s{seed}_{lib.replace(' ', '_')}.json"


def threads_label(n_threads: int) -> str:
    """The library name of a panelglm run with ``--n-threads``, as the report lists it."""
    return f"panelglm n_threads={n_threads}"


def spawn(
    script: Path,
    script_args: Sequence[str],
    out: Path,
    base: dict[str, Any],
    timeout: float,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter that writes its JSON record to ``out``.

    The child gets this working tree's panelglm first on its path and, with
    ``threads``, its BLAS / OpenMP thread counts. Returns the child's record
    (with ``wall_s``), or ``base`` with ``status="failed"`` and the reason (timeout,
    non-zero exit, a signal such as the kernel's out-of-memory SIGKILL); a
    failure's record is written to ``out`` too.
    """
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), *script_args, "--out", str(out)]
    env = dict(os.environ)
    # The working tree's panelglm, whether or not it is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        rec = dict(base)
        rec.update(status="failed", reason=f"timed out after {timeout:g} s")
        out.write_text(json.dumps(rec, indent=1))
        return rec
    if proc.returncode == 0 and out.exists():
        rec = json.loads(out.read_text())
        rec["wall_s"] = time.perf_counter() - t0
        return rec
    rec = dict(base)
    if proc.returncode < 0:
        why = f"killed by {signal.Signals(-proc.returncode).name}"
        why += " (out of memory?)" if proc.returncode == -signal.SIGKILL else ""
    else:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        why = f"exit {proc.returncode}: {tail[:200]}"
    rec.update(status="failed", reason=why, stderr=proc.stderr[-4000:])
    out.write_text(json.dumps(rec, indent=1))
    return rec


def _child(
    lib: str,
    shape: tuple[int, int, int],
    p: int,
    args: argparse.Namespace,
    raw_dir: Path,
    n_threads: int | None = None,
) -> dict[str, Any]:
    """Run one fit in a fresh interpreter and return its record (or why it has none).

    With ``n_threads`` (panelglm only), the record is listed as
    :func:`threads_label` says, beside the run with panelglm's default.
    """
    script_args = [
        "--lib",
        lib,
        "--shape",
        *map(str, shape),
        "--p",
        str(p),
        "--seed",
        str(args.seed),
        "--repeat",
        str(args.repeat),
        "--repeat-budget",
        str(args.repeat_budget),
        "--max-gb",
        str(args.max_gb),
    ]
    label = lib
    if n_threads is not None:
        script_args += ["--n-threads", str(n_threads)]
        label = threads_label(n_threads)
    out = _raw_path(raw_dir, label, shape, p, args.seed)
    rec = spawn(
        HERE / "fitters.py",
        script_args,
        out,
        _base_record(label, shape, p, args.seed),
        args.timeout,
        args.threads,
    )
    if rec["lib"] != label:  # the child names the library; --merge reads the file again
        rec["lib"] = label
        out.write_text(json.dumps(rec, indent=1))
    return rec


def run_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fit every requested library at every requested size; return the records."""
    ps = args.p * len(args.sizes) if len(args.p) == 1 else args.p
    if len(ps) != len(args.sizes):
        raise SystemExit("--p takes one value, or one per size")
    for shape, p in zip(args.sizes, ps, strict=True):
        if p < 0 or p + 1 > min(shape):
            raise SystemExit(f"size {shape} cannot take p={p}: need p + 1 <= min(I, J, K)")
    raw_dir = Path(args.out_dir) / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for shape, p in zip(args.sizes, ps, strict=True):
        for lib in args.libs:
            nbytes = datagen.dense_nbytes(shape, p, intercept=lib == "statsmodels")
            if lib != "panelglm" and nbytes > args.max_gb * 1e9:
                rec = _base_record(lib, shape, p, args.seed)
                rec.update(
                    status="skipped",
                    reason=f"dense matrix {nbytes / 1e9:.3g} GB > --max-gb {args.max_gb:g}",
                    dense_bytes=nbytes,
                )
                path = _raw_path(raw_dir, lib, shape, p, args.seed)
                path.write_text(json.dumps(rec, indent=1))
            else:
                print(f"{'x'.join(map(str, shape))} p={p} {lib} ...", end=" ", flush=True)
                rec = _child(lib, shape, p, args, raw_dir)
            records.append(rec)
            print(_summary(rec), flush=True)
            for n in args.n_threads if lib == "panelglm" else []:
                print(f"{'x'.join(map(str, shape))} p={p} {threads_label(n)} ...", end=" ")
                records.append(_child(lib, shape, p, args, raw_dir, n_threads=n))
                print(_summary(records[-1]), flush=True)
    return records


def _summary(rec: dict[str, Any]) -> str:
    if rec["status"] != "ok":
        return f"{rec['lib']}: {rec['status']}: {rec.get('reason', '')}"
    return (
        f"{rec['lib']}: fit {rec['fit_s']:.3g} s, {rec['n_iter']} iter, prep "
        f"{rec['prep_s']:.3g} s, peak RSS {rec['rss_peak'] / 1e9:.2f} GB"
    )


def _load_raw(raw_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted(raw_dir.glob("*.json"))]


def write_outputs(
    records: list[dict[str, Any]], out_dir: Path, command: str, figure: bool = True
) -> None:
    """Compare against panelglm, then write results.md and benchmark.png."""
    order = {lib: n for n, lib in enumerate(fitters.LIBS)}
    # a panelglm run with --n-threads right after panelglm's default one
    rank = {
        lib: order.get(lib, 0.5 if lib.startswith("panelglm") else 99)
        for lib in {r["lib"] for r in records}
    }
    records.sort(key=lambda r: (r["N"], r["p"], r["seed"], rank[r["lib"]]))
    report.compare(records)
    envs = [r["environment"] for r in records if "environment" in r] or [fitters.environment()]
    env = dict(envs[0])
    # every BLAS / OpenMP runtime any child loaded, once each
    env["blas"] = list({b["filepath"]: b for e in envs for b in e["blas"]}.values())
    (out_dir / "results.md").write_text(report.markdown(records, env, command))
    if figure:
        report.figure(records, str(out_dir / "benchmark.png"))


def run_smoke(
    shape: tuple[int, int, int] = SMOKE_SHAPE,
    p: int = SMOKE_P,
    seed: int = 0,
    libs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fit a tiny panel with panelglm and the peers, in this process; check agreement.

    Correctness only: one fit per library, no step timing, and the memory figures
    are this process's, not each library's.

    Parameters
    ----------
    shape : tuple of three ints, default=(6, 5, 4)
    p : int, default=2
    seed : int, default=0
    libs : sequence of str, optional
        Default: panelglm, sklearn-newton-cholesky, statsmodels, and glum if it
        can be imported.

    Returns
    -------
    dict
        ``ok``: every library ran and agrees with panelglm within 1e-6 (max absolute
        coefficient difference, matched by name, intercept included);
        ``max_abs_diff``: library -> that difference; ``records``: the full records.
    """
    if libs is None:
        libs = ["panelglm", "sklearn-newton-cholesky", "statsmodels"]
        libs += ["glum"] if find_spec("glum") is not None else []
    records = [fitters.run_one(lib, shape, p, seed, repeat=1, step_timing=False) for lib in libs]
    report.compare(records)
    diffs = {r["lib"]: r["max_abs_diff"] for r in records if r["lib"] != "panelglm"}
    ok = all(r["check"] in ("ok", "reference") for r in records) and "panelglm" in libs
    return {"ok": ok, "tol": report.COEF_TOL, "max_abs_diff": diffs, "records": records}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size("20"), parse_size("50"), parse_size("100")],
        help="n (I=J=K=n) or IxJxK",
    )
    ap.add_argument(
        "--p",
        nargs="+",
        type=int,
        default=[10],
        help="columns per i/j/k block: one value, or one per size (P = 11 + 3p)",
    )
    ap.add_argument("--libs", nargs="+", choices=fitters.LIBS, default=list(fitters.LIBS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="fits per run (median reported)")
    ap.add_argument(
        "--repeat-budget",
        type=float,
        default=30.0,
        help="start no further repeat once this many seconds of fitting passed",
    )
    ap.add_argument(
        "--max-gb",
        type=float,
        default=6.0,
        help="skip a peer whose dense matrix would exceed this many GB",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="set OMP/OPENBLAS/MKL_NUM_THREADS in the children (default: as inherited)",
    )
    ap.add_argument(
        "--n-threads",
        nargs="+",
        type=int,
        default=[],
        help="also fit panelglm with each of these n_threads (e.g. 1 2), "
        "listed as 'panelglm n_threads=N' beside its default run",
    )
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument(
        "--merge",
        action="store_true",
        help="report every record in OUT_DIR/raw, not only this run's",
    )
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help=f"{'x'.join(map(str, SMOKE_SHAPE))}, p={SMOKE_P}, in-process; exit 1 on disagreement",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.smoke:
        res = run_smoke()
        for lib, diff in res["max_abs_diff"].items():
            print(f"{lib:25s} max |coef - panelglm| = {diff}")
        print("smoke:", "ok" if res["ok"] else "LIBRARIES DISAGREE")
        return 0 if res["ok"] else 1
    out_dir = Path(args.out_dir)
    records = run_benchmark(args)
    if args.merge:
        fresh = {(*report.group_key(r), r["lib"]) for r in records}
        records += [
            r for r in _load_raw(out_dir / "raw") if (*report.group_key(r), r["lib"]) not in fresh
        ]
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_outputs(records, out_dir, command, figure=not args.no_figure)
    print(f"wrote {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
