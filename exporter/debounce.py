"""Batches of changes: how long the watcher gathers them, and each ingest's inbox of them.

The watcher reads the inotify queue once per batch: after the first change
it waits ``batch_seconds`` (``watch.debounce``, at most
``watch.debounce_max_wait``; 100 ms by default) and then takes every event
queued meanwhile. A writer appending in bursts (Rush opens, appends and
closes per line) costs one read of its file per batch, however many events
it raised, and one sync reads every file changed in the batch for about the
cost of one: a reader's snapshot and the section's render are paid per
sync, not per file. No path waits longer than a batch before it is handed
over.

The ``Inbox`` holds what was handed to one ingest and not yet taken: the
ingest takes all of it at once (one sync), so what arrives while a sync
runs (or while a batched source waits out its ``batch_seconds``) joins the
next one.
"""

from __future__ import annotations

import threading
from typing import Iterable, Set, Tuple

from exporter.config import WatchConfig


def batch_seconds(config: WatchConfig) -> float:
    """How long changes are gathered, from the first one, before they are handed over as one batch."""
    return min(config.debounce, config.debounce_max_wait)


class Inbox:
    """Changed paths and rescan requests for one ingest, from any thread; taken all at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paths: Set[str] = set()
        self._rescan = False
        self._closed = False

    def add(self, paths: Iterable[str]) -> None:
        with self._cond:
            before = len(self._paths)
            self._paths.update(paths)
            if len(self._paths) != before:
                self._cond.notify()

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
        """Waits up to ``timeout`` for something to take; returns the paths and whether a rescan is asked for.

        A rescan takes every pending path with it: the full read that follows covers them.
        """
        with self._cond:
            if not (self._paths or self._rescan or self._closed):
                self._cond.wait(timeout)
            paths, self._paths = self._paths, set()
            rescan, self._rescan = self._rescan, False
            return paths, rescan
