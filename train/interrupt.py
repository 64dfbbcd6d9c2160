"""Ctrl-C during training: the first asks for a stop at the next safe point, the second aborts at once.

A safe point is between phases of a step before any weight changed (the step is then redone on
resume) or after a step; the loop saves a checkpoint there, so an interrupted run loses nothing.
Under a launcher a rank may get one Ctrl-C twice: the terminal's copy (when the rank runs in the
terminal's process group) and the one the launcher forwards. ``repeat_grace`` makes a second signal
that close to the first the same request. (torchrun 2.13 starts its ranks in sessions of their own
and forwards one copy.)
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Any, Iterator

__all__ = ["StopRequest", "Abandon", "deferred_sigint"]


class StopRequest:
    """Set by the first SIGINT; the loop reads ``requested`` at each safe point."""

    def __init__(self, repeat_grace: float = 0.0) -> None:
        self.requested = False
        self.repeat_grace = repeat_grace  # seconds after the first signal in which another is the same request
        self._first_at = 0.0

    def handler(self, signum: int, frame: Any) -> None:
        """The SIGINT handler: the first call asks for a stop, a later one raises KeyboardInterrupt."""
        now = time.monotonic()
        if self.requested:
            if now - self._first_at < self.repeat_grace:
                return
            raise KeyboardInterrupt
        self.requested = True
        self._first_at = now
        print("\nstopping after the current phase and saving a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr)


class Abandon(Exception):
    """Raised inside a step when a stop was requested before any weight changed."""


@contextlib.contextmanager
def deferred_sigint(repeat_grace: float = 0.0) -> Iterator[StopRequest]:
    """Route SIGINT to a :class:`StopRequest` while the block runs (in the main thread; elsewhere a no-op)."""
    stop = StopRequest(repeat_grace)
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = signal.signal(signal.SIGINT, stop.handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
