"""One panelglm fit broken down by phase, timed from outside its functions.

The phases: the model's terms and blocks from the laid-out panel (``spec``),
the identification screens (collinearity, separation, certificate: the
identifier's fit less the Newton solves), the Newton solves (``steps``), the
statistics at the solution and the bookkeeping of the results
(``statistics``), the covariance (``inference``), and the rest of ``fit``
(input checks, the objective's set-up: ``other``). The layout of the data
(``PanelDesign.fit_transform``) is the record's ``prep_s``.

Wrappers are put on the functions the estimators call and taken off again;
nothing of panelglm is changed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

PHASES = ("spec", "screens", "steps", "statistics", "inference", "other")


@contextlib.contextmanager
def phase_clock(totals: dict[str, float]) -> Iterator[None]:
    """Add each phase's seconds of the fits run inside into ``totals``."""
    import panelglm._estimators.base as base
    import panelglm._ident.identification as ident
    import panelglm._inference.summary as summary

    for name in (*PHASES, "identify", "results", "fit"):
        totals.setdefault(name, 0.0)
    patches: list[tuple[Any, str, Any]] = []

    def timed(owner: Any, attr: str, phase: str) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kw)
            finally:
                totals[phase] += time.perf_counter() - t0

        patches.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    timed(base, "build_model_spec", "spec")
    timed(base, "build_design", "spec")
    timed(ident.Identifier, "fit", "identify")
    timed(base.PanelGLMBase, "_solve", "steps")
    timed(base.PanelGLMBase, "_set_results", "results")
    timed(summary.InferenceMixin, "_set_inference", "inference")
    timed(base.PanelGLMBase, "fit", "fit")
    try:
        yield
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)
    totals["screens"] = totals["identify"] - totals["steps"]
    totals["statistics"] = totals["results"] - totals["inference"]
    named = sum(totals[p] for p in PHASES if p != "other")
    totals["other"] = totals["fit"] - named


def one_fit_by_phase(fit: Callable[[], Any]) -> dict[str, float]:
    """Seconds of each phase of one call of ``fit``."""
    totals: dict[str, float] = {}
    with phase_clock(totals):
        fit()
    return {p: totals[p] for p in (*PHASES, "fit")}
