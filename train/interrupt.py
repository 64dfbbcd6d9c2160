"""Ctrl-C during training: the first asks for a stop at the next safe point, the second aborts at once.

A safe point is between phases of a step before any weight changed (the step is then redone on
resume) or after a step; the loop saves a checkpoint there, so an interrupted run loses nothing.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

__all__ = ["StopRequest", "Abandon", "deferred_sigint"]


class StopRequest:
    """Set by the first SIGINT; the loop reads ``requested`` at each safe point."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        """The SIGINT handler: the first call asks for a stop, the second raises KeyboardInterrupt."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the current phase and saving a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr)


class Abandon(Exception):
    """Raised inside a step when a stop was requested before any weight changed."""


@contextlib.contextmanager
def deferred_sigint() -> Iterator[StopRequest]:
    """Route SIGINT to a :class:`StopRequest` while the block runs (in the main thread; elsewhere a no-op)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = signal.signal(signal.SIGINT, stop.handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
