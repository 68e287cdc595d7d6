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
