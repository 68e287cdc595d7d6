"""The benchmark's smoke mode: every library agrees with panelglm on a tiny panel.

Correctness only; the benchmark's timings are never asserted in tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_benchmark_smoke_libraries_agree(monkeypatch):
    pytest.importorskip("statsmodels")
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.run import run_smoke

    result = run_smoke()
    assert result["ok"], result
    assert result["tol"] <= 1e-6
    peers = result["max_abs_diff"]
    assert {"sklearn-newton-cholesky", "statsmodels"} <= set(peers)
    assert all(diff < result["tol"] for diff in peers.values()), peers


def test_step_clock_times_each_solve_and_puts_the_solver_back(monkeypatch):
    """The benchmark's Newton step is timed inside the solver (one entry per fit)."""
    import time

    monkeypatch.syspath_prepend(str(ROOT))
    import panelglm._estimators.base as base
    from benchmarks import datagen, fitters

    panel = datagen.make_panel((6, 5, 4), p=2, seed=0)
    fit, _ = fitters._prepare_panelglm(panel, None)
    inner, steps = base.newton_solve, []
    with fitters._solver_clock(steps):
        t0 = time.perf_counter()
        result = fit()
        total = time.perf_counter() - t0
    assert base.newton_solve is inner
    assert len(steps) == 1 and 0 < steps[0] < total / result["n_iter"]
    with pytest.raises(RuntimeError), fitters._solver_clock(steps):
        raise RuntimeError  # the solver is put back on the way out of an error too
    assert base.newton_solve is inner
