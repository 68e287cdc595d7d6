"""Dask-backed Datasets: every pass a task per slab, the same fit as in memory.

Each fit is compared with the same Dataset loaded into memory, to 1e-10;
a guard fails any test that reads a cell-level Dask array onto the client.
"""

from __future__ import annotations

import numpy as np
import pytest
from dask_helpers import CASES, DIMS, SHAPE, da, dask, fit_design, guard_cells, make_dataset, xr

from panelglm import (
    PanelDesign,
    PanelNegativeBinomialRegressor,
    PanelPoissonRegressor,
)


@pytest.fixture(autouse=True)
def no_cells_on_the_client(monkeypatch):
    return guard_cells(monkeypatch)


@pytest.mark.parametrize("family", list(CASES))
@pytest.mark.parametrize("gaps, weight", [(False, None), (True, "w")])
def test_a_dask_fit_equals_the_in_memory_fit(family, gaps, weight, no_cells_on_the_client):
    """Coefficients, standard errors (cluster by customer and by product x week) and
    statistics equal the in-memory fit's to 1e-10, with offsets, weights and gaps."""
    make, target = CASES[family]
    ds = make_dataset(gaps=gaps)
    chunked = ds.chunk({"customer": 4})
    cluster = ["customer", ("product", "week")]
    ref = fit_design(make, ds, target, weight, cov_type="cluster", cluster=cluster)
    assert not no_cells_on_the_client  # the in-memory fit computes nothing lazily
    est = fit_design(make, chunked, target, weight, cov_type="cluster", cluster=cluster)
    assert no_cells_on_the_client  # the Dask fit ran its passes as tasks
    assert est.coef_names_ == ref.coef_names_
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-10)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    for attr in ("deviance_", "null_deviance_", "loglik_", "scale_"):
        assert getattr(est, attr) == pytest.approx(getattr(ref, attr), rel=1e-10), attr
    assert est.n_iter_ == ref.n_iter_


def test_fixed_effects_and_separated_levels(no_cells_on_the_client):
    """Indicator blocks, a categorical covariate and a separated level (a customer
    with no purchases) are found and dropped as in memory; a covariate collinear
    with the fixed effects is dropped with the same warning."""
    ds = make_dataset()
    ds["count"][2] = 0.0  # customer 20 never buys: its effect is separated
    ds["segment"] = (("product",), np.array(["n", "s", "s", "e"]))
    make = lambda: PanelPoissonRegressor(  # noqa: E731
        dims=DIMS, fixed_effects=["customer"], offset="log_exposure"
    )
    data = ds.drop_vars(["bought", "spend", "amount", "w", "trials"])
    with pytest.warns(Warning, match="Separation"):
        with pytest.warns(Warning, match="Collinearity.*'income'"):
            ref = make().fit(data, "count")
    with pytest.warns(Warning, match="Separation"):
        with pytest.warns(Warning, match="Collinearity.*'income'"):
            est = make().fit(data.chunk({"customer": 5}), "count")
    assert est.coef_names_ == ref.coef_names_
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    assert int(est.separated_rows_.sum()) == int(ref.separated_rows_.sum()) == 20


def test_predict_and_score_on_a_dask_dataset(monkeypatch):
    """predict gives a Dask-backed DataArray over the panel (computed only when
    asked) equal to the in-memory prediction; score equals the in-memory score."""
    ds = make_dataset()
    data = ds.drop_vars(["bought", "spend", "amount", "trials"])
    make = lambda: PanelPoissonRegressor(dims=DIMS, offset="log_exposure")  # noqa: E731
    ref = make().fit(data, "count")
    chunked = data.chunk({"customer": 4})
    est = make().fit(chunked, "count")
    pred = est.predict(chunked)
    assert isinstance(pred, xr.DataArray) and dask.is_dask_collection(pred.data)
    assert est.score(chunked, "count") == pytest.approx(ref.score(data, "count"), rel=1e-10)
    monkeypatch.undo()  # the caller computes the prediction: now it may reach the client
    expected = ref.predict(data)
    np.testing.assert_allclose(pred.values, expected.values, rtol=1e-10)


def test_a_local_cluster_of_two_processes_gives_the_same_fit():
    """The passes run on a dask.distributed LocalCluster (two worker processes)."""
    distributed = pytest.importorskip("distributed")
    ds = make_dataset(gaps=True)
    data = ds.drop_vars(["bought", "spend", "amount", "trials"])
    make = lambda: PanelPoissonRegressor(  # noqa: E731
        dims=DIMS, offset="log_exposure", cov_type="cluster", cluster="product"
    )
    design = PanelDesign(dims=DIMS, balanced=False)
    ref = make().fit(design.fit_transform(data, data["count"]), data["count"], sample_weight="w")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        chunked = data.chunk({"customer": 4})
        layout = PanelDesign(dims=DIMS, balanced=False).fit_transform(chunked, chunked["count"])
        est = make().fit(layout, chunked["count"], sample_weight="w")
        ran = client.run(lambda dask_worker: len(dask_worker.data) + 1)
    assert len(ran) == 2
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PanelPoissonRegressor(dims=DIMS, absorb=["customer"]), "absorb="),
    ],
)
def test_models_without_a_dask_form_say_so_before_any_pass(make, match, monkeypatch):
    from panelglm._engine import dask_engine

    monkeypatch.setattr(dask_engine, "DaskEngine", None)  # no engine may be made
    data = (
        make_dataset()
        .drop_vars(["bought", "spend", "amount", "trials", "w"])
        .chunk({"customer": 4})
    )
    with pytest.raises(ValueError, match=f"{match}.*Dask-backed data.*load"):
        make().fit(data, "count")


def test_the_exponential_model_equals_the_in_memory_fit():
    """Durations with censoring: log T enters every pass as an offset read slab by slab."""
    from panelglm import PanelExponentialRegressor

    ds = make_dataset(gaps=True)
    ds["event"] = (DIMS, (ds["count"].fillna(0).values > 0).astype(float))
    data = ds.drop_vars(["bought", "spend", "count", "trials"])
    make = lambda: PanelExponentialRegressor(  # noqa: E731
        dims=DIMS, event="event", cov_type="cluster", cluster="customer"
    )
    design = PanelDesign(dims=DIMS, balanced=False)
    ref = make().fit(design.fit_transform(data, data["amount"]), data["amount"], sample_weight="w")
    chunked = data.chunk({"customer": 4})
    layout = PanelDesign(dims=DIMS, balanced=False).fit_transform(chunked, chunked["amount"])
    est = make().fit(layout, chunked["amount"], sample_weight="w")
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    for attr in ("deviance_", "loglik_"):
        assert getattr(est, attr) == pytest.approx(getattr(ref, attr), rel=1e-10), attr


def test_separation_by_a_covariate_is_certified_and_dropped(no_cells_on_the_client):
    """A covariate positive only where y = 0 separates those cells: on Dask the
    certificate runs on the slabs and drops the same cells as in memory."""
    from panelglm.exceptions import SeparationWarning

    ds = make_dataset()
    zeros = np.argwhere(ds["count"].values == 0)[:5]
    z = np.zeros(SHAPE)
    z[tuple(zeros.T)] = 1.0
    ds["z"] = (DIMS, z)
    data = ds.drop_vars(["bought", "spend", "amount", "trials", "w", "discount"])
    make = lambda: PanelPoissonRegressor(dims=DIMS, offset="log_exposure")  # noqa: E731
    with pytest.warns(SeparationWarning, match="'z' separate.*5 row"):
        ref = make().fit(data, "count")
    with pytest.warns(SeparationWarning, match="'z' separate.*5 row"):
        est = make().fit(data.chunk({"customer": 4}), "count")
    assert est.collinear_names_ == ref.collinear_names_ == ["z"]
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    dropped = da.flatnonzero(est.separated_rows_).compute()  # lazy rows: their positions
    np.testing.assert_array_equal(dropped, np.flatnonzero(ref.separated_rows_))


@pytest.mark.parametrize("chunks", [{"week": 2}, {"customer": 3, "product": 2}, {"customer": 1}])
def test_any_chunking_and_float32_give_the_same_fit(chunks):
    """Chunks along other dimensions are rechunked to slabs of the first; a
    float32 fit equals the in-memory float32 fit."""
    data = make_dataset().drop_vars(["bought", "spend", "amount", "trials", "w"])
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        params = {"dims": DIMS, "offset": "log_exposure", "dtype": dtype}
        ref = PanelPoissonRegressor(**params).fit(data, "count")
        est = PanelPoissonRegressor(**params).fit(data.chunk(chunks), "count")
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(est.bse_, ref.bse_, rtol=rtol)


@pytest.mark.parametrize("family", ["poisson", "logit", "gamma"])
def test_robust_standard_errors_equal_the_in_memory_ones(family):
    """The sandwich's meat over every cell (a pass with the squared scores as curvature)."""
    make, target = CASES[family]
    ds = make_dataset(gaps=True)
    ref = fit_design(make, ds, target, "w", cov_type="robust")
    est = fit_design(make, ds.chunk({"customer": 4}), target, "w", cov_type="robust")
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)


def test_the_negative_binomial_with_theta_estimated():
    """theta's search takes its sums by passes over the slabs: the same theta,
    coefficients and standard errors as in memory."""
    ds = make_dataset(gaps=True)
    rng = np.random.default_rng(7)
    mu = np.exp(0.3 + 0.5 * ds["promo"].values)
    ds["visits"] = (DIMS, rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float))
    ds["visits"] = ds["visits"].where(~np.isnan(ds["count"]))
    data = ds.drop_vars(["bought", "spend", "amount", "trials", "count"])
    make = lambda: PanelNegativeBinomialRegressor(dims=DIMS, theta=None)  # noqa: E731
    design = PanelDesign(dims=DIMS, covariates=["promo", "discount"], balanced=False)
    ref = make().fit(design.fit_transform(data, data["visits"]), data["visits"], sample_weight="w")
    chunked = data.chunk({"customer": 4})
    layout = PanelDesign(dims=DIMS, covariates=["promo", "discount"], balanced=False)
    est = make().fit(
        layout.fit_transform(chunked, chunked["visits"]), chunked["visits"], sample_weight="w"
    )
    assert est.theta_ == pytest.approx(ref.theta_, rel=1e-10)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)


def test_a_slab_of_one_chunk_is_read_without_a_copy_and_read_only():
    from panelglm._engine.dask_slabs import Cells

    base = np.arange(24.0).reshape(4, 3, 2)
    # Blocks that are the memory of arrays held elsewhere, as a reader's may be.
    halves = [da.from_delayed(dask.delayed(base[k : k + 2]), (2, 3, 2), float) for k in (0, 2)]
    arr = da.concatenate(halves)
    one = Cells(arr[0:2]).load()
    np.testing.assert_array_equal(one, base[:2])
    assert np.shares_memory(one, base)  # the block itself, as its task made it
    assert not one.flags.writeable  # so no pass can write into the memory behind it
    two = Cells(arr[1:3]).load()  # across two chunks: computed and joined
    np.testing.assert_array_equal(two, base[1:3])


@pytest.mark.parametrize("per_task", [13, 3])
def test_tasks_of_several_slabs_give_the_same_fit(per_task, monkeypatch, no_cells_on_the_client):
    """One task reads a group of slabs one after the other and joins their sums:
    one task for all 13 slabs, or groups of 3 (the last of one), then the tree."""
    import panelglm._engine.dask_accumulators as dask_accumulators
    import panelglm._engine.dask_engine as dask_engine
    import panelglm._engine.dask_slabs as dask_slabs

    monkeypatch.setattr(dask_engine, "TASK_CELLS", per_task * int(np.prod(SHAPE[1:])))
    monkeypatch.setattr(dask_engine, "TASKS_PER_WORKER", 1)
    monkeypatch.setattr(dask_engine, "_n_workers", lambda: 1)
    groups = []
    sums, accumulators = dask_slabs.over_slabs, dask_accumulators.accumulate_slabs
    monkeypatch.setattr(dask_slabs, "over_slabs", lambda *a: groups.append(len(a[3])) or sums(*a))
    monkeypatch.setattr(
        dask_accumulators,
        "accumulate_slabs",
        lambda *a: groups.append(len(a[2])) or accumulators(*a),
    )
    make, target = CASES["poisson"]
    ds = make_dataset(gaps=True)
    cluster = ["customer", ("product", "week")]
    ref = fit_design(make, ds, target, "w", cov_type="cluster", cluster=cluster)
    est = fit_design(
        make, ds.chunk({"customer": 1}), target, "w", cov_type="cluster", cluster=cluster
    )
    n_slabs = SHAPE[0] - 1  # customer 7 has no data: not a level
    assert max(groups) == min(per_task, n_slabs) and sum(groups) % n_slabs == 0
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)
    assert est.deviance_ == pytest.approx(ref.deviance_, rel=1e-10)


def test_slabs_per_task():
    from panelglm._engine.dask_engine import TASK_CELLS, _slabs_per_task, _task_groups

    # 125 slabs of 8e6 cells on 2 workers: 4 by size (2^25 cells), 15 by workers.
    assert _slabs_per_task([8] * 125, 10**6, 2) == TASK_CELLS // (8 * 10**6) == 4
    assert _slabs_per_task([1] * 40, 10, 2) == 40 // 8  # small slabs: by workers
    assert _slabs_per_task([1] * 7, 10, 2) == 1  # fewer slabs than 4 a worker
    assert _slabs_per_task([100] * 500, 10**6, 2) == 1  # slabs beyond TASK_CELLS
    # Runs of 4, then the last 4 x 2 slabs one a task; every slab once, in order.
    groups = _task_groups(125, 4, 2)
    assert [len(g) for g in groups] == [4] * 29 + [1] * 9
    assert [i for g in groups for i in g] == list(range(125))
    assert [len(g) for g in _task_groups(12, 4, 2)] == [4, 4, 4]  # too few for a tail


def test_joins_add_into_the_first_part_only():
    from panelglm._engine.dask_accumulators import join

    a, b, c = np.ones(3), np.full(3, 2.0), np.full(3, 4.0)
    c.flags.writeable = False  # as a part received from another process may be
    firsts = [np.arange(2.0), np.arange(2.0, 4.0)]
    total, out = join(
        (None, 0), (1.0, [c, firsts[0]]), (2.0, [a, firsts[1]]), (3.0, [b, firsts[0]])
    )
    assert total == 6.0
    np.testing.assert_array_equal(out[0], [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(out[1], [0.0, 1.0, 2.0, 3.0, 0.0, 1.0])
    np.testing.assert_array_equal(c, [4.0, 4.0, 4.0])  # read-only: copied, not written
    np.testing.assert_array_equal(a, [1.0, 1.0, 1.0])  # the other parts are read only
    np.testing.assert_array_equal(b, [2.0, 2.0, 2.0])
    total, out = join((None,), (0.0, [a]), (0.0, [b]))
    assert out[0] is a and np.array_equal(a, [3.0, 3.0, 3.0])  # a writable first part: in place


def test_slabs_share_parts_only_within_one_fit():
    import gc

    from panelglm._engine import dask_slabs

    class Skel:  # a stand-in: only its identity matters
        pass

    one, two = Skel(), Skel()
    parts = dask_slabs._shared_parts(one)
    assert dask_slabs._shared_parts(one) is parts
    parts[0] = np.ones(3)
    other = dask_slabs._shared_parts(two)
    assert other is not parts and parts == {}  # the first fit's parts are let go
    other[0] = np.ones(3)
    del two
    gc.collect()
    assert other == {}  # and none are kept once the fit is gone


def test_a_lazy_weight_broadcast_over_cells_gives_the_same_fit(no_cells_on_the_client):
    """A block that is not C-contiguous (a weight broadcast along the cells) reaches
    the slab engines as it is; the fit equals the in-memory one."""
    ds = make_dataset()
    by_customer = np.linspace(0.5, 2.0, SHAPE[0])
    w_mem = xr.DataArray(np.broadcast_to(by_customer[:, None, None], SHAPE), dims=DIMS)
    lazy_w = da.broadcast_to(da.from_array(by_customer, chunks=4)[:, None, None], SHAPE)
    w_lazy = xr.DataArray(lazy_w, dims=DIMS)
    params = {"dims": DIMS, "offset": "log_exposure"}
    data = ds.drop_vars(["bought", "spend", "amount", "trials", "w"])
    ref = PanelPoissonRegressor(**params).fit(data, "count", sample_weight=w_mem)
    est = PanelPoissonRegressor(**params).fit(
        data.chunk({"customer": 4}), "count", sample_weight=w_lazy
    )
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.bse_, ref.bse_, rtol=1e-10)


def test_the_boundary_check_reads_a_lazy_y_once():
    from dask.callbacks import Callback

    from panelglm._engine.problem import PanelProblem
    from panelglm._ident.separation import check_not_all_boundary
    from panelglm._model.families import POISSON

    y = da.from_array(np.array([[0.0, 1.0], [2.0, 0.0]]), chunks=1)
    graphs = []

    class Count(Callback):
        def _start(self, dsk):
            graphs.append(1)

    with Count():
        check_not_all_boundary(POISSON, PanelProblem((2, 2), y=y))
    assert len(graphs) == 1  # the maximum settles it, computed once
    with Count(), pytest.raises(ValueError, match="is 0 on every row"):
        check_not_all_boundary(POISSON, PanelProblem((2, 2), y=da.zeros((2, 2), chunks=1)))
