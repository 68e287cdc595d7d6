"""The solvers.

Damped Newton and coordinate descent on a smooth objective.

Imports only point down: this subpackage may import ``_util``, and the package root's
``exceptions`` and ``_version``; nothing imports it from below.
"""
