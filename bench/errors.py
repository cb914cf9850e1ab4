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
    """A runtime failed to start or answer; recorded against one cell, the run goes on.

    message says what failed, hint what to do about it (as BenchError's), log_tail is the server's own
    last output (never advice), so a reader can tell the harness's words from the runtime's."""

    def __init__(self, message: str, log_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
        self.hint = hint

    def summary(self) -> str:
        """One line for a cell's error: the message, the hint, then the last line the server logged."""
        last = self.log_tail.strip().splitlines()[-1:]
        return (self.message + (f" (hint: {self.hint})" if self.hint else "")
                + (f" | last log line: {last[0][:200]}" if last else ""))
