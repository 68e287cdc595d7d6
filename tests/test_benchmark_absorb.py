"""The absorbed-effects benchmark's data and its comparison with pyfixest, on tiny panels.

Correctness only; the benchmark's timings are never asserted in tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]


def test_tables_put_on_cells_equal_a_join(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import absorb_data

    sizes = {"customers": 7, "products": 3, "weeks": 4}
    meta = absorb_data.write_panel("retail", sizes, tmp_path / "a", seed=3)
    again = absorb_data.write_panel("retail", sizes, tmp_path / "b", seed=3)
    cells, y = absorb_data.read_cells(tmp_path / "a", meta, "poisson")
    cells_b, y_b = absorb_data.read_cells(tmp_path / "b", again, "poisson")
    pd.testing.assert_frame_equal(cells, cells_b)  # the seed fixes the data
    assert len(cells) == 7 * 3 * 4 and y.equals(y_b)
    tables = absorb_data.read_tables(tmp_path / "a", meta)
    # the reference: pandas joins on the shuffled cells
    shuffled = cells.sample(frac=1.0, random_state=0).reset_index(drop=True)
    expected = shuffled.merge(tables[("customer", "product")], on=["customer", "product"])
    expected = expected.merge(tables[("customer", "week")], on=["customer", "week"])
    absorb_data.expand_tables(shuffled, tables, meta)
    key = ["customer", "product", "week"]
    got = shuffled.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(key).reset_index(drop=True))


def test_gravity_panelglm_and_pyfixest_agree(monkeypatch, tmp_path):
    pytest.importorskip("pyfixest")
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import absorb_data, absorb_report
    from benchmarks.absorb_fitters import run_one

    sizes = {"exporters": 8, "years": 4}
    absorb_data.write_panel("gravity", sizes, tmp_path, seed=1)
    records = [run_one(lib, tmp_path, "poisson") for lib in ("panelglm", "pyfixest")]
    absorb_report.compare(records)
    ref, pfx = records
    assert ref["nobs"] == pfx["nobs"]
    assert set(ref["coef"]) == {"rta", "tariff"}
    assert pfx["max_rel_coef"] < 1e-8
    # The pair-clustered SEs differ by the small-sample conventions alone:
    # panelglm's k counts the pair effect's levels, pyfixest's df_k one level.
    n, k, g = ref["nobs"], ref["n_params"], pfx["n_clusters"][0]
    expected = math.sqrt(pfx["ssc"][0] / (g / (g - 1) * (n - 1) / (n - k)))
    assert pfx["se_ratio_expected"] == pytest.approx(expected, rel=1e-12)
    assert expected < 0.99  # the conventions do differ here
    np.testing.assert_allclose(list(pfx["se_ratio"].values()), expected, rtol=1e-6)
    assert "| gravity | poisson | 8 x 8 x 4 |" in absorb_report.markdown(records, [], {}, [])
