"""Which pass engine a fit gets: one place chooses, the environment can switch the sweep off."""

from __future__ import annotations

import numpy as np
import pytest
from test_kernels import random_design

from panelglm._engine import compiled as _compiled
from panelglm._engine.engines import make_engine
from panelglm._engine.objective import PanelProblem, PenalizedObjective
from panelglm._model.blocks import IndicatorBlock
from panelglm._model.factored import FactoredDesign
from panelglm._model.families import POISSON


def _problem(shape, seed=0):
    rng = np.random.default_rng(seed)
    design = random_design(shape, rng, indicators=False)
    y = rng.poisson(1.0, size=shape).astype(float)
    return design, PanelProblem(shape, y=y)


@pytest.mark.skipif(_compiled._sweep is None, reason="the compiled sweep is not built")
@pytest.mark.parametrize("setting", ["", "0", "1", "yes"])
def test_the_environment_switches_the_compiled_sweep_off(setting, monkeypatch):
    monkeypatch.setenv("PANELGLM_NUMPY_PASS", setting)
    design, problem = _problem((4, 3, 5))
    want = "compiled" if setting in ("", "0") else "numpy"
    assert make_engine(design, POISSON, problem).name == want
    obj = PenalizedObjective(design, POISSON, problem, 0.0, np.ones(design.n_coef))
    assert obj.engine.name == want


def test_engines_fall_back_where_they_cannot_run():
    design, problem = _problem((4, 3, 5))
    # float32 work has no compiled form; no response (predicting) and a design
    # without a plan have no chunked one.
    assert make_engine(design, POISSON, problem, np.float32).name == "numpy"
    assert make_engine(design, POISSON, PanelProblem((4, 3, 5))).name == "plain"
    fe = [
        IndicatorBlock((0, 1), np.zeros((2, 3), int), ("a",)),
        IndicatorBlock((2,), np.zeros(4, int), ("b",)),
    ]
    no_plan = FactoredDesign((2, 3, 4), fe)
    y = np.ones((2, 3, 4))
    for kind in ("compiled", "numpy", "plain"):
        assert make_engine(no_plan, POISSON, PanelProblem((2, 3, 4), y=y), kind=kind).name == (
            "plain"
        )
    assert make_engine(design, POISSON, problem, kind="plain").name == "plain"


def test_an_unknown_engine_is_refused():
    design, problem = _problem((4, 3))
    with pytest.raises(ValueError, match="unknown pass engine 'fast'"):
        make_engine(design, POISSON, problem, kind="fast")


def test_the_objective_hands_its_threads_to_the_engine():
    design, problem = _problem((4, 3, 5))
    obj = PenalizedObjective(
        design, POISSON, problem, 0.0, np.ones(design.n_coef), engine="numpy", n_threads=2
    )
    assert obj.engine.name == "numpy" and obj.engine.n_threads == 2
