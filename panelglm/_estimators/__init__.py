"""The estimators.

The shared base (fit, predict, score) and each family's scikit-learn estimator.

Imports only point down: this subpackage may import ``_util``, ``_data``, ``_model``,
``_solve``, ``_engine``, ``_ident``, ``_inference``, ``_absorb``, and the package root's
``exceptions`` and ``_version``; nothing imports it from below.
"""
