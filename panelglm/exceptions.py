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
    """Covariates the data cannot identify were dropped (reported as NaN).

    Raised as an error instead with ``collinear="raise"``.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from panelglm import PanelLinearRegressor
    >>> from panelglm.exceptions import CollinearityWarning
    >>> X = np.column_stack([np.arange(6.0), 2 * np.arange(6.0)])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = PanelLinearRegressor().fit(X, [0.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    >>> [w.category.__name__ for w in caught]
    ['CollinearityWarning']
    >>> est.collinear_names_, bool(np.isnan(est.coef_[1]))
    (['x1'], True)
    """


class SeparationWarning(ConvergenceWarning):
    """Rows whose likelihood is maximized only at an infinite coefficient were dropped.

    A subclass of scikit-learn's ``ConvergenceWarning``: without the drop the
    maximum likelihood estimate does not exist and Newton would diverge.

    Examples
    --------
    The example of ppmlhdfe's separation primer: ``x`` is positive only where
    ``y`` is 0, so its coefficient would go to minus infinity.

    >>> import warnings
    >>> import numpy as np
    >>> from panelglm import PanelPoissonRegressor
    >>> X = np.array([[1.0], [1.0], [0.0], [0.0], [0.0], [0.0]])
    >>> y = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = PanelPoissonRegressor().fit(X, y)
    >>> [w.category.__name__ for w in caught]
    ['SeparationWarning']
    >>> est.separated_rows_
    array([ True,  True, False, False, False, False])
    >>> round(float(np.exp(est.intercept_)), 6)  # the mean of the other rows
    1.5
    """


class SparsePanelWarning(UserWarning):
    """An unbalanced panel's full grid is much larger than its data.

    Examples
    --------
    >>> import warnings
    >>> import pandas as pd
    >>> from panelglm import PanelDesign
    >>> df = pd.DataFrame({"a": range(5), "b": range(5), "c": range(5), "x": range(5)})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     data = PanelDesign(dims=["a", "b", "c"], balanced=False).fit_transform(df)
    >>> [w.category.__name__ for w in caught], data.n_rows, data.n_cells
    (['SparsePanelWarning'], 5, 125)
    """
