"""The compiled sweep against numpy and the dense matrix.

The compiled sweep (``panelglm._engine._sweep``, described by :mod:`panelglm._engine.compiled`)
is optional: where it cannot be built, every pass runs with numpy. These tests
check its exponential against ``np.exp``, its passes against the dense
matrix and against the numpy passes, and that its results do not depend on
how many parts or threads run a pass.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_kernels import FAMILIES, random_design, random_response, reference

import panelglm._engine.assemble as assemble
import panelglm._engine.compiled as compiled
from panelglm._engine.description import Description
from panelglm._engine.engines import make_engine
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.families import POISSON

needs_sweep = pytest.mark.skipif(compiled._sweep is None, reason="compiled sweep not built")
# Passes through the compiled engine: not where PANELGLM_NUMPY_PASS switches it off.
needs_engine = pytest.mark.skipif(
    not compiled.enabled(), reason="compiled sweep not built or switched off"
)


def test_sweep_is_built_where_required():
    # CI sets this: there a compiler is present, so a sweep that silently
    # failed to build would leave the compiled path untested.
    if os.environ.get("PANELGLM_REQUIRE_COMPILED") == "1":
        assert compiled._sweep is not None
        assert compiled.enabled()
    else:
        pytest.skip("PANELGLM_REQUIRE_COMPILED is not set")


def _zero_response_loss(x: np.ndarray, family: int) -> float:
    """The sweep's loss of ``eta = x`` with y = 0, no weights and one trial.

    Poisson (family 0): ``-sum exp(x)``; binomial (1): ``-sum log(1 + exp(x))``.
    """
    desc = Description(x.shape)
    desc.words += [1, x.size, family, 1, 0]
    for arr in (np.zeros(1), None, None):  # y, w, trials
        desc.operand(arr)
    desc.words.append(int(np.float64(1.0).view(np.int64)))
    desc.operand(x)
    return compiled._sweep.sweep(desc.array(), desc.operands, 0, x.size, False)


def _neg_exp_sum(x: np.ndarray) -> float:
    return _zero_response_loss(x, 0)


def _neg_softplus_sum(x: np.ndarray) -> float:
    return _zero_response_loss(x, 1)


@needs_sweep
def test_exp_matches_numpy_to_an_ulp_or_two():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-745, 709.7, 2000),
            rng.normal(size=2000),
            [0.0, -0.0, 1e-300, -1e-300, 0.5 * np.log(2), -0.5 * np.log(2), 709.78, -708.4],
            [-744.4, -740.0, -720.0],  # subnormal results
        ]
    )
    got = np.array([-_neg_exp_sum(np.array([v])) for v in x])
    want = np.exp(x)
    ulp = np.spacing(want)
    assert np.all(np.abs(got - want) <= 2 * ulp)


@needs_sweep
def test_exp_gives_the_same_bits_on_either_path():
    """A tile with a result outside the normal numbers is run again by the careful path.

    Where every result is within |x| <= 708 the power of two is built at once;
    one beyond sends the whole tile down the path that scales in two steps.
    The other values must not notice: exp(-800) adds an exact zero.
    """
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-708, 708, 300), rng.normal(size=300), [-708.0, 708.0]])
    for v in x:
        alone = _neg_exp_sum(np.array([v]))
        beside = _neg_exp_sum(np.array([v, -800.0, -800.0, -800.0]))
        assert alone == beside, v


@needs_sweep
@pytest.mark.parametrize("extreme", [-800.0, -720.0, np.nan])
def test_one_extreme_value_sends_its_tile_down_the_careful_path(extreme):
    """One value outside |x| <= 708 anywhere in a line of whole loop steps.

    Its tile runs again by the careful path: exp(-800) is 0, exp(-720) a
    subnormal that the one-step path would get wrong, NaN stays NaN.
    """
    rng = np.random.default_rng(5)
    for j in range(40):
        x = rng.normal(size=40)
        x[j] = extreme
        got = -_neg_exp_sum(x)
        want = np.exp(x).sum()
        if np.isnan(extreme):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(want, rel=1e-14), j


@needs_engine
@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_extreme_linear_predictors_match_dense(family):
    """Cells whose exp leaves the normal numbers, among others, in full and loss passes."""
    shape = (3, 5, 40)
    rng = np.random.default_rng(8)
    design = random_design(shape, rng, indicators=False)
    beta = rng.normal(scale=0.2, size=design.n_coef)
    off = rng.normal(scale=0.1, size=shape)
    # Poisson: exp(-720) is subnormal; binomial: exp(-|eta|) at +-720 too.
    off[1, 2, [3, 17, 30]] = [-720.0, -750.0, -720.0]
    if family == "binomial":
        off[2, 4, [0, 21]] = [720.0, -730.0]
    eta = design.to_dense() @ beta + off.ravel()
    m = np.full(shape, 2.0) if family == "binomial" else np.ones(shape)
    with np.errstate(over="ignore"):  # the binomial draw's exp(-eta) at eta = -730
        y = random_response(family, rng, eta, m)
    w = rng.uniform(0.5, 2.0, size=shape)
    problem = PanelProblem(shape, y=y, m=m, w=w, offset=(off, tuple(range(len(shape)))))
    obj = PenalizedObjective(design, FAMILIES[family], problem, 0.0, np.ones(design.n_coef))
    assert obj.engine.name == "compiled"
    lsum, grad, hess = reference(design, FAMILIES[family], y, m, w, off, beta)
    scale = 1.0 / w.sum()
    loss, g_obj, h_obj = obj.loss_grad_hess(beta)
    np.testing.assert_allclose(loss, -scale * lsum, rtol=1e-12)
    np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-9, atol=1e-12)
    assert obj.engine.loss(beta) == obj.engine.full_pass(beta).lsum


@needs_sweep
def test_exp_limits():
    with np.errstate(over="ignore"):
        assert -_neg_exp_sum(np.array([710.0])) == np.inf
        assert -_neg_exp_sum(np.array([1e308])) == np.inf
    assert _neg_exp_sum(np.array([-746.0])) == 0.0
    assert np.isnan(_neg_exp_sum(np.array([np.nan])))
    # A whole vector plus a tail: the sum over every element.
    x = np.linspace(-3, 3, 23)
    assert _neg_exp_sum(x) == pytest.approx(-np.exp(x).sum(), rel=1e-14)


@needs_sweep
def test_softplus_matches_numpy_to_a_few_ulp():
    """The binomial loss's log(1 + exp(x)): its vectorised log1p, both tails, the limits."""
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.uniform(-745, 709.7, 1000),
            rng.normal(scale=3.0, size=2000),
            rng.uniform(-1e-3, 1e-3, 200),
            [0.0, -0.0, 1e-300, 0.3466, -0.3466, 0.8813, -0.8813, 36.0, 37.5, -36.0, -700.0],
        ]
    )
    got = np.array([-_neg_softplus_sum(np.array([v])) for v in x])
    want = np.logaddexp(0.0, x)
    assert np.all(np.abs(got - want) <= 3 * np.spacing(want))
    for v in (750.0, 1e308):  # past exp's overflow, and near the largest double
        assert -_neg_softplus_sum(np.array([v])) == v
        assert _neg_softplus_sum(np.array([-v])) == 0.0
    assert np.isnan(_neg_softplus_sum(np.array([np.nan])))


def _objective(shape, family, seed, indicators=None, n_threads=None):
    rng = np.random.default_rng(seed)
    if indicators is None:
        indicators = family != "gaussian"
    design = random_design(shape, rng, indicators=indicators)
    beta = rng.normal(scale=0.2, size=design.n_coef)
    w = rng.uniform(0.5, 2.0, size=shape)
    off = rng.normal(scale=0.1, size=shape)
    eta = design.to_dense() @ beta + off.ravel()
    # Binomial: one to three trials per cell.
    m = rng.integers(1, 4, size=shape).astype(float) if family == "binomial" else np.ones(shape)
    y = random_response(family, rng, eta, m)
    problem = PanelProblem(shape, y=y, m=m, w=w, offset=(off, tuple(range(len(shape)))))
    obj = PenalizedObjective(
        design, FAMILIES[family], problem, 0.0, np.ones(design.n_coef), n_threads=n_threads
    )
    return obj, (design, FAMILIES[family], y, m, w, off, beta)


@needs_engine
# The last two: axis D-2 walked in spans of 40 lines (SPAN_CELLS / 400), the
# last span with a block of lines and single lines left over.
@pytest.mark.parametrize(
    "shape",
    [
        *[(23,), (5, 1), (1, 4), (9, 4), (4, 3, 5), (3, 9, 5), (3, 4, 2, 3), (2, 3, 5, 3)],
        *[(2, 46, 400), (2, 2, 43, 400)],
    ],
)
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_compiled_pass_matches_dense(shape, family, parts):
    """Any number of parts: the dense matrix's loss, gradient and Hessian."""
    # Fixed effects on the larger grids would make the dense reference slow.
    obj, ref_args = _objective(
        shape, family, len(shape) + parts, indicators=np.prod(shape) < 1000, n_threads=parts
    )
    assert obj.engine.name == "compiled"
    assert obj.engine.compiled.n_parts == parts
    lsum, grad, hess = reference(*ref_args)
    beta, scale = ref_args[-1], 1.0 / ref_args[4].sum()
    for _ in range(2):  # the second pass reuses the ops written by the first
        loss, g_obj, h_obj = obj.loss_grad_hess(beta)
        np.testing.assert_allclose(loss, -scale * lsum, rtol=1e-12)
        np.testing.assert_allclose(obj.loss(beta), -scale * lsum, rtol=1e-12)
        np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-9, atol=1e-12)
    # One part adds straight into its pass's buffers: none of its own.
    assert (obj.engine.compiled._private == []) == (min(parts, shape[0]) == 1)


@needs_engine
def test_accumulators_of_a_pass_survive_the_next():
    obj, ref_args = _objective((4, 3, 5), "poisson", 7)
    kern, beta = obj.engine, ref_args[-1]
    first = kern.full_pass(beta)
    hess = kern.hessian(first)
    kern.full_pass(beta * 0.5)
    np.testing.assert_array_equal(kern.hessian(first), hess)
    # One array of the last pass, kept alone, survives the next pass too: one
    # over the first axis (the parts' shared buffer), one without it (their sum).
    last = kern.full_pass(beta)
    kept = [last.red[(0, 1)], last.red[(1, 2)]]
    expected = [a.copy() for a in kept]
    del last
    kern.full_pass(beta * 0.25)
    for a, b in zip(kept, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_hessian_pairs_of_a_block_over_their_union_either_way(family, monkeypatch):
    """A dense block over all the axes of its pairs shares ``X' * t`` among them,
    below a size; above it, each pair is formed on its own. Same numbers."""
    obj, ref_args = _objective((4, 3, 5), family, 11)
    kern, beta = obj.engine, ref_args[-1]
    _, _, want = reference(*ref_args)
    acc = kern.full_pass(beta)
    kinds = {entry[0] for entry in kern.assembler._pair_schedule()}
    assert "top" in kinds
    shared = kern.hessian(acc)
    monkeypatch.setattr(assemble, "COLUMN_CELLS", 0)
    del kern.assembler._pairs  # the schedule is worked out again, without the shared products
    assert "top" not in {entry[0] for entry in kern.assembler._pair_schedule()}
    alone = kern.hessian(acc)
    np.testing.assert_allclose(shared, alone, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(shared, -want, rtol=1e-9, atol=1e-12)


def _address(arr: np.ndarray) -> int:
    return arr.base.__array_interface__["data"][0]


@needs_engine
def test_a_pass_reuses_the_buffers_nobody_holds():
    """Fresh memory costs a page fault per page: a pass whose accumulators were
    released hands its buffers, zeroed, to the next; the solver lets them go."""
    obj, ref_args = _objective((4, 3, 5), "poisson", 8)
    kern, beta = obj.engine, ref_args[-1]
    acc = kern.full_pass(beta)
    where = [_address(acc.red[(0, 1)]), _address(acc.red[(1, 2)])]
    hess = kern.hessian(acc)
    acc.release()
    kern.full_pass(beta * 0.5).release()  # given back at once
    acc = kern.full_pass(beta)
    assert [_address(acc.red[(0, 1)]), _address(acc.red[(1, 2)])] == where
    np.testing.assert_array_equal(kern.hessian(acc), hess)  # zeroed before reuse
    acc.release()
    obj.release()
    assert kern.compiled.pool.n_free == 0
    np.testing.assert_array_equal(kern.hessian(kern.full_pass(beta)), hess)


@needs_engine
def test_compiled_and_numpy_passes_agree(monkeypatch):
    obj, ref_args = _objective((6, 5, 7), "poisson", 3)
    beta = ref_args[-1]
    assert obj.engine.name == "compiled"
    fast = obj.loss_grad_hess(beta)
    monkeypatch.setenv("PANELGLM_NUMPY_PASS", "1")
    design, fam = ref_args[:2]
    slow_obj = PenalizedObjective(design, fam, obj.problem, 0.0, np.ones(design.n_coef))
    assert slow_obj.engine.name == "numpy"
    slow = slow_obj.loss_grad_hess(beta)
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_numpy_pass_where_there_is_no_compiled_form():
    obj, _ = _objective((4, 3, 5), "poisson", 1)
    problem = PanelProblem(obj.problem.shape, y=obj.problem.y, w=obj.problem.w)
    other = make_engine(obj.design, POISSON, problem, np.float32)
    assert other.name == "numpy"  # float32 work runs with numpy


@needs_engine
@pytest.mark.parametrize("shape", [(3, 9, 6), (2, 8, 3, 5)])
def test_compiled_pass_with_blocks_of_three_columns(shape):
    """Three columns per block: ops of one shape fused three at a time, blocks of lines."""
    from itertools import combinations

    from panelglm._model.blocks import DenseBlock
    from panelglm._model.factored import FactoredDesign

    rng = np.random.default_rng(11)
    D = len(shape)
    blocks = [DenseBlock((), np.ones(1), ("1",))]
    for r in range(1, D + 1):
        for axes in combinations(range(D), r):
            vals = rng.uniform(-0.5, 0.5, size=(*[shape[a] for a in axes], 3))
            blocks.append(DenseBlock(axes, vals, tuple(f"x{axes}{c}" for c in range(3))))
    design = FactoredDesign(shape, blocks)
    beta = rng.normal(scale=0.1, size=design.n_coef)
    y = rng.poisson(1.0, size=shape).astype(float)
    problem = PanelProblem(shape, y=y, m=np.ones(()), w=None, offset=None)
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef))
    assert obj.engine.name == "compiled"
    lsum, grad, hess = reference(design, POISSON, y, np.ones(shape), np.ones(shape), 0 * y, beta)
    scale = 1.0 / y.size
    loss, g_obj, h_obj = obj.loss_grad_hess(beta)
    np.testing.assert_allclose(loss, -scale * lsum, rtol=1e-12)
    np.testing.assert_allclose(g_obj, -scale * grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_obj, -scale * hess, rtol=1e-9, atol=1e-12)


@needs_engine
@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian"])
def test_loss_pass_and_full_pass_give_the_same_bits(family):
    # The line search compares a loss-only pass with a full pass's loss.
    # (3, 9, 1030): lines of three tiles; (2, 46, 400): axis 1 in spans of 40 lines.
    for shape in [(2, 8, 3), (9, 4), (3, 9, 1030), (2, 46, 400)]:
        obj, ref_args = _objective(shape, family, 5, indicators=shape[-1] < 100)
        kern, beta = obj.engine, ref_args[-1]
        assert kern.name == "compiled"
        assert kern.loss(beta) == kern.full_pass(beta).lsum


def _fit_in_child(queue):
    obj, ref_args = _objective((4, 9, 5), "poisson", 2)
    queue.put(float(obj.loss_grad_hess(ref_args[-1])[0]))


@needs_engine
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_passes():
    """The thread pool of the parent does not exist in a forked child: a new one is made."""
    import multiprocessing

    obj, ref_args = _objective((4, 9, 5), "poisson", 2)
    want = float(obj.loss_grad_hess(ref_args[-1])[0])  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fit_in_child, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the child hung"
    assert queue.get(timeout=5) == want


def test_operands_must_fit_the_grid():
    desc = Description((3, 4))
    with pytest.raises(ValueError, match="grid"):
        desc.operand(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="float64"):
        desc.operand(np.zeros((3, 4), dtype=np.float16))
    with pytest.raises(ValueError, match="float64"):  # float32 is read, never written
        desc.operand(np.zeros((3, 4), dtype=np.float32), output=True)
