"""A wall-clock bound for in-process tests: code that should end fast raises instead of hanging."""
from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds`` (SIGALRM)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
