"""Collects changed paths and releases them in batches, after a quiet time or a maximum wait.

A writer appending in bursts produces many events per line; reading after a
short quiet time reads the burst once. The maximum wait bounds how stale a
file that never goes quiet can get.

A path is *due* when it has been quiet for ``quiet`` or waited ``max_wait``
since its first event. When one path is due, every pending path is released
with it: one sync reads many files for about the cost of one (a reader's
snapshot and the section's render are paid per sync, not per file). Every
path pending after a release had its first event after it, so no batch
follows the previous one sooner than ``min(quiet, max_wait)``: 200 files each
appending a line a second make a few batches per ``max_wait``, not one sync
per file, and no path waits longer than ``max_wait`` after its first event.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Set, Tuple


class Debouncer:
    def __init__(self, quiet: float, max_wait: float, clock: Callable[[], float] = time.monotonic):
        """``clock`` is the monotonic time in seconds (a fake one in tests)."""
        self._quiet = quiet
        self._max_wait = max_wait
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: Dict[str, Tuple[float, float]] = {}  # path -> (first, last) event time
        self._rescan = False
        self._closed = False

    def add(self, path: str) -> None:
        now = self._clock()
        with self._cond:
            previous = self._pending.get(path)
            self._pending[path] = (now if previous is None else previous[0], now)
            if previous is None:  # a later event of a pending path only makes it due later: no need to wake
                self._cond.notify()

    def configure(self, quiet: float, max_wait: float) -> None:
        """New timings (a reload changed ``watch``), from the next path on."""
        with self._cond:
            self._quiet, self._max_wait = quiet, max_wait
            self._cond.notify_all()

    def request_rescan(self) -> None:
        with self._cond:
            self._rescan = True
            self._cond.notify()

    def close(self) -> None:
        """Makes ``take`` return at once, now and from now on (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Tuple[Set[str], bool]:
        """Waits up to ``timeout`` for a batch; returns its paths and whether a rescan is asked for.

        A rescan takes every pending path with it: the full read that
        follows covers them.
        """
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                due_at = self._batch_due_at()
                released = now >= due_at or self._rescan
                if released or self._closed or now >= deadline:
                    paths = set(self._pending) if released else set()
                    if released:
                        self._pending.clear()
                    rescan, self._rescan = self._rescan, False
                    return paths, rescan
                self._cond.wait(min(deadline, due_at) - now)

    def _batch_due_at(self) -> float:
        """When the first pending path is due (infinity when none is pending)."""
        quiet, max_wait = self._quiet, self._max_wait
        return min((min(last + quiet, first + max_wait) for first, last in self._pending.values()),
                   default=float("inf"))
