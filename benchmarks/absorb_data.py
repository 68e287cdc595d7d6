"""Panels with absorbed fixed effects for ``bench_absorb.py``, written once to parquet.

Three scenarios, each generated from a seed (the data depend on the sizes and the
seed only) and written to a directory that every fitting process reads:

- ``gravity``: exporter x importer x year trade flows, Poisson, with
  exporter-year, importer-year and exporter-importer effects; two covariates that
  vary by exporter-importer-year (the cell): an RTA dummy that switches on in a
  pair-specific year (or never) and a continuous ``tariff``.
- ``firm``: firm x year, three firm-year covariates (``x1`` correlated with the
  firm effect), firm and year effects, with a linear, a Poisson and a binary
  (logit) response.
- ``retail``: customer x product x week, Poisson, customer and product-week
  effects; a cell-level covariate in the cell frame, a customer-product and a
  customer-week covariate in dimension tables keyed on those pairs.

The directory holds ``cells.parquet`` (dimension columns, cell-level covariates,
responses), one ``table_<key>.parquet`` per dimension table and ``meta.json``
(:class:`Meta`). Cells are written in blocks of first-dimension levels, each from
its own seeded generator, so a 1e8-cell panel never sits in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SCENARIOS = ("gravity", "firm", "retail")
DEFAULT_SIZES = {
    "gravity": {"exporters": 150, "years": 20},
    "firm": {"firms": 200_000, "years": 20},
    "retail": {"customers": 20_000, "products": 100, "weeks": 52},
}
_BLOCK_CELLS = 2_000_000  # cells per generated block, at most (one level if it has more)
_CODE = {name: n for n, name in enumerate(SCENARIOS)}


@dataclass
class Meta:
    """What a fitting process needs to know about a generated panel."""

    scenario: str
    dims: list[str]
    shape: list[int]
    absorb: list[list[str]]
    covariates: list[str]
    # table key (dims joined by "+") -> [file name, covariate columns]
    tables: dict[str, list[Any]] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)  # family -> column
    cluster: list[str] | None = None
    true_coef: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    def table_keys(self) -> dict[str, tuple[str, ...]]:
        """Table file -> its key dimensions."""
        return {f: tuple(k.split("+")) for k, (f, _) in self.tables.items()}


def _blocks(shape: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of the first dimension, about ``_BLOCK_CELLS`` cells each."""
    per = int(np.prod(shape[1:]))
    step = max(1, _BLOCK_CELLS // per)
    for start in range(0, shape[0], step):
        yield start, min(shape[0], start + step)


def _grid(start: int, stop: int, rest: tuple[int, ...]) -> list[np.ndarray]:
    """The dimension codes of the cells whose first code is in ``[start, stop)``, C order."""
    idx = np.indices((stop - start, *rest), dtype=np.int32).reshape(1 + len(rest), -1)
    idx[0] += start
    return list(idx)


def _rng(seed: int, scenario: str, block: int) -> np.random.Generator:
    return np.random.default_rng([seed, _CODE[scenario], block + 1])  # block -1: the effects


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


# ------------------------------------------------------------------------ scenarios


def _gravity(sizes: dict[str, int], seed: int) -> tuple[Meta, Callable, dict]:
    e, t = sizes["exporters"], sizes["years"]
    rng = _rng(seed, "gravity", -1)
    a_et = rng.normal(0.0, 0.5, (e, t))  # exporter-year
    b_it = rng.normal(0.0, 0.5, (e, t))  # importer-year
    c_ei = rng.normal(0.0, 0.5, (e, e))  # exporter-importer
    rta_start = rng.integers(0, 2 * t, (e, e))  # the year an RTA starts; >= t: never
    beta = {"rta": 0.3, "tariff": -0.2}
    meta = Meta(
        scenario="gravity",
        dims=["exporter", "importer", "year"],
        shape=[e, e, t],
        absorb=[["exporter", "year"], ["importer", "year"], ["exporter", "importer"]],
        covariates=list(beta),
        responses={"poisson": "y"},
        cluster=["exporter", "importer"],
        true_coef=beta,
        seed=seed,
    )

    def block(k: int, start: int, stop: int) -> pd.DataFrame:
        ex, im, yr = _grid(start, stop, (e, t))
        r = _rng(seed, "gravity", k)
        rta = (yr >= rta_start[ex, im]).astype(np.float64)
        tariff = r.normal(0.0, 1.0, ex.size)
        eta = 0.5 + a_et[ex, yr] + b_it[im, yr] + c_ei[ex, im]
        eta += beta["rta"] * rta + beta["tariff"] * tariff
        y = r.poisson(np.exp(eta)).astype(np.float64)
        return pd.DataFrame(
            {"exporter": ex, "importer": im, "year": yr, "rta": rta, "tariff": tariff, "y": y}
        )

    return meta, block, {}


def _firm(sizes: dict[str, int], seed: int) -> tuple[Meta, Callable, dict]:
    f, t = sizes["firms"], sizes["years"]
    rng = _rng(seed, "firm", -1)
    alpha = rng.normal(0.0, 0.5, f)
    gamma = rng.normal(0.0, 0.2, t)
    beta = {"x1": 0.5, "x2": -0.3, "x3": 0.2}
    meta = Meta(
        scenario="firm",
        dims=["firm", "year"],
        shape=[f, t],
        absorb=[["firm"], ["year"]],
        covariates=list(beta),
        responses={"linear": "y_linear", "poisson": "y_poisson", "logit": "y_logit"},
        cluster=["firm"],
        true_coef=beta,
        seed=seed,
    )

    def block(k: int, start: int, stop: int) -> pd.DataFrame:
        firm, year = _grid(start, stop, (t,))
        r = _rng(seed, "firm", k)
        n = firm.size
        x1 = 0.5 * alpha[firm] + r.normal(0.0, 1.0, n)  # correlated with the firm effect
        x2 = r.normal(0.0, 1.0, n)
        x3 = r.uniform(-1.0, 1.0, n)
        eta = alpha[firm] + gamma[year] + beta["x1"] * x1 + beta["x2"] * x2 + beta["x3"] * x3
        return pd.DataFrame(
            {
                "firm": firm,
                "year": year,
                "x1": x1,
                "x2": x2,
                "x3": x3,
                "y_linear": eta + r.normal(0.0, 1.0, n),
                "y_poisson": r.poisson(np.exp(eta)).astype(np.float64),
                "y_logit": (r.uniform(size=n) < _sigmoid(eta)).astype(np.float64),
            }
        )

    return meta, block, {}


def _retail(sizes: dict[str, int], seed: int) -> tuple[Meta, Callable, dict]:
    c, p, w = sizes["customers"], sizes["products"], sizes["weeks"]
    rng = _rng(seed, "retail", -1)
    a_c = rng.normal(0.0, 0.5, c)
    b_pw = rng.normal(0.0, 0.5, (p, w))
    x_cp = rng.normal(0.0, 1.0, (c, p))
    x_cw = rng.normal(0.0, 1.0, (c, w))
    beta = {"x_cell": 0.2, "x_cp": 0.3, "x_cw": -0.2}
    meta = Meta(
        scenario="retail",
        dims=["customer", "product", "week"],
        shape=[c, p, w],
        absorb=[["customer"], ["product", "week"]],
        covariates=list(beta),
        tables={
            "customer+product": ["table_customer_product.parquet", ["x_cp"]],
            "customer+week": ["table_customer_week.parquet", ["x_cw"]],
        },
        responses={"poisson": "y"},
        cluster=["customer"],
        true_coef=beta,
        seed=seed,
    )
    cp = np.indices((c, p), dtype=np.int32).reshape(2, -1)
    cw = np.indices((c, w), dtype=np.int32).reshape(2, -1)
    tables = {
        "table_customer_product.parquet": pd.DataFrame(
            {"customer": cp[0], "product": cp[1], "x_cp": x_cp.ravel()}
        ),
        "table_customer_week.parquet": pd.DataFrame(
            {"customer": cw[0], "week": cw[1], "x_cw": x_cw.ravel()}
        ),
    }

    def block(k: int, start: int, stop: int) -> pd.DataFrame:
        cu, pr, wk = _grid(start, stop, (p, w))
        r = _rng(seed, "retail", k)
        x_cell = r.normal(0.0, 1.0, cu.size)
        eta = -1.0 + a_c[cu] + b_pw[pr, wk] + beta["x_cell"] * x_cell
        eta += beta["x_cp"] * x_cp[cu, pr] + beta["x_cw"] * x_cw[cu, wk]
        y = r.poisson(np.exp(eta)).astype(np.float64)
        return pd.DataFrame({"customer": cu, "product": pr, "week": wk, "x_cell": x_cell, "y": y})

    return meta, block, tables


_MAKERS = {"gravity": _gravity, "firm": _firm, "retail": _retail}


def write_panel(scenario: str, sizes: dict[str, int], out_dir: Path, seed: int = 0) -> Meta:
    """Generate a scenario's panel and write it to ``out_dir``; return its :class:`Meta`.

    ``sizes`` takes the keys of ``DEFAULT_SIZES[scenario]`` (missing ones default).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = {**DEFAULT_SIZES[scenario], **sizes}
    meta, block, tables = _MAKERS[scenario](sizes, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for k, (start, stop) in enumerate(_blocks(tuple(meta.shape))):
            table = pa.Table.from_pandas(block(k, start, stop), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out_dir / "cells.parquet", table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    for name, frame in tables.items():
        frame.to_parquet(out_dir / name, index=False)
    (out_dir / "meta.json").write_text(json.dumps(asdict(meta), indent=1))
    return meta


def read_meta(data_dir: Path) -> Meta:
    """The :class:`Meta` written beside a panel."""
    return Meta(**json.loads((Path(data_dir) / "meta.json").read_text()))


def read_cells(data_dir: Path, meta: Meta, family: str) -> tuple[pd.DataFrame, pd.Series]:
    """The cell frame (dimensions and cell-level covariates) and the family's response."""
    frame_covs = [c for c in meta.covariates if c not in _table_columns(meta)]
    y_col = meta.responses[family]
    import pyarrow.parquet as pq

    table = pq.read_table(
        Path(data_dir) / "cells.parquet", columns=[*meta.dims, *frame_covs, y_col]
    )
    # Each column's Arrow buffer is freed as it is converted, so the read does
    # not hold the panel twice (the fitting process's peak RSS counts it).
    cells = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    y = cells.pop(y_col)
    return cells, y


def read_tables(data_dir: Path, meta: Meta) -> dict[Any, pd.DataFrame]:
    """The dimension tables, keyed as ``PanelDesign(tables=...)`` takes them."""
    out: dict[Any, pd.DataFrame] = {}
    for key, (fname, _) in meta.tables.items():
        dims = tuple(key.split("+"))
        out[dims[0] if len(dims) == 1 else dims] = pd.read_parquet(Path(data_dir) / fname)
    return out


def _table_columns(meta: Meta) -> set[str]:
    return {c for _, cols in meta.tables.values() for c in cols}


def expand_tables(cells: pd.DataFrame, tables: dict[Any, pd.DataFrame], meta: Meta) -> None:
    """Add every table's covariates to ``cells`` as cell-level columns, in place.

    The generated tables hold every level combination of their key in C order of
    codes ``0..n-1`` (checked), so each cell's row is found by arithmetic on the
    codes rather than by a join over N rows.
    """
    for key, table in tables.items():
        dims = (key,) if isinstance(key, str) else key
        n = [meta.shape[meta.dims.index(d)] for d in dims]
        codes = np.indices(n).reshape(len(n), -1)
        if len(table) != codes.shape[1] or any(
            not np.array_equal(table[d].to_numpy(), codes[i]) for i, d in enumerate(dims)
        ):
            raise ValueError(f"table {key!r} is not the full grid of its key in code order")
        row = np.zeros(len(cells), dtype=np.int64)
        for d, size in zip(dims, n, strict=True):
            row = row * size + cells[d].to_numpy()
        for col in table.columns.difference(list(dims)):
            cells[col] = table[col].to_numpy()[row]
