"""A server-wide cap on concurrent runs, with a first-come queue: a class of 30 pressing Run at once on a
2-core server gets ``cap`` runs going and everyone else a place in the line, instead of 30 runs that
each crawl (and 30 copies of a model in memory).
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Callable

from ..engine import CancelFlag, check_cancel

DEFAULT_CAP_ENV = "WSSCL_MAX_RUNS"


def default_cap() -> int:
    """``$WSSCL_MAX_RUNS``, else one run per two CPU cores (one on a laptop): a run uses every core it gets."""
    text = os.environ.get(DEFAULT_CAP_ENV)
    if text:
        try:
            cap = int(text)
        except ValueError:
            raise ValueError(f"{DEFAULT_CAP_ENV} must be a whole number, got {text!r}") from None
        if cap < 1:
            raise ValueError(f"{DEFAULT_CAP_ENV} must be at least 1, got {cap}")
        return cap
    return max(1, (os.cpu_count() or 2) // 2)


class RunSlots:
    """At most ``cap`` holders at once; the others wait in arrival order and can see their place."""

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"The run cap must be at least 1, got {cap}.")
        self.cap = cap
        self._lock = threading.Condition()
        self._running: set[int] = set()
        self._queue: list[int] = []
        self._tickets = itertools.count(1)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def position(self, ticket: int) -> int:
        """0 while running (or done), else the place in the line (1 = next)."""
        with self._lock:
            return self._queue.index(ticket) + 1 if ticket in self._queue else 0

    def acquire(self, cancel: CancelFlag | None = None, on_wait: Callable[[int], None] | None = None,
                poll_s: float = 0.2) -> int:
        """Wait for a slot (first come, first served); returns the ticket to :meth:`release`.

        ``on_wait(position)`` is told the place in the line whenever it changes; a set cancel flag
        leaves the line with :class:`RunCancelled`.
        """
        with self._lock:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            last = None
            try:
                while not (self._queue[0] == ticket and len(self._running) < self.cap):
                    place = self._queue.index(ticket) + 1
                    if on_wait is not None and place != last:
                        on_wait(place)
                        last = place
                    check_cancel(cancel)
                    self._lock.wait(poll_s)
                self._queue.pop(0)
                self._running.add(ticket)
                self._lock.notify_all()
            except BaseException:
                self._queue.remove(ticket)
                self._lock.notify_all()
                raise
        return ticket

    def release(self, ticket: int) -> None:
        with self._lock:
            self._running.discard(ticket)
            self._lock.notify_all()


SERVER_SLOTS = RunSlots(default_cap())
