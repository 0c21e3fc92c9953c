"""The one domain error of the CLI, caught once at the boundary and mapped to an exit code."""

from __future__ import annotations

from gridctl.infra.errors import InfraError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class GridctlError(InfraError):
    """A problem the user can act on: printed as one line, never as a traceback.

    It extends the infra layer's error so that one ``except`` at the boundary catches both.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message, exit_code)
