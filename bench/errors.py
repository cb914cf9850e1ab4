"""User-facing errors: a one-line message plus a hint. Anything else escaping the CLI is a bug."""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix (bad input, missing prerequisite); the CLI maps it to exit code 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class DeployError(Exception):
    """A runtime failed to start or answer; recorded against one cell, the run goes on."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
