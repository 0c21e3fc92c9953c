"""The infra layer's error: a problem with the cloud or Terraform the user can act on.

The CLI boundary prints it as one line, like its own errors (infra does not import the CLI).
"""

from __future__ import annotations


class InfraError(Exception):
    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
