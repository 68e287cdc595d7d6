"""Dask-backed float32 cells: the passes' tasks read them as stored, the fit is unchanged.

The layout converts a Dataset's float32 variables to float64 lazily and
remembers the stored values; the tasks of the passes the compiled sweep runs
read those (half the bytes, no converted copy of a chunk), every other task
converts them. The fit must equal the in-memory fit of the same Dataset to
1e-10, for every family, with weights, trials and gaps.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from dask_helpers import CASES, da, fit_design, guard_cells, make_dataset

import panelglm._engine.compiled as compiled
from panelglm._engine import dask_slabs
from panelglm._util.lazy import as_float64, carry, stored


@pytest.fixture(autouse=True)
def no_cells_on_the_client(monkeypatch):
    return guard_cells(monkeypatch)


def test_a_converted_array_remembers_its_stored_values():
    narrow = da.arange(24, chunks=6).astype(np.float32) / 7
    wide = as_float64(narrow)
    assert wide.dtype == np.float64 and stored(wide) is narrow
    # Carried through moves that keep the values: float64 of the stored result
    # is the result.
    grid = carry(lambda v: v.reshape(2, 3, 4), wide)
    assert stored(grid).dtype == np.float32
    np.testing.assert_array_equal(stored(grid).compute().astype(np.float64), grid.compute())
    mask = (da.arange(24, chunks=6) % 5 > 0).reshape(2, 3, 4)
    masked = carry(lambda v: da.where(mask, v, 0.0), grid)
    np.testing.assert_array_equal(stored(masked).compute().astype(np.float64), masked.compute())
    # Nothing to carry: float64 values, or a result that is not float32.
    plain = as_float64(da.arange(4.0, chunks=2))
    assert stored(plain) is plain
    moved = carry(lambda v: v.reshape(2, 2), plain)
    assert stored(moved) is moved
    mixed = carry(lambda a, b: da.stack([a, b], axis=-1), wide, plain.repeat(6))
    assert stored(mixed) is mixed
    # An entry goes with its array.
    key = id(grid)
    del grid, masked
    gc.collect()
    from panelglm._util import lazy

    assert key not in lazy._STORED


def test_a_fill_is_carried_only_where_float32_holds_it():
    from panelglm._util.lazy import _float32_holds

    assert _float32_holds(0.0) and _float32_holds(1.0) and _float32_holds(-0.5)
    # numpy would say np.float32(0.1) == 0.1 (compared in float32); 1e40 overflows
    assert not _float32_holds(0.1) and not _float32_holds(1e40)
    assert not _float32_holds(float("nan"))


def _float32(ds):
    names = ["count", "bought", "spend", "amount", "promo", "discount", "trials", "w"]
    return ds.assign({name: ds[name].astype(np.float32) for name in names})


@pytest.mark.parametrize("family", list(CASES))
def test_float32_cells_give_the_in_memory_fit(family, monkeypatch):
    make, target = CASES[family]
    ds = _float32(make_dataset(gaps=True))
    cluster = ["customer", ("product", "week")]
    ref = fit_design(make, ds, target, "w", cov_type="cluster", cluster=cluster)
    read = []  # per compiled slab engine: whether its sweep reads the stored float32 cells
    real = dask_slabs.CompiledEngine

    def engine(spec, *args, **kwargs):
        w32 = spec.w is None or spec.w.dtype == np.float32
        x32 = all(spec.values[i].dtype == np.float32 for i in spec.plan.full)
        read.append(spec.y.dtype == np.float32 and w32 and x32)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(dask_slabs, "CompiledEngine", engine)
    est = fit_design(
        make, ds.chunk({"customer": 4}), target, "w", cov_type="cluster", cluster=cluster
    )
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    for attr in ("deviance_", "null_deviance_", "loglik_"):
        assert getattr(est, attr) == pytest.approx(getattr(ref, attr), rel=1e-10), attr
    sweep = compiled.enabled()  # (the gamma and negative binomial fits sweep too)
    # The loss and the full passes after the first read the stored cells where
    # the sweep runs them; the first full pass (with the response's sums) float64.
    assert any(read) == sweep
    assert not sweep or not all(read)
