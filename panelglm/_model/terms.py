"""Model terms: which columns and fixed effects enter, and how they become blocks.

A :class:`ModelSpec` is fixed when an estimator is fitted. It lists the terms in
the order users see the coefficients and remembers the levels of categorical
columns and fixed effects, so that :func:`build_design` lays out the training
data and any new data with the same coefficients in the same places.
"""

from __future__ import annotations

from collections.abc import Hashable
from itertools import pairwise, product

import numpy as np
import pandas as pd

from .._data.layout import show_value
from .._data.panel import PanelData
from .._util.lazy import carry, is_lazy
from .blocks import DenseBlock, IndicatorBlock
from .conform import conform
from .factored import FactoredDesign
from .shifts import check_magnitude, shift_of
from .spec import ModelSpec, Term

INTERCEPT = "Intercept"
# numpy's arrays have at most this many axes; a pass holds arrays of one axis
# more than the panel (a block's columns, a chunk's rows), so a panel has fewer.
NUMPY_MAX_NDIM = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0b1" else 32


def _fe_names(dims: tuple[Hashable, ...], levels: tuple[pd.Index, ...]) -> list[str]:
    label = ":".join(str(d) for d in dims)
    return [f"{label}[{':'.join(str(v) for v in combo)}]" for combo in product(*levels)]


def _makers(term: Term) -> list[str]:
    """What gives each of a term's coefficient names, for error messages."""
    if term.kind == "intercept":
        return ["the intercept"]
    if term.kind == "numeric":
        return [f"column {show_value(term.source[0])}"]
    if term.kind == "categorical":
        kept = term.levels[0][1:] if term.drop_first else term.levels[0]
        col = show_value(term.source[0])
        return [f"level {show_value(c)} of categorical column {col}" for c in kept]
    combos = list(product(*term.levels))[1 if term.drop_first else 0 :]
    if len(term.source) == 1:
        fe = show_value(term.source[0])
        return [f"level {show_value(c)} of the fixed effect on {fe}" for (c,) in combos]
    return [
        "level ("
        + ", ".join(f"{d}={show_value(v)}" for d, v in zip(term.source, combo, strict=True))
        + f") of the fixed effect on {term.source!r}"
        for combo in combos
    ]


def check_unique_names(terms: list[Term]) -> None:
    """Reject a model in which two coefficients would get the same name.

    Names are made from column names (converted with ``str``), categorical
    levels and fixed-effect levels, so a column named ``"Intercept"``,
    ``"g[b]"`` next to a categorical ``g``, ``"year[1]"`` next to a year
    fixed effect, or columns ``1`` and ``"1"`` would give two coefficients
    one name, and every result indexed by name (``bse_``, ``summary()``)
    would mix them up.

    Raises
    ------
    ValueError
        Naming each clash: the name, and the columns or levels that give it.
    """
    first: dict[str, tuple[str, Term]] = {}
    clashes: list[tuple[str, str, str]] = []
    columns: list[Hashable] = []  # the user's columns in a clash: the ones to rename
    categorical: list[Hashable] = []  # categorical columns whose levels clash
    dims: list[Hashable] = []  # dimensions whose fixed-effect levels clash
    intercept = False
    for term in terms:
        for name, maker in zip(term.names, _makers(term), strict=True):
            if name not in first:
                first[name] = (maker, term)
                continue
            other, other_term = first[name]
            clashes.append((name, other, maker))
            for t in (other_term, term):
                intercept |= t.kind == "intercept"
                if t.kind in ("numeric", "categorical") and t.source[0] not in columns:
                    columns.append(t.source[0])
                if t.kind == "categorical" and t.source[0] not in categorical:
                    categorical.append(t.source[0])
                if t.kind == "fixed_effect":
                    dims += [d for d in t.source if d not in dims]
    if not clashes:
        return
    shown = "; ".join(f"{name!r} would name both {a} and {b}" for name, a, b in clashes[:5])
    more = f" (and {len(clashes) - 5} more clashes)" if len(clashes) > 5 else ""
    parts = [f"rename column(s) {columns}"] if columns else []
    if categorical:
        parts.append(f"recode the categories of {categorical}")
    if dims:  # levels such as "1:2" can make two level combinations one name
        parts.append(f"recode the levels of dimension(s) {dims}")
    advice = " or ".join(parts)
    if intercept:
        advice += ", or pass fit_intercept=False if the column is meant as the intercept"
    raise ValueError(
        f"Coefficient names must be unique: {shown}{more}. They are made from column "
        f"names (converted with str()) and levels; {advice}."
    )


def build_model_spec(
    data: PanelData, fit_intercept: bool, exclude: set[str], reference: bool = False
) -> ModelSpec:
    """Choose the terms of a model from the data's covariates and fixed effects.

    Coefficient names are strings: column names that are not are converted
    with ``str``.

    Parameters
    ----------
    data : PanelData
        Training data.
    fit_intercept : bool
        Whether to include an intercept.
    exclude : set of str
        Columns used otherwise (offset, trials, event).
    reference : bool, default=False
        Whether categorical terms drop a reference level even without an
        intercept (absorbed fixed effects hold the constant instead).

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        If two coefficients would get the same name (see
        :func:`check_unique_names`), or the panel has too many dimensions.
    """
    if len(data.dims) >= NUMPY_MAX_NDIM:
        raise ValueError(
            f"The panel has {len(data.dims)} dimensions; panelglm fits at most "
            f"{NUMPY_MAX_NDIM - 1}: its passes hold arrays of one axis more than the "
            f"panel, and numpy's arrays have at most {NUMPY_MAX_NDIM}. A dimension with "
            "one level distinguishes no rows: leave it out of dims."
        )
    terms: list[Term] = []
    # As in patsy's full-rank coding: every categorical term drops its first
    # level, except the first one when there is no intercept to absorb it.
    reference_needed = fit_intercept or reference
    if fit_intercept:
        terms.append(Term("intercept", (), (INTERCEPT,)))
    for name in data.covariates:
        if name in exclude:
            continue
        spec = data.spec[name]
        if spec.is_categorical:
            cats = [str(c) for c in spec.categories]
            kept = cats[1:] if reference_needed else cats
            terms.append(
                Term(
                    "categorical",
                    (name,),
                    tuple(f"{name!s}[{c}]" for c in kept),
                    (spec.categories,),
                    reference_needed,
                    column=spec,
                )
            )
            reference_needed = True
        else:
            lo, hi, mean = data.column_stats(name)
            shift = shift_of(lo, hi, mean) if fit_intercept else 0.0
            check_magnitude(name, lo, hi, shift)
            terms.append(Term("numeric", (name,), (str(name),), shift=shift, column=spec))
    for fe in data.fixed_effects:
        levels = tuple(data.levels[data.dims.index(d)] for d in fe)
        names = _fe_names(fe, levels)
        terms.append(
            Term(
                "fixed_effect",
                fe,
                tuple(names[1:] if reference_needed else names),
                levels,
                reference_needed,
            )
        )
        reference_needed = True
    check_unique_names(terms)
    return ModelSpec(dims=data.dims, terms=tuple(terms))


def _fe_codes(term: Term, data: PanelData) -> tuple[tuple[int, ...], np.ndarray]:
    axes = tuple(data.dims.index(d) for d in term.source)
    positions = []
    for d, a, fitted in zip(term.source, axes, term.levels, strict=True):
        pos = fitted.get_indexer(data.levels[a])
        if np.any(pos < 0):
            unseen = list(data.levels[a][pos < 0])
            raise ValueError(
                f"Level(s) {unseen[:10]} of dimension {d!r} were not seen in fit, and the "
                f"model has a fixed effect on {d!r}, so it cannot predict for them."
            )
        positions.append(pos)
    flat = np.ravel_multi_index(
        np.meshgrid(*positions, indexing="ij"), tuple(len(lv) for lv in term.levels)
    )
    return axes, flat - 1 if term.drop_first else flat


def _numeric_block(data: PanelData, axes: tuple[int, ...], terms: list[Term]) -> np.ndarray:
    """The numeric columns of one axis set, side by side on a last axis.

    Cell-level columns of rows not in grid order are gathered copies: each is
    laid out straight into the block, so the panel does not keep a second
    copy of every one (2 N-sized arrays a column instead of 1).
    """
    gathered = len(terms) > 1 and len(axes) == len(data.dims) and not data.in_grid_order
    if not gathered:
        values = []
        for term in terms:
            v = data.numeric(term.source[0])[0]
            values.append(v - term.shift if term.shift else v)  # a copy only when shifted
        return stack_columns(values)
    block = None
    for q, term in enumerate(terms):
        v = data.numeric(term.source[0], cache=False)[0]
        if block is None:
            block = np.empty((len(terms), *v.shape), dtype=v.dtype)
        elif np.result_type(block.dtype, v.dtype) != block.dtype:
            block = block.astype(np.result_type(block.dtype, v.dtype))
        if term.shift:
            np.subtract(v, term.shift, out=block[q])
        else:
            block[q] = v
    return np.moveaxis(block, 0, -1)


def stack_columns(columns: list[np.ndarray]) -> np.ndarray:
    """Columns side by side on a last axis, stored column by column.

    Each column stays contiguous, as the kernels read them one at a time.
    When the columns already sit at equal distances in one buffer (as pandas
    keeps the columns of a frame built from one 2-D block), the result is a
    read-only view of that buffer instead of a copy: for a cell-level block
    of a large panel, that copy would be the largest array of the fit.
    """
    first = columns[0]
    if is_lazy(first):  # Dask: the tasks lay each slab out for the kernels
        import dask.array as da

        return carry(lambda *cols: da.stack(cols, axis=-1), *columns)
    if len(columns) == 1:  # one column: a view with a last axis of one
        view = first[..., np.newaxis]
        view.flags.writeable = False
        return view
    if all(
        c.shape == first.shape and c.dtype == first.dtype and c.flags.c_contiguous for c in columns
    ):
        ptrs = [c.__array_interface__["data"][0] for c in columns]
        gap = ptrs[1] - ptrs[0]
        root = first
        while isinstance(root.base, np.ndarray):
            root = root.base
        lo = root.__array_interface__["data"][0]
        inside = lo <= min(ptrs) and max(ptrs) + first.nbytes <= lo + root.nbytes
        same_root = all(np.shares_memory(c, root) for c in columns)
        if gap > 0 and inside and same_root and all(b - a == gap for a, b in pairwise(ptrs)):
            view = np.lib.stride_tricks.as_strided(
                first, (*first.shape, len(columns)), (*first.strides, gap), writeable=False
            )
            return view
    return np.moveaxis(np.stack(columns, axis=0), 0, -1)


def build_design(spec: ModelSpec, data: PanelData) -> tuple[FactoredDesign, np.ndarray]:
    """Lay out the model's blocks on ``data``.

    Numeric columns that vary along the same axes share one block, so the
    kernels contract them in one matrix product.

    Parameters
    ----------
    spec : ModelSpec
        The fitted terms.
    data : PanelData
        Training or new data with the same dimensions; its columns are laid
        out as they were fitted (see :func:`conform`).

    Returns
    -------
    design : FactoredDesign
        Blocks in internal coefficient order.
    order : ndarray of int
        ``coef_user = coef_internal[order]``.
    """
    data = conform(spec, data)
    # The intercept stays internal coefficient 0 and numeric blocks follow it;
    # indicator blocks come last. Each block carries its users' positions.
    lead: list[tuple[DenseBlock, list[int]]] = []
    tail: list[tuple[IndicatorBlock, list[int]]] = []
    numeric: dict[tuple[int, ...], tuple[list[np.ndarray], list[str], list[int]]] = {}
    pos = 0
    for term in spec.terms:
        idx = list(range(pos, pos + len(term.names)))
        pos += len(term.names)
        if term.kind == "intercept":
            lead.append((DenseBlock((), np.ones(1), term.names), idx))
        elif term.kind == "numeric":
            axes = data.spec[term.source[0]].axes
            cols, names, where = numeric.setdefault(axes, ([], [], []))
            cols.append(term)
            names.append(term.names[0])
            where += idx
        elif term.kind == "categorical":
            codes, axes = data.category_codes(term.source[0])
            codes = codes - 1 if term.drop_first else codes
            tail.append((IndicatorBlock(axes, codes, term.names), idx))
        else:
            axes, codes = _fe_codes(term, data)
            tail.append((IndicatorBlock(axes, codes, term.names), idx))
    for axes, (cols, names, where) in numeric.items():
        lead.append((DenseBlock(axes, _numeric_block(data, axes, cols), tuple(names)), where))
    blocks = [blk for blk, _ in lead + tail]
    user_index = np.array([i for _, ix in lead + tail for i in ix], dtype=np.intp)
    design = FactoredDesign(shape=tuple(data.shape), blocks=blocks)
    return design, np.argsort(user_index)
