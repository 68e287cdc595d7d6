"""Warnings panelglm emits when it changes what it fits, so users can filter them.

Examples
--------
>>> import warnings
>>> from panelglm.exceptions import CollinearityWarning
>>> with warnings.catch_warnings():
...     warnings.simplefilter("error", CollinearityWarning)  # make dropping an error
...     pass
"""

from __future__ import annotations

from sklearn.exceptions import ConvergenceWarning

__all__ = ["CollinearityWarning", "SeparationWarning", "SparsePanelWarning"]


class CollinearityWarning(UserWarning):
    """Coefficients the data cannot identify were dropped (reported as NaN).

    Raised as an error instead with ``collinear="raise"``.
    """


class SeparationWarning(ConvergenceWarning):
    """Cells whose likelihood is maximized only at an infinite coefficient were dropped.

    A subclass of scikit-learn's ``ConvergenceWarning``: without the drop the
    maximum likelihood estimate does not exist and Newton would diverge.
    """


class SparsePanelWarning(UserWarning):
    """An unbalanced panel's full grid is much larger than its data."""
