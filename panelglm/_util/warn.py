"""Warnings that point at the caller's line, from whatever depth of panelglm they come.

A fixed ``stacklevel`` counts the frames between the ``warn`` and the user's
call, which differ from one entry point to the next (``fit``, ``predict``,
``summary``, through a pipeline or not) and change whenever the code is
refactored. :func:`warn` instead walks the stack to the first frame outside
the package (and outside scikit-learn's wrapper around ``fit``) and reports
the warning there. Python 3.12's ``skip_file_prefixes`` does the same, but
panelglm supports 3.10.
"""

from __future__ import annotations

import os
import sys
import warnings
from functools import lru_cache

from sklearn.base import _fit_context

# This module is in a subpackage: the package is its directory's parent.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep

# scikit-learn's _fit_context wraps fit in a function of its own: the same
# code object for every method it decorates, so one sample identifies it.
_WRAPPERS = frozenset(
    {_fit_context(prefer_skip_nested_validation=True)(lambda self: None).__code__}
)


@lru_cache(maxsize=512)
def _in_package(filename: str) -> bool:
    # "<doctest ...>", "<stdin>" and the like are never files of the package.
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_PACKAGE)


def caller_stacklevel() -> int:
    """The ``stacklevel`` that names the first caller outside panelglm.

    For a ``warnings.warn`` made in the function that calls this one.

    Returns
    -------
    int
    """
    frame = sys._getframe(1)  # the function that will call warnings.warn: stacklevel 1
    level = 1
    while frame is not None and (
        _in_package(frame.f_code.co_filename) or frame.f_code in _WRAPPERS
    ):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside panelglm.

    Parameters
    ----------
    message : str
        The warning's text.
    category : type of Warning
        Its class.
    """
    warnings.warn(message, category, stacklevel=caller_stacklevel())
