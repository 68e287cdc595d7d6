"""The compiled sweep's interface: arrays checked on the C side, buffers lent and given back.

The sweep receives its operands as arrays (the buffer protocol) and indices
into them, never addresses: whatever Python hands it, a mistake is a
ValueError or TypeError, not a crash. The accumulators of a pass live in
buffers its kernel lends: reused only once given back, whatever the
interpreter's reference counts say.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import panelglm._engine.compiled as compiled
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.blocks import DenseBlock
from panelglm._model.factored import FactoredDesign
from panelglm._model.families import POISSON

needs_sweep = pytest.mark.skipif(compiled._sweep is None, reason="compiled sweep not built")
# Passes run by the sweep: built, and not switched off by PANELGLM_NUMPY_PASS.
needs_compiled_passes = pytest.mark.skipif(not compiled.enabled(), reason="numpy passes")

_ONE = int(np.float64(1.0).view(np.int64))


def _run(words, operands, s=0, e=None, derivs=False):
    e = words[1] if e is None else e  # the grid's first axis
    return compiled._sweep.sweep(np.asarray(words, dtype=np.int64), operands, s, e, derivs)


def _loss_words(shape, y=0, term=1, w=-1):
    """A Poisson loss-only sweep over ``shape``: y, weights and one term by their indices."""
    return [len(shape), *shape, 0, 1, 0, y, w, -1, _ONE, term]


def _sum_words(shape, out=2, kind=compiled.SUM):
    """A full Poisson sweep with one op: the curvature ``exp(eta)`` added into ``out``."""
    return [len(shape), *shape, 0, 1, 1, 0, -1, -1, _ONE, 1, 0, -1, 1, kind, out]


def _grid(shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return np.zeros(shape), rng.normal(scale=0.5, size=shape)


@needs_sweep
def test_the_sweep_reads_the_arrays_it_is_handed():
    """The reference the refusals below are told apart from: the same call, well formed."""
    y, x = _grid()
    assert _run(_loss_words(x.shape), [y, x]) == pytest.approx(-np.exp(x).sum(), rel=1e-14)
    # Broadcast operands (size 1 along an axis) and strided views are read in place.
    xt = np.asfortranarray(x)
    assert _run(_loss_words(x.shape), [np.zeros((1, 1)), xt]) == pytest.approx(
        -np.exp(x).sum(), rel=1e-14
    )
    out = np.zeros((1, 1))
    _run(_sum_words(x.shape), [y, x, out], derivs=True)
    assert out[0, 0] == pytest.approx(np.exp(x).sum(), rel=1e-14)
    rows = np.zeros((1, 4))
    _run(_sum_words(x.shape, kind=compiled.ROW), [y, x, rows], derivs=True)
    np.testing.assert_allclose(rows[0], np.exp(x).sum(axis=0), rtol=1e-14)


@needs_sweep
@pytest.mark.parametrize(
    ("operand", "message"),
    [
        (np.zeros((3, 4), dtype=np.float16), "operand 1 is neither float64 nor float32"),
        (np.zeros((3, 4), dtype=np.int64), "operand 1 is neither float64 nor float32"),
        (np.zeros((3, 5)), "operand 1 has an axis of neither the grid's size nor 1"),
        (np.zeros((4, 3)), "operand 1 has an axis of neither"),
        (np.zeros(12), "operand 1 does not have one axis per axis of the grid"),
        (np.zeros((1, 3, 4)), "operand 1 does not have one axis per axis of the grid"),
        (np.zeros((3, 4), dtype=[("a", "i1"), ("b", "f8")]), "operand 1 is neither float64"),
    ],
)
def test_an_input_the_sweep_cannot_read_is_a_value_error(operand, message):
    y, _ = _grid()
    with pytest.raises(ValueError, match=message):
        _run(_loss_words((3, 4)), [y, operand])


@needs_sweep
def test_misaligned_and_part_element_strides_are_refused():
    raw = np.zeros(8 * 13 + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float64)[:12].reshape(3, 4)
    assert not misaligned.flags.aligned
    with pytest.raises(ValueError, match="operand 1 is not aligned"):
        _run(_loss_words((3, 4)), [np.zeros((3, 4)), misaligned])
    packed = np.zeros(12, dtype=np.dtype([("f", "i1"), ("x", "f8")], align=False))["x"]
    assert packed.strides == (9,)
    with pytest.raises(ValueError, match=r"operand 1 (is not aligned|has strides of part)"):
        _run(_loss_words((12,)), [np.zeros(12), packed])


@needs_sweep
@pytest.mark.parametrize("operand", [None, 3.0, [[0.0] * 4] * 3, "abc"])
def test_an_operand_that_is_not_an_array_is_a_type_error(operand):
    y, _ = _grid()
    with pytest.raises(TypeError, match="sweep operand 1 is a"):
        _run(_loss_words((3, 4)), [y, operand])


@needs_sweep
def test_bytes_are_not_float64():
    y, _ = _grid()
    with pytest.raises(ValueError, match="operand 1 is neither float64 nor float32"):
        _run(_loss_words((3, 4)), [y, bytes(96)])


@needs_sweep
def test_a_read_only_output_is_refused_and_left_alone():
    y, x = _grid()
    out = np.zeros((1, 1))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="operand 2 is written"):
        _run(_sum_words(x.shape), [y, x, out], derivs=True)
    assert out[0, 0] == 0.0
    with pytest.raises(ValueError, match="operand 2 is written"):
        _run(_sum_words(x.shape), [y, x, bytes(8)], derivs=True)  # read-only exporter


@needs_sweep
def test_a_row_output_must_be_contiguous_along_the_last_axis():
    y, x = _grid()
    rows = np.zeros((1, 8))[:, ::2]
    with pytest.raises(ValueError, match="operand 2 is a row output"):
        _run(_sum_words(x.shape, kind=compiled.ROW), [y, x, rows], derivs=True)


@needs_sweep
@pytest.mark.parametrize("cut", [1, 3, 5, 8, 9])
def test_a_description_too_short_is_a_value_error(cut):
    y, x = _grid()
    words = _loss_words(x.shape)
    assert _run(words, [y, x]) < 0  # the whole description runs
    with pytest.raises(ValueError, match="malformed sweep description"):
        _run(words[:cut], [y, x], 0, 3)
    with pytest.raises(ValueError, match="words left over"):
        _run([*words, 0], [y, x])


@needs_sweep
@pytest.mark.parametrize("index", [3, 8, -2, 1 << 40, -(1 << 62)])
def test_an_index_out_of_range_is_a_value_error(index):
    """An address of 8 once crashed the interpreter; as an index it is one more error."""
    y, x = _grid()
    with pytest.raises(ValueError, match=f"operand index {index} out of range for 2 operands"):
        _run(_loss_words(x.shape, term=index), [y, x])
    out = np.zeros((1, 1))
    with pytest.raises(ValueError, match=f"operand index {index} out of range for 3"):
        _run(_sum_words(x.shape, out=index), [y, x, out], derivs=True)


@needs_sweep
def test_malformed_counts_kinds_and_ranges_are_value_errors():
    y, x = _grid()
    good = _loss_words(x.shape)
    cases = [
        ([0, *good[1:]], "1 to 32 axes"),
        ([33, *good[1:]], "1 to 32 axes"),
        ([(1 << 32) + 2, *good[1:]], "1 to 32 axes"),  # not narrowed to 2
        ([*good[:3], 1 << 32, *good[4:]], "unknown family"),
        ([2, -3, *good[2:]], "negative size"),
        ([*good[:3], 7, *good[4:]], "unknown family"),
        ([*good[:4], 1 << 40, *good[5:]], "count of terms or ops"),
        ([*good[:6], -1, *good[7:]], "response is absent"),
        ([*good[:-1], -1], "term of the linear predictor is absent"),
    ]
    for words, message in cases:
        with pytest.raises(ValueError, match=message):
            _run(words, [y, x])
    with pytest.raises(ValueError, match="output is absent"):
        _run(_sum_words(x.shape, out=-1), [y, x], derivs=True)
    for kind in (9, (1 << 32) + 1):
        with pytest.raises(ValueError, match="unknown kind"):
            _run(_sum_words(x.shape, kind=kind), [y, x, np.zeros((1, 1))], derivs=True)
    words = _sum_words(x.shape)
    words[11] = (1 << 32) + 1  # the op's row: not narrowed to g
    with pytest.raises(ValueError, match="neither h nor g"):
        _run(words, [y, x, np.zeros((1, 1))], derivs=True)
    for s, e in [(-1, 3), (2, 1), (0, 4)]:
        with pytest.raises(ValueError, match="positions"):
            _run(good, [y, x], s, e)


@needs_sweep
def test_operands_and_descriptions_of_the_wrong_kind():
    y, x = _grid()
    words = _loss_words(x.shape)
    with pytest.raises(TypeError, match="list or tuple of arrays"):
        compiled._sweep.sweep(np.asarray(words), 3, 0, 3, False)
    assert compiled._sweep.sweep(np.asarray(words), (y, x), 0, 3, False) < 0
    with pytest.raises(ValueError, match="int64 buffer"):
        compiled._sweep.sweep(np.zeros(len(words), dtype=np.int32), [y, x], 0, 3, False)
    with pytest.raises(TypeError):
        compiled._sweep.sweep(np.asarray(words), [y, x], 0, 3)


@needs_sweep
def test_every_buffer_is_released_on_every_path():
    """An ``array.array`` cannot grow while a buffer of it is held: each one can after."""
    from array import array

    y, x, out = array("d", [0.0] * 5), array("d", [0.1, -0.2, 0.3, 0.0, 1.0]), array("d", [0.0])
    shape = (5,)
    assert _run(_sum_words(shape), [y, x, out], derivs=True) < 0
    assert out[0] == pytest.approx(np.exp(np.array(x)).sum(), rel=1e-14)
    frozen = memoryview(bytes(8)).cast("d")  # read-only: fails after y and x are acquired
    failing = [
        ([y, x, frozen], _sum_words(shape)),
        ([y, x, "not an array"], _sum_words(shape)),
        ([y, x, out], _sum_words(shape, out=7)),
        ([y, x, array("f", [0.0])], _sum_words(shape)),
        ([y, x, out], _sum_words(shape, kind=9)),
    ]
    for operands, words in failing:
        with pytest.raises((TypeError, ValueError)):
            _run(words, operands, derivs=True)
    for arr in (y, x, out):
        arr.append(0.0)  # BufferError if a buffer were still held
        arr.pop()


# --------------------------------------------------------------- ownership


def _kernel(seed=7, n_threads=None):
    rng = np.random.default_rng(seed)
    shape = (6, 4, 5)
    blocks = [DenseBlock((), np.ones(1), ("1",))]
    for axes in [(0,), (1, 2), (0, 1, 2)]:
        vals = rng.normal(scale=0.3, size=(*[shape[a] for a in axes], 2))
        blocks.append(DenseBlock(axes, vals, tuple(f"x{axes}{c}" for c in range(2))))
    design = FactoredDesign(shape, blocks)
    y = rng.poisson(1.0, size=shape).astype(float)
    problem = PanelProblem(shape, y=y, w=rng.uniform(0.5, 2, size=shape))
    kw = {} if n_threads is None else {"n_threads": n_threads}
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef), **kw)
    return obj, rng.normal(scale=0.1, size=design.n_coef)


def _bases(acc):
    return {id(a.base) for a in [*acc.red.values(), *acc.grp, *acc.cell]}


@needs_compiled_passes
def test_held_accumulators_survive_however_references_are_counted():
    """Reuse is never read from reference counts (which Python 3.14 and free-threaded
    builds count differently): with a count that says nobody holds the first pass's
    buffers, they still survive the second pass."""
    obj, beta = _kernel()
    kern = obj.engine
    first = kern.full_pass(beta)
    want = {m: a.copy() for m, a in first.red.items()}
    assert want
    hess = kern.hessian(first)
    real = sys.getrefcount
    sys.getrefcount = lambda obj: 2  # as if only the pass itself held them
    try:
        kern.full_pass(beta * -3.0)
        kern.full_pass(beta * 2.0)
    finally:
        sys.getrefcount = real
    for m, a in first.red.items():
        np.testing.assert_array_equal(a, want[m])
    np.testing.assert_array_equal(kern.hessian(first), hess)


@needs_compiled_passes
def test_released_accumulators_are_reused_and_cannot_be_read():
    obj, beta = _kernel()
    kern = obj.engine
    acc = kern.full_pass(beta)
    hess, bases = kern.hessian(acc), _bases(acc)
    assert len(bases) == 2  # the shared buffer and the parts' sum
    acc.release()
    acc.release()  # twice is harmless
    with pytest.raises((AttributeError, TypeError)):
        kern.hessian(acc)  # its arrays are gone, not silently another pass's
    assert kern.compiled.pool.n_free == 1
    again = kern.full_pass(beta)
    assert _bases(again) == bases  # the same buffers, zeroed
    np.testing.assert_array_equal(kern.hessian(again), hess)
    held = kern.full_pass(beta)  # again is held: a new pair
    assert not _bases(held) & bases
    np.testing.assert_array_equal(kern.hessian(held), hess)


@needs_compiled_passes
def test_the_objective_gives_its_pass_back():
    """Newton's passes: each one's buffers go back once the gradient and Hessian are made."""
    obj, beta = _kernel()
    pool = obj.engine.compiled.pool
    first = obj.loss_grad_hess(beta)
    assert pool.n_free == 1
    obj.information(beta)
    second = obj.loss_grad_hess(beta)
    assert pool.n_free == 1
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    obj.release()
    assert pool.n_free == 0


# ----------------------------------------------------------------- threads


def _frame(seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    i, t = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    df = pd.DataFrame({"i": i.ravel(), "t": t.ravel()})
    df["x"], df["z"] = rng.normal(size=len(df)), rng.normal(size=len(df))
    df["u"] = rng.normal(size=12)[df["i"]]  # a column of the first dimension alone
    y = rng.poisson(np.exp(0.2 + 0.3 * df["x"] - 0.2 * df["z"] + 0.1 * df["u"])).astype(float)
    return df, y


def _parts_spy(monkeypatch):
    """The number of parts of every compiled pass run meanwhile."""
    seen = []
    run = compiled.run_parts

    def spy(jobs, max_threads):
        seen.append(len(jobs))
        return run(jobs, max_threads)

    monkeypatch.setattr(compiled, "run_parts", spy)
    return seen


@pytest.mark.parametrize("cov_type", ["nonrobust", "robust"])
def test_one_and_two_threads_agree(cov_type, monkeypatch):
    from panelglm import PanelPoissonRegressor

    df, y = _frame()
    fits = {}
    for n in (1, 2):
        seen = _parts_spy(monkeypatch)
        est = PanelPoissonRegressor(dims=["i", "t"], n_threads=n)
        fits[n] = est.set_params(cov_type=cov_type).fit(df, y)
        assert max(seen, default=n) == n  # the sweep's parts (none with numpy passes)
        assert not compiled.enabled() or seen
    one, two = fits[1], fits[2]
    np.testing.assert_allclose(two.coef_, one.coef_, rtol=1e-12)
    np.testing.assert_allclose(two.intercept_, one.intercept_, rtol=1e-12)
    np.testing.assert_allclose(two.bse_, one.bse_, rtol=1e-12)
    np.testing.assert_allclose(two.deviance_, one.deviance_, rtol=1e-12)


def test_n_threads_none_is_the_cores_of_the_process(monkeypatch):
    import panelglm._estimators.base as base
    import panelglm._util.threads as threads
    from panelglm import PanelPoissonRegressor

    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    monkeypatch.setattr(base, "SMALL_SOLVE", 0)  # so that the solve's BLAS takes threads
    limits = []
    real = base.blas_threads
    monkeypatch.setattr(base, "blas_threads", lambda n: limits.append(n) or real(n))
    seen = _parts_spy(monkeypatch)
    df, y = _frame()
    PanelPoissonRegressor(dims=["i", "t"]).fit(df, y)
    assert max(seen, default=3) == 3  # the sweep's parts (none with numpy passes)
    assert not compiled.enabled() or seen
    assert limits == [3]


def test_the_cores_are_the_affinity_or_the_count(monkeypatch):
    import os

    import panelglm._util.threads as threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert threads.resolve_threads(None) == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert threads.resolve_threads(None) == 7
    assert threads.resolve_threads(2) == 2


@pytest.mark.parametrize("bad", [0, -3, 1.5, "2", True])
def test_an_invalid_n_threads_is_a_value_error_naming_it(bad):
    import panelglm._util.threads as threads
    from panelglm import PanelLinearRegressor, PanelPoissonRegressor

    df, y = _frame()
    if not isinstance(bad, bool):  # scikit-learn counts a bool as an int
        for cls in (PanelPoissonRegressor, PanelLinearRegressor):
            with pytest.raises(ValueError, match="n_threads"):
                cls(dims=["i", "t"], n_threads=bad).fit(df, y)
    with pytest.raises(ValueError, match="n_threads"):
        threads.resolve_threads(bad)


def test_n_threads_is_a_parameter_of_every_estimator():
    import panelglm

    names = ["Poisson", "Linear", "Logit", "Exponential", "Gamma", "NegativeBinomial"]
    for cls in [getattr(panelglm, f"Panel{name}Regressor") for name in names]:
        est = cls()
        assert est.get_params()["n_threads"] is None
        assert est.set_params(n_threads=2).get_params()["n_threads"] == 2
        assert "n_threads : int, default=None" in cls.__doc__


# ------------------------------------------------------------------ tally
@needs_sweep
@pytest.mark.parametrize("weighted", [False, True])
def test_tally_equals_bincount(weighted):
    rng = np.random.default_rng(3)
    y = rng.poisson(3.0, size=(40, 7)).astype(float)
    w = rng.uniform(0.5, 2.0, size=y.shape) if weighted else None
    counts = np.zeros(100)
    used = compiled._sweep.tally(y, w, counts)
    want = np.bincount(y.ravel().astype(int), weights=None if w is None else w.ravel())
    assert used == len(want)
    np.testing.assert_array_equal(counts[:used], want)  # the same additions, in order
    assert not counts[used:].any()
    assert compiled._sweep.tally(np.empty(0), None, counts) == 0


@needs_sweep
@pytest.mark.parametrize("bad", [0.5, -1.0, -0.0 - 1e-300, np.nan, -np.inf, 99.5])
def test_tally_refuses_what_is_not_a_count(bad):
    y = np.array([1.0, 2.0, bad, 3.0])
    assert compiled._sweep.tally(y, None, np.zeros(100)) == -1


@needs_sweep
@pytest.mark.parametrize("big", [100.0, 100.5, np.inf, 1e300])
def test_tally_says_when_a_value_is_beyond_its_table(big):
    y = np.array([1.0, 2.0, big, 3.0])
    assert compiled._sweep.tally(y, None, np.zeros(100)) == -2


@needs_sweep
@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones(3, np.float32), None, np.zeros(4)), "y must be aligned float64"),
        ((np.ones(6)[::2], None, np.zeros(4)), "y must be a C-contiguous"),
        ((np.ones(3), np.ones(2), np.zeros(4)), "w must have as many values as y"),
        ((np.ones(3), np.ones(3, np.int64), np.zeros(4)), "w must be aligned float64"),
        ((np.ones(3), None, np.zeros(4)[::2]), "counts must be a C-contiguous, writable"),
        ((np.ones(3), None, np.zeros(4).view()), None),
        ((np.ones(3), None, "abc"), "counts must be a C-contiguous, writable"),
    ],
)
def test_tally_checks_its_arrays(args, match):
    if match is None:  # a read-only table
        args[2].flags.writeable = False
        match = "counts must be a C-contiguous, writable"
    with pytest.raises(ValueError, match=match):
        compiled._sweep.tally(*args)


def test_tally_of_a_part_is_the_same_with_either_pass(monkeypatch):
    """tally_part: the compiled tally and numpy's give the same counts."""
    from panelglm._engine import tally as statistics

    rng = np.random.default_rng(4)
    y = rng.poisson(2.0, size=(5, 6, 7)).astype(float)
    w = rng.uniform(size=y.shape)
    big = y.copy()
    big[1, 2, 3] = statistics.SMALL_TALLY + 5  # beyond the first table: the whole one
    huge = y.copy()
    huge[0, 0, 0] = statistics.MAX_TALLY + 1
    cases = [(y, None), (y, w), (y[:, ::2], None), (y + 0.5, None), (-y, None), (big, w)]
    cases.append((huge, None))
    got = [statistics.tally_part(a, b) for a, b in cases]
    monkeypatch.setattr(statistics._compiled, "enabled", lambda: False)
    want = [statistics.tally_part(a, b) for a, b in cases]
    for g, e in zip(got, want, strict=True):
        if e is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, e)
    assert got[0] is not None and got[3] is None and got[4] is None and got[6] is None
    assert len(got[5]) == statistics.SMALL_TALLY + 6
