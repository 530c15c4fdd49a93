"""One source's readers on a thread of their own.

Each source (Rush, Royal Render) has its own debouncer, rescan timer and
thread, so a slow source (an RR read waiting on a hung worker for up to its
timeout) never delays another source's freshness. While a file of the source
is down, the source is rescanned every few seconds, so it recovers without
waiting for the next change of the file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable, Collection, Dict, Optional, Sequence

from exporter.config import WatchConfig
from exporter.debounce import Debouncer
from exporter.sources import Reader, Snapshot

log = logging.getLogger(__name__)

#: A file that failed to read is tried again this soon (a half-written file, a restarting worker).
RETRY_SECONDS = 2.0


class SourceIngest:
    def __init__(self, section: str, readers: Sequence[Reader], watch: WatchConfig,
                 published: Callable[[str], None]):
        self.section = section
        self.readers = list(readers)
        self._watch = watch
        self._published = published
        self.debouncer = Debouncer(watch.debounce, watch.debounce_max_wait)
        self.snapshots: Dict[Reader, Snapshot] = {}
        # Zero from the start: increase() cannot see a counter's first step from nothing.
        self.failures: Counter = Counter({reader.kind: 0 for reader in self.readers})
        self.rescans = 0
        self.ingested_once = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ingest-" + section, daemon=True)

    def owns(self, path: str) -> bool:
        return any(pattern.matches(path) for reader in self.readers for pattern in reader.patterns)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: Optional[float] = 1.0) -> None:
        """Stops the thread; ``timeout=None`` waits for a read in progress (before its readers are closed)."""
        self._stop.set()
        self.debouncer.close()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def sync(self, paths: Optional[Collection[str]]) -> None:
        """Lets each reader read its share of ``paths`` (None: a full rescan)."""
        if paths is None:
            self.rescans += 1
        for reader in self.readers:
            wanted = None if paths is None else {p for p in paths if any(pt.matches(p) for pt in reader.patterns)}
            if wanted is not None and not wanted and reader.patterns:
                continue  # a reader without patterns reports on its source: it is synced on every pass
            try:
                self.snapshots[reader] = reader.sync(wanted)
            except Exception:  # noqa: BLE001 - keep serving the last good snapshot
                self.failures[reader.kind] += 1
                log.exception("reader failed; keeping its last good values")
        if paths is None:
            self.ingested_once.set()

    def _loop(self) -> None:
        next_rescan = time.monotonic()
        while not self._stop.is_set():
            paths, rescan = self.debouncer.take(max(0.0, next_rescan - time.monotonic()))
            if self._stop.is_set():
                return
            full = rescan or time.monotonic() >= next_rescan
            if full:
                next_rescan = time.monotonic() + self._watch.rescan_interval
            self.sync(None if full else paths)
            self._published(self.section)
            if self._any_file_down():
                next_rescan = min(next_rescan, time.monotonic() + RETRY_SECONDS)

    def _any_file_down(self) -> bool:
        return any(not f.up for snapshot in self.snapshots.values() for f in snapshot.files)
