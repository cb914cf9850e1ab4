"""Everything this harness process started and must not leave behind, in one registry.

Servers, containers, InferenceServices and port-forwards are all "something with stop()". Each target
adds what it creates the moment it exists and the resource leaves when it is stopped, so Ctrl-C, SIGTERM
(the CLI turns it into KeyboardInterrupt) and interpreter exit (atexit, registered once here) stop exactly
what is still live, whichever target made it. A SIGKILLed harness runs none of this: local servers die with
their parent (PR_SET_PDEATHSIG), and the Docker target reaps containers of dead owners on its next run.
"""

from __future__ import annotations

import atexit
import threading
from typing import Protocol


class Stoppable(Protocol):
    def stop(self) -> None: ...


class OwnedResources:
    """Live resources in the order they were created; stopped newest first, as nested resources need
    (a port-forward before the InferenceService it reaches)."""

    def __init__(self) -> None:
        self._live: dict[int, Stoppable] = {}
        self._lock = threading.Lock()
        # set on Ctrl-C, SIGTERM or SIGHUP: resources stop with a short grace, since the user is waiting
        self.interrupted = False

    def add(self, resource: Stoppable) -> None:
        with self._lock:
            self._live[id(resource)] = resource

    def discard(self, resource: Stoppable) -> None:
        with self._lock:
            self._live.pop(id(resource), None)

    def live(self) -> list[Stoppable]:
        with self._lock:
            return list(self._live.values())

    def stop_all(self) -> int:
        """Stop every live resource, newest first; returns how many there were. One failing to stop does
        not keep the others running: the first error is raised once all were tried."""
        stopped = 0
        failure: Exception | None = None
        for resource in reversed(self.live()):
            try:
                resource.stop()
            except Exception as exc:  # stop the rest, then report the first problem
                failure = failure or exc
            self.discard(resource)
            stopped += 1
        if failure is not None:
            raise failure
        return stopped


    def kill_all(self) -> None:
        """A second interrupt: no grace for anyone (a resource's kill(), else its stop())."""
        for resource in reversed(self.live()):
            try:
                getattr(resource, "kill", resource.stop)()
            except Exception:  # the next resource still has to go
                continue
            self.discard(resource)


OWNED = OwnedResources()
atexit.register(OWNED.stop_all)


def stop_all_owned() -> int:
    """Stop everything any target of this process started and is still live (the CLI's Ctrl-C path)."""
    return OWNED.stop_all()
