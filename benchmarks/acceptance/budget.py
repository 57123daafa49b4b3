"""A time budget for the acceptance run: what is left, what a section may spend, and a hard stop.

The run has ``--budget SECONDS`` in all (one call on a lent GPU machine is limited). Sections run in
order of value; each may spend what is left minus the least time every later section needs to be
worth starting (:meth:`Budget.limit`), so a long first section cannot starve the others of their
minimum. Work that runs in this process is stopped at its limit by :func:`time_limit` (an alarm signal);
work in subprocesses by their timeouts.

Example::

    >>> b = Budget(100.0, clock=lambda: 0.0)
    >>> b.limit(reserve=30.0)
    70.0
    >>> Budget(None).limit(reserve=30.0) is None   # no budget: no limit
    True
"""
from __future__ import annotations

import contextlib
import signal
import time
from typing import Callable, Iterator, Optional


class BudgetExceeded(Exception):
    """Raised inside :func:`time_limit` when its seconds are up."""


class Budget:
    """``seconds`` from construction on (``None``: unlimited), read with ``clock``."""

    def __init__(self, seconds: Optional[float], clock: Callable[[], float] = time.perf_counter):
        if seconds is not None and seconds <= 0:
            raise ValueError(f"--budget must be a positive number of seconds, got {seconds}")
        self.seconds, self.clock, self.start = seconds, clock, clock()

    def left(self) -> Optional[float]:
        """Seconds left (may be negative once spent); ``None`` without a budget."""
        return None if self.seconds is None else self.seconds - (self.clock() - self.start)

    def limit(self, reserve: float = 0.0) -> Optional[float]:
        """What a section may spend: the seconds left minus ``reserve`` (the later sections' minimum)."""
        left = self.left()
        return None if left is None else left - reserve


@contextlib.contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the block after ``seconds`` (``None``: no limit; main thread only).

    Uses ``SIGALRM``: Python code (torch.compile's tracing and code generation included) is stopped at its
    next bytecode; a single long native call returns first.
    """
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise BudgetExceeded(f"no time left ({seconds:.0f} s)")

    def on_alarm(signum, frame):
        raise BudgetExceeded(f"stopped after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
