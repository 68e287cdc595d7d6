"""The compiled pass engine: the numpy engine with its loss and full passes compiled.

The compiled sweep (:mod:`panelglm._engine.compiled`) runs the passes the solver
repeats: the loss alone and the full pass of loss, curvature and residual.
Everything else (the statistics at the solution, the robust meat's pass with
other cell weights, the response's one-off sums) runs as in
:class:`~panelglm._engine.kernels.NumpyEngine`, with the same accumulators and the
same assembly.
"""

from __future__ import annotations

import numpy as np

from . import compiled as _compiled
from .kernels import NumpyEngine
from .pass_spec import PassSpec
from .problem import PanelProblem
from .reductions import Accumulators

# Cells of a chunk from which the response's pass runs on the sweep's workers.
RESPONSE_THREAD_CELLS = 1 << 17


class CompiledEngine(NumpyEngine):
    """The pass engine whose loss and full passes run in the compiled sweep.

    Parameters
    ----------
    spec : PassSpec
        What every pass reads and computes; the sweep must be usable for it
        (:func:`panelglm._engine.compiled.usable`).
    problem : PanelProblem
        The fit's arrays, for the statistics taken chunk by chunk.
    chunk_cells, n_threads : int, optional
        As :class:`~panelglm._engine.kernels.NumpyEngine`, for the passes run with
        numpy; the sweep runs one part of a pass per thread of ``n_threads``
        (None: :func:`~panelglm._util.threads.resolve_threads`, the fit's or every core).
    """

    name = "compiled"

    def __init__(
        self,
        spec: PassSpec,
        problem: PanelProblem,
        chunk_cells: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        super().__init__(spec, problem, chunk_cells, n_threads)
        self.compiled = _compiled.CompiledPass(spec, n_threads)

    @property
    def response_threads(self) -> int:
        """The sweep's workers for the response's pass (``X' w y``, the counts of ``y``), if large.

        On chunks of a slab of many cells that pass gains from every core,
        unlike the numpy engine's full passes; on smaller chunks its numpy
        calls are too short to run side by side (see benchmarks/PERF_NOTES.md).
        """
        return self.compiled.n_workers if self._max_cells >= RESPONSE_THREAD_CELLS else 1

    def loss(self, beta: np.ndarray) -> float:
        """``sum_c w_c f_c`` at ``beta``, from one compiled loss-only sweep."""
        small, cell = self.eta_parts(beta)
        return self.compiled.loss(self.spec, small, cell)

    def full_pass(
        self, beta: np.ndarray, weight_fn=None, into: np.ndarray | None = None
    ) -> Accumulators:
        """As :meth:`NumpyEngine.full_pass`; compiled unless ``weight_fn`` is given.

        ``into``: see :meth:`~panelglm._engine.compiled.CompiledPass.full`.
        """
        if weight_fn is not None:  # other cell weights: no compiled form
            return super().full_pass(beta, weight_fn)
        small, cell = self.eta_parts(beta)
        return self.compiled.full(self.spec, small, cell, into)

    def release(self) -> None:
        """Let go of the accumulators' buffers kept for the next sweep."""
        self.compiled.release()
