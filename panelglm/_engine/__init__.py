"""The pass engine.

One pass over the cells for the loss, gradient and Hessian, with its plan, its numpy and
compiled implementations, its Dask form (a task per slab of a Dask-backed panel: the
client's ``dask_engine``, the tasks' ``dask_slabs``), and the penalized objective built
on it.

Imports only point down: this subpackage may import ``_util``, ``_model``, ``_solve``,
and the package root's ``exceptions`` and ``_version``; nothing imports it from below.
"""
