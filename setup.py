"""Build of the optional compiled sweep (``panelglm._engine._sweep``).

Everything else about the package is declared in ``pyproject.toml``. The
extension uses only the Python C API; if it cannot be compiled the install
still succeeds, and panelglm runs its passes with numpy instead.
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3"]

setup(
    ext_modules=[
        Extension(
            "panelglm._engine._sweep",
            sources=["panelglm/_engine/_sweep.c"],
            depends=[
                "panelglm/_engine/_sweep_simd.h",
                "panelglm/_engine/_sweep_loops.h",
                "panelglm/_engine/_sweep_read.h",
                "panelglm/_engine/_sweep_lines.h",
            ],
            extra_compile_args=flags,
            optional=True,
        )
    ]
)
