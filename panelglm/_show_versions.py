"""What panelglm runs on: versions, BLAS, threads, and whether the compiled sweep is in use.

The format follows :func:`sklearn.show_versions`. The compiled sweep is the
one part of panelglm whose presence is decided at install time (pip builds it
only where a C compiler is found) and at run time (``PANELGLM_NUMPY_PASS``),
so it gets its own section: a fit that runs several times slower than
expected is often a fit without it.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

from threadpoolctl import threadpool_info

from ._engine import compiled as _compiled
from ._model.families import FAMILIES
from ._model.families_gamma_nb import GAMMA, negative_binomial
from ._util import threads as _threads
from ._version import __version__

# Distribution names, as pip knows them (matplotlib: the examples and docs extras).
_DEPENDENCIES = ("numpy", "scipy", "pandas", "scikit-learn", "threadpoolctl", "matplotlib")


def _sys_info() -> dict[str, str]:
    return {
        "python": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "machine": platform.platform(),
    }


def _deps_info() -> dict[str, str | None]:
    # Read from the packages' metadata, not by importing them.
    deps: dict[str, str | None] = {"panelglm": __version__}
    for name in _DEPENDENCIES:
        try:
            deps[name] = version(name)
        except PackageNotFoundError:
            deps[name] = None
    return deps


def _sweep_info() -> dict[str, str]:
    """Whether the compiled sweep is built and in use, and if not, why."""
    compiled = (f for f in (*FAMILIES, GAMMA, negative_binomial(1.0)) if f.sweep_code is not None)
    families = ", ".join(sorted(f.name for f in compiled))
    if _compiled._sweep is None:
        # _compiled swallowed the ImportError; importing again recovers its message.
        try:
            importlib.import_module("panelglm._engine._sweep")
        except ImportError as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:  # pragma: no cover - importable now but not when panelglm was imported
            why = "it could not be imported when panelglm was"
        return {
            "built": f"no ({why}; installed without a C compiler?)",
            "in use": "no (not built: every pass runs with numpy)",
        }
    built = f"yes ({getattr(_compiled._sweep, '__file__', 'panelglm._engine._sweep')})"
    setting = os.environ.get("PANELGLM_NUMPY_PASS", "")
    if not _compiled.enabled():
        return {
            "built": built,
            "in use": f"no (PANELGLM_NUMPY_PASS={setting} is set: every pass runs with numpy)",
        }
    return {
        "built": built,
        "in use": f"yes (fits with dtype=float64 of the {families} families)",
    }


def _threads_info() -> dict[str, str]:
    cores = _threads.available_cores()
    return {
        "cores available": str(cores),
        "numpy passes": f"{_threads.default_threads()} thread(s), BLAS held to 1 inside a pass",
        "compiled sweep": f"{cores} thread(s) with n_threads=None (one part of a pass each)",
    }


def _section(title: str, info: dict, width: int, file: TextIO | None) -> None:
    print(f"\n{title}:", file=file)
    for key, value in info.items():
        print(f"{key:>{width}}: {value}", file=file)


def show_versions(file: TextIO | None = None) -> None:
    """Print what panelglm runs on, for bug reports and for checking an install.

    The Python and platform, the versions of panelglm and its dependencies,
    the BLAS libraries (from threadpoolctl), the threads panelglm's passes
    use, and whether the optional compiled sweep was built and is in use,
    with the reason when it is not. Without it every pass runs with numpy:
    the same numbers, more slowly.

    Parameters
    ----------
    file : file-like, default=None
        Where to write, as :func:`print`'s ``file``; ``None`` is standard output.

    Returns
    -------
    None
        The information is printed.

    See Also
    --------
    sklearn.show_versions : The same for scikit-learn, whose format this follows.

    Examples
    --------
    >>> import panelglm
    >>> panelglm.show_versions()
    System:
    ...
    Compiled sweep:
     built: ...
    in use: ...
    """
    print("System:", file=file)
    for key, value in _sys_info().items():
        print(f"{key:>10}: {value}", file=file)
    _section("Python dependencies", _deps_info(), 13, file)
    _section("Threads", _threads_info(), 15, file)
    # BLAS and OpenMP libraries loaded, with the threads they would use.
    libs = threadpool_info()
    print("\nthreadpoolctl info:", file=file)
    for i, lib in enumerate(libs):
        if i:
            print(file=file)
        for key, value in lib.items():
            print(f"{key:>15}: {value}", file=file)
    if not libs:
        print("   no BLAS or OpenMP library found", file=file)
    _section("Compiled sweep", _sweep_info(), 6, file)
