"""Small helpers every layer may use.

Warnings with the caller's location, threads and BLAS limits, shared docstring pieces,
and telling Dask's lazy arrays apart (without importing Dask).

Imports only point down: this subpackage may import no other subpackage, and the package
root's ``exceptions`` and ``_version``; nothing imports it from below.
"""
