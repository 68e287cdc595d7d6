"""The code in the documentation's pages runs and prints what the pages say.

Every ``>>>`` example in ``docs/*.rst`` and ``docs/user_guide/*.rst`` is run
as a doctest (the docstrings' examples run through ``--doctest-modules``).
"""

from __future__ import annotations

import doctest
from pathlib import Path

import matplotlib
import pytest

DOCS = Path(__file__).parents[1] / "docs"
# sg_execution_times.rst is written by the docs build, not a page.
PAGES = sorted(
    p
    for p in [*DOCS.glob("*.rst"), *DOCS.glob("user_guide/*.rst")]
    if p.name != "sg_execution_times.rst"
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_pages_found():
    assert DOCS / "getting_started.rst" in PAGES


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples(page):
    matplotlib.use("Agg")
    result = doctest.testfile(
        str(page), module_relative=False, optionflags=FLAGS, raise_on_error=False, verbose=False
    )
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} examples failed in {page.name}"
    )
