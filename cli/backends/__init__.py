"""Backends by name, imported lazily so that only the one in use loads."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from gridctl.cli.backends.base import Backend
from gridctl.cli.errors import GridctlError

BACKENDS = {
    "local": "gridctl.cli.backends.local:LocalBackend",
    "aws": "gridctl.cli.backends.aws:AwsBackend",
}


def get_backend(name: str, home: Path) -> Backend:
    if name not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise GridctlError(
            f"the {name!r} backend is not available in this version of gridctl (known: {known})"
        )
    module, cls = BACKENDS[name].split(":")
    return getattr(import_module(module), cls)(home)
