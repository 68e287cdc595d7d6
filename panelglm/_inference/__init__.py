"""Inference.

Covariances (model, robust, cluster), small-sample corrections and the summary.

Imports only point down: this subpackage may import ``_util``, ``_data``, ``_model``,
``_engine``, ``_ident``, and the package root's ``exceptions`` and ``_version``; nothing
imports it from below.
"""
