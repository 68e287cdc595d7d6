"""Synthetic balanced 3-D Poisson panels for the benchmarks.

A panel has ``I x J x K`` cells on the dimensions ``"i"``, ``"j"``, ``"k"`` and a
covariate block at every level:

==========  ===============  ==========================
level       array shape      column names
==========  ===============  ==========================
``ijk``     ``(I, J, K, 2)`` ``x_ijk_0``, ``x_ijk_1``
``ij``      ``(I, J, 3)``    ``x_ij_0`` .. ``x_ij_2``
``ik``      ``(I, K, 3)``    ``x_ik_0`` .. ``x_ik_2``
``jk``      ``(J, K, 3)``    ``x_jk_0`` .. ``x_jk_2``
``i``       ``(I, p)``       ``x_i_0`` .. ``x_i_{p-1}``
``j``       ``(J, p)``       ``x_j_0`` .. ``x_j_{p-1}``
``k``       ``(K, p)``       ``x_k_0`` .. ``x_k_{p-1}``
==========  ===============  ==========================

plus an intercept (named ``"intercept"``), so ``P = 11 + 3 p`` slopes. Covariates are
uniform on ``[-1, 1]``; the true slopes have ``sum |beta| = 1.5`` and the intercept is
0.5, so the linear predictor ``V`` lies in ``[-1, 2]`` for every cell. ``y`` is drawn
``Poisson(exp(V))``. The same ``(shape, p, seed)`` always gives the same data.

Everything N-sized is generated and evaluated one ``i``-slab at a time, so making a
panel needs about ``N * (8 * 2 + 8)`` bytes (the cell-level block and ``y``) and no
N-sized temporaries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

DIMS = ("i", "j", "k")
LEVELS = ("ijk", "ij", "ik", "jk", "i", "j", "k")
INTERCEPT = "intercept"
_FIXED_WIDTH = {"ijk": 2, "ij": 3, "ik": 3, "jk": 3}


def level_width(level: str, p: int) -> int:
    """Return the number of columns of the block at ``level``."""
    return _FIXED_WIDTH.get(level, p)


def column_names(p: int, level: str | None = None) -> list[str]:
    """Return covariate names (no intercept), in the order of ``LEVELS``.

    Parameters
    ----------
    p : int
        Columns per one-dimension block.
    level : str, optional
        Only the names of this level.
    """
    levels = LEVELS if level is None else (level,)
    return [f"x_{lev}_{n}" for lev in levels for n in range(level_width(lev, p))]


@dataclass(frozen=True)
class Panel:
    """A generated panel: factored covariate blocks, response and true coefficients.

    Attributes
    ----------
    shape : tuple of int
        ``(I, J, K)``.
    p : int
        Columns per one-dimension block.
    seed : int
        Seed it was generated from.
    blocks : dict of str to ndarray
        Level -> array of shape ``(sizes of the level's dims..., width)``.
    y : ndarray of shape (I, J, K)
        Poisson counts, as float64.
    true_coef : dict of str to float
        True coefficients by name, including ``"intercept"``.
    """

    shape: tuple[int, int, int]
    p: int
    seed: int
    blocks: dict[str, np.ndarray]
    y: np.ndarray
    true_coef: dict[str, float]

    @property
    def n_cells(self) -> int:
        """Number of cells ``N = I * J * K``."""
        return int(np.prod(self.shape))

    @property
    def n_features(self) -> int:
        """Number of slopes ``P`` (the intercept excluded)."""
        return 11 + 3 * self.p


def _level_shape(level: str, shape: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(shape[DIMS.index(d)] for d in level)


def make_panel(shape: tuple[int, int, int] | int, p: int = 10, seed: int = 0) -> Panel:
    """Generate a balanced 3-D Poisson panel.

    Parameters
    ----------
    shape : int or tuple of three ints
        ``(I, J, K)``; an int ``n`` means ``(n, n, n)``.
    p : int, default=10
        Columns in each of the ``i``, ``j`` and ``k`` blocks. Must satisfy
        ``p + 1 <= min(I, J, K)``, or the one-dimension blocks and the intercept
        would be collinear.
    seed : int, default=0
        Seed; the same seed gives the same panel.

    Returns
    -------
    Panel
    """
    if isinstance(shape, int | np.integer):
        shape = (int(shape),) * 3
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape!r}")
    if p < 0 or p + 1 > min(shape):
        raise ValueError(
            f"p={p} needs p + 1 <= min(I, J, K) = {min(shape)} for an identified model"
        )
    rng_coef, rng_x, rng_y = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )

    true_coef: dict[str, float] = {INTERCEPT: 0.5}
    # Half of the |beta| budget of 1.5 goes to the 11 "structural" slopes, half to the 3p others.
    for group in (("ijk", "ij", "ik", "jk"), ("i", "j", "k")):
        names = [name for lev in group for name in column_names(p, lev)]
        if not names:
            continue
        raw = rng_coef.uniform(-1.0, 1.0, size=len(names))
        raw *= 0.75 / np.abs(raw).sum()
        true_coef.update(zip(names, raw.tolist(), strict=True))

    blocks = {}
    for level in LEVELS:
        # Generated column-major per block, so that block[..., n] is a contiguous view.
        base = np.empty((level_width(level, p), *_level_shape(level, shape)))
        rng_x.random(out=base)
        base *= 2.0
        base -= 1.0
        blocks[level] = np.moveaxis(base, 0, -1)

    panel = Panel(shape, p, seed, blocks, np.empty(shape), true_coef)
    for i, v in iter_linear_predictor(panel, true_coef):
        np.exp(v, out=v)
        panel.y[i] = rng_y.poisson(v)
    return panel


def _coef_arrays(panel: Panel, coef: Mapping[str, float]) -> dict[str, np.ndarray]:
    return {
        lev: np.array([coef[n] for n in column_names(panel.p, lev)], dtype=float) for lev in LEVELS
    }


def iter_linear_predictor(
    panel: Panel, coef: Mapping[str, float]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, V[i])`` slab by slab, for coefficients given by name.

    Parameters
    ----------
    panel : Panel
    coef : mapping of str to float
        Every name of :func:`column_names` plus ``"intercept"``.

    Yields
    ------
    i : int
    v : ndarray of shape (J, K)
        A fresh array the caller may overwrite.
    """
    b = _coef_arrays(panel, coef)
    x = panel.blocks
    c_i = x["i"] @ b["i"] + coef[INTERCEPT]
    c_jk = x["jk"] @ b["jk"] + (x["j"] @ b["j"])[:, None] + (x["k"] @ b["k"])[None, :]
    c_ij = x["ij"] @ b["ij"]
    c_ik = x["ik"] @ b["ik"]
    x_ijk = x["ijk"]
    for i in range(panel.shape[0]):
        v = x_ijk[i, :, :, 0] * b["ijk"][0]
        for n in range(1, x_ijk.shape[-1]):
            v += x_ijk[i, :, :, n] * b["ijk"][n]
        v += c_jk
        v += c_ij[i][:, None]
        v += c_ik[i][None, :]
        v += c_i[i]
        yield i, v


def poisson_loglik(panel: Panel, coef: Mapping[str, float]) -> float:
    """Full Poisson log-likelihood ``sum(y V - exp(V) - log(y!))`` at ``coef``.

    Computed from the factored blocks, one slab at a time (no N-sized temporaries).
    """
    total = 0.0
    for i, v in iter_linear_predictor(panel, coef):
        y = panel.y[i]
        total += float(np.sum(y * v) - np.sum(np.exp(v)) - np.sum(gammaln(y + 1.0)))
    return total


# --------------------------------------------------------------------------- frames


def _code_dtype(n: int) -> type[np.signedinteger]:
    return np.int16 if n <= np.iinfo(np.int16).max else np.int32


def _codes(shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Level codes of ``axis`` for every cell of ``shape``, C order, smallest int dtype."""
    n = shape[axis]
    idx = np.arange(n, dtype=_code_dtype(n)).reshape(
        [-1 if a == axis else 1 for a in range(len(shape))]
    )
    return np.broadcast_to(idx, shape).ravel()


def to_cell_frame_and_tables(
    panel: Panel,
) -> tuple[pd.DataFrame, dict[str | tuple[str, str], pd.DataFrame], np.ndarray]:
    """Present the panel as a cell frame plus one table per lower level.

    Returns
    -------
    cells : DataFrame
        N rows in C order over ``(i, j, k)``, columns ``i, j, k`` (integer level
        codes) and ``x_ijk_0, x_ijk_1``. The covariate columns share memory with the
        panel's block where pandas allows it.
    tables : dict
        ``{("i", "j"): frame with i, j, x_ij_*; ("i", "k"): ...; ("j", "k"): ...;
        "i": frame with i, x_i_*; "j": ...; "k": ...}``.
    y : ndarray of shape (N,)
        Response aligned with the rows of ``cells`` (a view of ``panel.y``).
    """
    shape = panel.shape
    cols: dict[str, np.ndarray] = {d: _codes(shape, a) for a, d in enumerate(DIMS)}
    x_ijk = panel.blocks["ijk"]
    for n, name in enumerate(column_names(panel.p, "ijk")):
        cols[name] = x_ijk[..., n].reshape(-1)
    cells = pd.DataFrame(cols, copy=False)

    tables: dict[str | tuple[str, str], pd.DataFrame] = {}
    for level in LEVELS[1:]:
        block = panel.blocks[level]
        lshape = block.shape[:-1]
        tcols = {d: _codes(lshape, a) for a, d in enumerate(level)}
        for n, name in enumerate(column_names(panel.p, level)):
            tcols[name] = block[..., n].reshape(-1)
        key = tuple(level) if len(level) > 1 else level
        tables[key] = pd.DataFrame(tcols)
    return cells, tables, panel.y.reshape(-1)


def to_long_frame(panel: Panel) -> tuple[pd.DataFrame, np.ndarray]:
    """The cell frame with every covariate broadcast onto it (N x (3 + P) columns).

    As large as the dense matrix: only a fallback for a design that takes no tables.
    """
    cells, _, y = to_cell_frame_and_tables(panel)
    extra = {}
    for level in LEVELS[1:]:
        block = panel.blocks[level]
        index = [slice(None) if d in level else None for d in DIMS]
        for n, name in enumerate(column_names(panel.p, level)):
            extra[name] = np.broadcast_to(block[..., n][tuple(index)], panel.shape).ravel()
    return pd.concat([cells, pd.DataFrame(extra, copy=False)], axis=1), y


# --------------------------------------------------------------------------- dense


def dense_column_names(p: int, intercept: bool = False) -> list[str]:
    """Column order of :func:`to_dense`: ``["intercept"]`` if asked, then LEVELS order."""
    return ([INTERCEPT] if intercept else []) + column_names(p)


def dense_nbytes(shape: tuple[int, int, int] | int, p: int, intercept: bool = False) -> int:
    """Bytes of the float64 matrix :func:`to_dense` would allocate."""
    if isinstance(shape, int | np.integer):
        shape = (int(shape),) * 3
    n_cols = 11 + 3 * p + int(intercept)
    return int(np.prod(shape)) * n_cols * 8


def to_dense(panel: Panel, intercept: bool = False) -> tuple[np.ndarray, list[str]]:
    """Expand the blocks into the dense N x P float64 matrix the peers need.

    One C-contiguous allocation, filled by broadcasting each block into each
    ``(J, K, P)`` slab of its ``(I, J, K, P)`` view; row
    ``ravel_multi_index((i, j, k), (I, J, K))``. Peak memory: the matrix itself.

    Parameters
    ----------
    panel : Panel
    intercept : bool, default=False
        Prepend a column of ones named ``"intercept"`` (for statsmodels).

    Returns
    -------
    X : ndarray of shape (N, P + intercept)
    names : list of str
        :func:`dense_column_names`.
    """
    names = dense_column_names(panel.p, intercept)
    X = np.empty((panel.n_cells, len(names)))
    X4 = X.reshape((*panel.shape, len(names)))  # a view, never a copy
    spans, start = [], int(intercept)
    for level in LEVELS:
        width = panel.blocks[level].shape[-1]
        index = tuple(slice(None) if d in level else None for d in DIMS[1:])
        spans.append((level, slice(start, start + width), (*index, slice(None))))
        start += width
    # Slab by slab: each i-slab's pages are first touched, and filled, while in cache
    # (filling column block by column block over all of X is ~4x slower here).
    for i in range(panel.shape[0]):
        slab = X4[i]
        if intercept:
            slab[..., 0] = 1.0
        for level, cols, index in spans:
            block = panel.blocks[level]
            if level.startswith("i"):
                block = block[i]
            slab[..., cols] = block[index]
    return X, names
