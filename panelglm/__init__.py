"""panelglm: generalized linear models for panel data, fitted in factored form.

The public names are the estimators, the design transformer and the data
container it produces, and :func:`show_versions` for bug reports.
"""

from ._data.design import PanelDesign
from ._data.panel import PanelData
from ._data.rows import PanelRows
from ._estimators.duration import PanelExponentialRegressor
from ._estimators.estimators import (
    PanelLinearRegressor,
    PanelLogitRegressor,
    PanelPoissonRegressor,
)
from ._estimators.estimators_gamma_nb import PanelGammaRegressor, PanelNegativeBinomialRegressor
from ._show_versions import show_versions
from ._version import __version__

__all__ = [
    "PanelData",
    "PanelDesign",
    "PanelExponentialRegressor",
    "PanelGammaRegressor",
    "PanelLinearRegressor",
    "PanelLogitRegressor",
    "PanelNegativeBinomialRegressor",
    "PanelPoissonRegressor",
    "PanelRows",
    "__version__",
    "show_versions",
]
