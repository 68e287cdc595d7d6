"""Identification.

Collinear covariates, separation and its certificate.

Imports only point down: this subpackage may import ``_util``, ``_data``, ``_model``,
``_solve``, ``_engine``, and the package root's ``exceptions`` and ``_version``; nothing
imports it from below.
"""
