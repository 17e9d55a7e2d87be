"""Where the project's build put a fake vendor SDK (a cffi extension loaded as a plain library)."""

from __future__ import annotations

import importlib.util


def compiled_library(extension: str, what: str, source: str) -> str:
    """The path of ``extension``'s shared object, or FileNotFoundError saying how to build it.

    The fakes are cffi extension modules only so that the build compiles them;
    their SDK functions are exported, and the bindings load them by path.
    """
    spec = importlib.util.find_spec(extension)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"{what} ({extension}, compiled from {source}) is not built: run "
            "scripts/setup-env, or `.venv/bin/python -m pip install -e .` in an existing "
            "environment"
        )
    return spec.origin
