"""One progress hook type for the whole harness, after Locust's `locust/event.py` EventHook.

Long-running library code (building environments and images, calibrating, running a benchmark) fires
typed events; whoever started the work listens: the terminal, a log file, a test, or nobody. Firing with
no listener costs nothing, so library functions need no "quiet" default callbacks, and several listeners
can watch the same work. Bottom layer: imports nothing from bench.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
Listener = Callable[[T], None]


class EventHook(Generic[T]):
    """Listeners of one event type. Unlike Locust's hook, `fire` takes one typed event (mypy checks what
    is fired and what is listened for) and a listener's exception propagates: a broken display is a bug,
    not a log line. Safe to fire from worker threads (builds run in a pool)."""

    def __init__(self, *listeners: Listener[T]) -> None:
        self._listeners: tuple[Listener[T], ...] = listeners
        self._lock = threading.Lock()

    def add_listener(self, listener: Listener[T]) -> Listener[T]:
        """Subscribe; returns the listener, so this also works as a decorator."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
        return listener

    def remove_listener(self, listener: Listener[T]) -> None:
        """Unsubscribe (ValueError if it was not subscribed, as with list.remove)."""
        with self._lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def fire(self, event: T) -> None:
        for listener in self._listeners:  # a snapshot: listeners added meanwhile see the next event
            listener(event)


@dataclass(frozen=True)
class Message:
    """A line of progress for the user ("training iris-logreg", "ceiling round 1/3")."""

    text: str


@dataclass(frozen=True)
class Status:
    """The latest state of one of several pieces of work going on at once (a runtime's image build)."""

    subject: str
    text: str


@dataclass(frozen=True)
class Completed(Generic[T]):
    """One item of a known number is finished (a parity row: done of total)."""

    item: T
    done: int
    total: int


# Adapters for library functions that still take a plain callback (they are being moved to hooks).


def say_to(hook: EventHook[Message]) -> Callable[[str], None]:
    """A `say(text)` callback that fires Message events."""
    return lambda text: hook.fire(Message(text))


def report_to(hook: EventHook[Status]) -> Callable[[str, str], None]:
    """A `report(subject, text)` callback that fires Status events."""
    return lambda subject, text: hook.fire(Status(subject, text))


def completed_to(hook: EventHook[Completed[T]]) -> Callable[[T, int, int], None]:
    """An `on_row(item, done, total)` callback that fires Completed events."""
    return lambda item, done, total: hook.fire(Completed(item, done, total))
