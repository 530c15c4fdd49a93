"""Gives freed heap memory back to the operating system after renders, and keeps long-lived objects out of GC scans.

A render builds and drops megabytes of small objects (metric families,
lines, joined bodies). CPython returns its own arenas, but glibc keeps the
freed space of its heap and per-thread arenas mapped, so the resident size
only ever grows by the size of the largest render. ``malloc_trim`` hands it
back, but the pages it releases fault in again at the next render, which
costs about a millisecond of kernel time: so the heap is trimmed at most
once per ``TRIM_INTERVAL_SECONDS``, after the renders of that interval.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import time
from typing import Callable, Optional

TRIM_INTERVAL_SECONDS = 10.0


def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, found among the symbols the interpreter already has loaded (``dlopen(NULL)``):
    no library search, which would run ``ldconfig -p`` in a child process at every start."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """Trims after renders, at most once per interval; a render inside the interval leaves a trim pending."""

    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS):
        self._trim = _malloc_trim()
        self._interval = interval
        self._last = float("-inf")
        self._pending = False

    def rendered(self) -> None:
        """A render dropped what it built: a trim is pending. Not done here: a render may be a scrape's, whose
        allocations would wait for the trim's hold on the heap."""
        self._pending = self._trim is not None

    def trim_if_due(self) -> None:
        if self._pending and self._trim is not None and time.monotonic() - self._last >= self._interval:
            self._trim(0)
            self._last = time.monotonic()
            self._pending = False

    def wait_timeout(self) -> Optional[float]:
        """How long the render loop may sleep before the pending trim is due (None: no trim pending)."""
        if not self._pending:
            return None
        return max(0.0, self._last + self._interval - time.monotonic())


def freeze_long_lived() -> None:
    """Takes every object alive now out of the cyclic collector's scans (``gc.freeze``), once the first reads are
    rendered: the configuration, the readers' state and the first render live as long as the process, and a full
    collection over them took 14-33 ms at 72,000 series, in whichever thread allocated, a scrape's among them
    (3-8 ms after). Frozen objects are still freed when no longer referenced."""
    gc.freeze()
