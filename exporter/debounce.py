"""Collects changed paths and releases each after a quiet time or a maximum wait.

A writer appending in bursts produces many events per line; reading after a
short quiet time reads the burst once. The maximum wait bounds how stale a
file that never goes quiet can get.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, Optional, Set, Tuple


class Debouncer:
    def __init__(self, quiet: float, max_wait: float):
        self._quiet = quiet
        self._max_wait = max_wait
        self._cond = threading.Condition()
        self._pending: Dict[str, Tuple[float, float]] = {}
        self._rescan = False
        self._closed = False

    def add(self, path: str) -> None:
        now = time.monotonic()
        with self._cond:
            first, _ = self._pending.get(path, (now, now))
            self._pending[path] = (first, now)
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
        """Waits up to ``timeout`` for due paths; returns them and whether a rescan is asked for."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                due = {p for p, (first, last) in self._pending.items() if self._is_due(now, first, last)}
                if due or self._rescan or now >= deadline or self._closed:
                    for path in due:
                        del self._pending[path]
                    rescan, self._rescan = self._rescan, False
                    return due, rescan
                self._cond.wait(min(deadline, self._next_due()) - now)

    def _is_due(self, now: float, first: float, last: float) -> bool:
        return now - last >= self._quiet or now - first >= self._max_wait

    def _next_due(self) -> float:
        soonest: Optional[float] = None
        for first, last in self._pending.values():
            due = min(last + self._quiet, first + self._max_wait)
            soonest = due if soonest is None else min(soonest, due)
        return soonest if soonest is not None else float("inf")
