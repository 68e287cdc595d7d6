"""The model.

Families, the factored design and its kernels, the model's terms and how columns become
blocks.

Imports only point down: this subpackage may import ``_util``, ``_data``, and the
package root's ``exceptions`` and ``_version``; nothing imports it from below.
"""
