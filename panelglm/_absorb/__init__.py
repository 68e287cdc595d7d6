"""Absorbed fixed effects.

The effects' structure, their objective and Newton step, start, identification, scores
and the fit.

Imports only point down: this subpackage may import ``_util``, ``_data``, ``_model``,
``_solve``, ``_engine``, ``_ident``, ``_inference``, and the package root's
``exceptions`` and ``_version``; nothing imports it from below.
"""
