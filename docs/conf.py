"""Sphinx configuration of the panelglm documentation.

Build with warnings as errors, from the repository root::

    python -m pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Document the checkout the docs live in, even if another copy is installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # for gallery_order

import panelglm  # noqa: E402

project = "panelglm"
author = "The panelglm developers"
copyright = "The panelglm developers"
release = panelglm.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
root_doc = "index"

# --- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters sections say it better
# Class pages list their methods through the autosummary template; numpydoc's
# own member tables would duplicate them.
numpydoc_show_class_members = False
numpydoc_attributes_as_param_list = True
# Docstrings are checked as they are rendered (the build treats warnings as
# errors): every parameter documented, with a type and a description.
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "PR06", "PR07", "PR08", "GL08"}

# --- examples gallery ----------------------------------------------------------
# The examples run at full size by default (half a minute to a minute in
# all on two cores); set PANELGLM_EXAMPLE_SMALL=1 for a quicker build at
# reduced sizes.
os.environ.setdefault("MPLBACKEND", "Agg")
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Run every plot_*.py script and the README's quickstart.py.
    "filename_pattern": r"/(plot_.*|quickstart)\.py$",
    "within_subsection_order": "gallery_order.QuickstartFirst",
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "plot_gallery": "True",
    # Fail the build (not just warn) when an example raises.
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
}

# --- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"panelglm {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
