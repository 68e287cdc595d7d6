"""The compiled pass as a Dask task runs it: float32 inputs, and sums added into a buffer.

A panel's stored float32 cells (a Dask task's slab) are handed to the sweep
as they are: it converts each value, exactly, as it reads a tile. Every
accumulator and the loss must then equal, bit for bit, those of the same
pass over float64 copies of the values, wherever the float32 array sits: the
response, the weights, the trials, a term of the linear predictor, an op's
factor and a dot product's column; contiguous, strided or constant along
the lines; on grids that take the blocks of lines and the single lines.
A task's slabs after the first add their sums over the other axes into the
first one's buffer: slab by slab, the whole grid's accumulators.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_kernels import FAMILIES, random_design, random_response

import panelglm._engine.compiled as compiled
from panelglm._engine.buffers import PooledAccumulators
from panelglm._engine.compiled_engine import CompiledEngine
from panelglm._engine.objective import PanelProblem
from panelglm._engine.pass_spec import PassSpec
from panelglm._engine.plan import make_plan
from panelglm._model.blocks import _slab_of
from panelglm._model.factored import FactoredDesign

needs_engine = pytest.mark.skipif(
    not compiled.enabled(), reason="compiled sweep not built or switched off"
)


def _float32_problem(shape, family, seed, constant=False):
    """A design whose cell-level block, and a problem whose y, w and m, are float32.

    With ``constant``, the cell-level block is constant along the lines (a
    view of stride 0 there): a term, a factor and a dot product's column the
    sweep reads one value of per line, or gathers.
    """
    rng = np.random.default_rng(seed)
    design = random_design(shape, rng, indicators=len(shape) > 1 and np.prod(shape) < 500)
    every = tuple(range(len(shape)))

    def narrow(values):
        values = values.astype(np.float32)
        return np.broadcast_to(values[..., :1, :], values.shape) if constant else values

    blocks = [
        dataclasses.replace(b, values=narrow(b.values)) if b.axes == every else b
        for b in design.blocks
    ]
    design = dataclasses.replace(design, blocks=blocks)
    beta = rng.normal(scale=0.2, size=design.n_coef)
    eta = design.to_dense() @ beta
    m = rng.integers(1, 4, size=shape).astype(np.float32)
    y = random_response(family, rng, eta, m).astype(np.float32)
    # Weights constant along the lines (stride 0 there), trials read at a stride.
    w = rng.uniform(0.5, 2.0, size=(*shape[:-1], 1)).astype(np.float32)
    w = np.broadcast_to(w, shape)
    m = np.asfortranarray(m) if family == "binomial" else 1.0
    return design, PanelProblem(shape, y=y, m=m, w=w), beta


def _widened(values):
    """float64 copies laid out as the float32 values (constant along the lines too)."""
    wide = values.astype(np.float64)
    if values.ndim > 1 and values.strides[-2] == 0:
        wide = np.broadcast_to(wide[..., :1, :], wide.shape)
    return wide


def _float64(design, problem):
    blocks = [
        dataclasses.replace(b, values=_widened(b.values))
        if getattr(b, "values", None) is not None and b.values.dtype == np.float32
        else b
        for b in design.blocks
    ]
    changes = {
        f: np.asarray(getattr(problem, f), np.float64)
        for f in ("y", "w", "m")
        if isinstance(getattr(problem, f), np.ndarray)
    }
    return dataclasses.replace(design, blocks=blocks), dataclasses.replace(problem, **changes)


def _engine(design, family, problem, stored, plan=None):
    p, plan = problem, plan or make_plan(design)
    spec = PassSpec.build(design, plan, family, p.y, p.w, p.m, None, np.float64, stored)
    return CompiledEngine(spec, problem, n_threads=1), spec


@needs_engine
# Single lines (one axis; a last axis of one), blocks of four lines with lines
# left over, and four axes; lines that are not a whole number of vectors.
@pytest.mark.parametrize("shape", [(37,), (5, 1), (3, 9, 7), (2, 3, 5, 6), (2, 13, 600)])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("constant", [False, True])
def test_float32_inputs_give_the_bits_of_their_float64_copies(shape, family, constant):
    design, problem, beta = _float32_problem(shape, family, len(shape), constant)
    fam = FAMILIES[family]
    eng32, spec32 = _engine(design, fam, problem, stored=True)
    design64, problem64 = _float64(design, problem)
    eng64, spec64 = _engine(design64, fam, problem64, stored=False)
    # The stored arrays reach the sweep as they are, the copies as float64.
    assert spec32.y.dtype == np.float32 and spec32.w.dtype == np.float32
    assert family != "binomial" or spec32.m.dtype == np.float32  # trials, at a stride
    assert all(spec32.values[i].dtype == np.float32 for i in spec32.plan.full)
    assert spec64.y.dtype == np.float64
    assert eng32.loss(beta) == eng64.loss(beta)
    a32, a64 = eng32.full_pass(beta), eng64.full_pass(beta)
    assert a32.lsum == a64.lsum
    for m in spec32.plan.targets:
        np.testing.assert_array_equal(a32.red[m], a64.red[m])
    for x, z in zip([*a32.grp, *a32.cell], [*a64.grp, *a64.cell], strict=True):
        np.testing.assert_array_equal(x, z)


def test_without_stored_the_spec_converts_float32_cells():
    """The numpy passes compute with float64 cells: a spec built without ``stored``
    (every pass but the compiled loss and full pass) converts them."""
    design, problem, _ = _float32_problem((3, 4, 5), "poisson", 0)
    spec = PassSpec.build(
        design, make_plan(design), FAMILIES["poisson"], problem.y, problem.w, 1.0, None
    )
    assert spec.y.dtype == spec.w.dtype == np.float64
    assert all(v.dtype == np.float64 for v in spec.values.values())


@pytest.mark.skipif(compiled._sweep is None, reason="compiled sweep not built")
def test_a_float32_output_and_other_dtypes_are_refused():
    """Only inputs may be float32; float16 and integers are refused either way."""
    from panelglm._engine.description import Description

    desc = Description((3, 4))
    assert desc.index(np.zeros((3, 4), np.float32)) == 0  # an input
    with pytest.raises(ValueError, match="inputs may be float32"):
        desc.index(np.zeros((1, 1), np.float32), output=True)
    for dtype in (np.float16, np.int32):
        with pytest.raises(ValueError, match="sweep operands are float64"):
            desc.index(np.zeros((3, 4), dtype))
    words = [2, 3, 4, 0, 1, 1, 0, -1, -1, int(np.float64(1.0).view(np.int64)), 1]
    words += [0, -1, 1, compiled.SUM, 2]  # one op: h summed into operand 2
    y, x = np.zeros((3, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError, match="operand 2 is not float64"):
        compiled._sweep.sweep(
            np.asarray(words, np.int64), [y, x, np.zeros((1, 1), np.float32)], 0, 3, True
        )


@needs_engine
def test_a_pass_adds_into_the_sums_of_the_slabs_before():
    design, problem, beta = _float32_problem((7, 4, 6), "poisson", 3)
    fam, plan = FAMILIES["poisson"], make_plan(design)
    whole, spec = _engine(design, fam, problem, stored=True)
    ref = whole.full_pass(beta)
    accs, into = [], None
    for lo, hi in [(0, 3), (3, 5), (5, 7)]:
        sl = slice(lo, hi)
        part = FactoredDesign(
            (hi - lo, *design.shape[1:]), [_slab_of(b, sl) for b in design.blocks]
        )
        eng, _ = _engine(part, fam, problem.rows(lo, hi), stored=True, plan=plan)
        acc = eng.full_pass(beta, into=into)
        assert isinstance(acc, PooledAccumulators) == (into is None)  # nothing lent if into
        into = acc.summed if into is None else into
        accs.append(acc)
    assert sum(a.lsum for a in accs) == pytest.approx(ref.lsum, rel=1e-13)
    for m in spec.plan.targets:
        got = np.concatenate([a.red[m] for a in accs], axis=1) if 0 in m else accs[-1].red[m]
        np.testing.assert_allclose(got, ref.red[m], rtol=1e-12, atol=1e-12)
    for k, g_out in enumerate(spec.group_out):
        got = np.concatenate([a.grp[k] for a in accs]) if 0 in g_out else accs[-1].grp[k]
        np.testing.assert_allclose(got, ref.grp[k], rtol=1e-12, atol=1e-12)
    for x, z in zip(accs[-1].cell, ref.cell, strict=True):
        np.testing.assert_allclose(x, z, rtol=1e-12)
    with pytest.raises(ValueError, match="one part"):
        eng.full_pass(beta, into=np.zeros(3))
