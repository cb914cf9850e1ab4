"""Starting a process the way a terminal would, for tests that Ctrl-C it."""

from __future__ import annotations

import signal


def as_from_a_terminal() -> None:
    """preexec_fn for a process the test will Ctrl-C: SIGINT as a terminal delivers it. A job started in the
    background by a non-interactive shell (a CI runner's) inherits SIGINT ignored, and so would the harness,
    which then could not be tested for Ctrl-C at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
