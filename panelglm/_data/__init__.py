"""The layout of the data.

Long frames and dimension tables laid out on the panel grid (PanelDesign, PanelData,
rows, column layouts, input checks).

Imports only point down: this subpackage may import ``_util``, and the package root's
``exceptions`` and ``_version``; nothing imports it from below.
"""
