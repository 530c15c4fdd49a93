"""Runs the pipeline: watcher -> readers -> snapshots -> sections -> cache.

Two threads of its own, each owning its state:

- *ingest* takes debounced paths from the watcher (and does a full rescan
  at start and every ``rescan_interval``), lets each reader ``sync`` the
  paths that are its own, and keeps the newest immutable snapshot per reader;
- *render* turns the snapshots of each changed section into a pre-rendered
  section of the exposition cache.

A reader that fails keeps its previous snapshot: the last good values stay
served, the failure is counted and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Sequence, Set, Tuple

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric

from exporter import selfmetrics
from exporter.config import WatchConfig
from exporter.debounce import Debouncer
from exporter.exposition import ExpositionCache, render_section
from exporter.logs import fields
from exporter.sources import Reader, Snapshot
from exporter.watcher import Watcher

log = logging.getLogger(__name__)

EXPORTER_SECTION = "exporter"
PROCESS_SECTION = "process"
PROCESS_REFRESH_SECONDS = 5.0


class Runtime:
    def __init__(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig):
        self._readers: List[Tuple[str, Reader]] = [(s, r) for s, rs in readers.items() for r in rs]
        self._watch_config = watch
        self.cache = ExpositionCache(list(readers) + [EXPORTER_SECTION, PROCESS_SECTION])
        self._snapshots: Dict[Reader, Snapshot] = {}
        self._failures: Counter = Counter()
        self._rescans = 0
        self._debouncer = Debouncer(watch.debounce, watch.debounce_max_wait)
        patterns = [p for _, reader in self._readers for p in reader.patterns]
        self.watcher = Watcher(patterns, watch, self._on_path, self._debouncer.request_rescan,
                               on_status_change=lambda: self._mark_dirty({EXPORTER_SECTION}))
        self._process_registry = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self._process_registry)
        self._render_cond = threading.Condition()
        self._dirty: Set[str] = set()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._ingested_once = False
        self._threads = [
            threading.Thread(target=self._ingest_loop, name="ingest", daemon=True),
            threading.Thread(target=self._render_loop, name="render", daemon=True),
        ]

    def start(self) -> None:
        self.watcher.start()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._debouncer.wake()
        with self._render_cond:
            self._render_cond.notify()
        self.watcher.stop()
        for thread in self._threads:
            thread.join(timeout=1.0)
        self.close_readers()

    def close_readers(self) -> None:
        for _, reader in self._readers:
            reader.close()

    def ingest_once(self) -> None:
        """One full read and render in the calling thread, without watching (``--once``)."""
        self._rescans += 1
        sections = self._sync(None) | {PROCESS_SECTION}
        for name in self._render_order(sections | {EXPORTER_SECTION}):
            self._render(name)

    def alive(self) -> bool:
        """Whether every thread of the pipeline still runs (the systemd watchdog asks)."""
        return all(t.is_alive() for t in self._threads) and self.watcher.alive()

    def request_rescan(self) -> None:
        self._debouncer.request_rescan()

    # -- ingest ----------------------------------------------------------------

    def _on_path(self, path: str) -> None:
        if any(pattern.matches(path) for _, reader in self._readers for pattern in reader.patterns):
            self._debouncer.add(path)

    def _ingest_loop(self) -> None:
        next_rescan = time.monotonic()
        while not self._stop.is_set():
            paths, rescan = self._debouncer.take(max(0.0, next_rescan - time.monotonic()))
            if self._stop.is_set():
                return
            full = rescan or time.monotonic() >= next_rescan
            if full:
                next_rescan = time.monotonic() + self._watch_config.rescan_interval
                self._rescans += 1
            changed = self._sync(None if full else paths)
            self._ingested_once = self._ingested_once or full
            self._mark_dirty(changed | {EXPORTER_SECTION})

    def _sync(self, paths) -> Set[str]:
        changed = set()
        for section, reader in self._readers:
            wanted = None if paths is None else {p for p in paths if any(pt.matches(p) for pt in reader.patterns)}
            if wanted is not None and not wanted:
                continue
            try:
                self._snapshots[reader] = reader.sync(wanted)
            except Exception:  # noqa: BLE001 - keep serving the last good snapshot
                self._failures[reader.kind] += 1
                log.exception("reader failed; keeping its last good values")
                continue
            changed.add(section)
        return changed

    # -- render ----------------------------------------------------------------

    def _mark_dirty(self, sections: Iterable[str]) -> None:
        with self._render_cond:
            self._dirty.update(sections)
            self._render_cond.notify()

    def _render_loop(self) -> None:
        next_process = 0.0
        while not self._stop.is_set():
            with self._render_cond:
                if not self._dirty:
                    self._render_cond.wait(max(0.0, next_process - time.monotonic()))
                dirty, self._dirty = self._dirty, set()
            if time.monotonic() >= next_process:
                dirty.add(PROCESS_SECTION)
                next_process = time.monotonic() + PROCESS_REFRESH_SECONDS
            if self._stop.is_set():
                return
            for name in self._render_order(dirty):
                self._render(name)
            if self._ingested_once and not self.ready.is_set() and not self._dirty:
                self.ready.set()

    @staticmethod
    def _render_order(dirty: Set[str]) -> List[str]:
        """The exporter section last: it reports the other sections' renders."""
        return sorted(dirty, key=lambda name: name == EXPORTER_SECTION)

    def _render(self, section: str) -> None:
        """Replaces one section of the cache; on failure the previous render stays served."""
        try:
            self.cache.update({section: render_section(self._families(section))})
        except Exception:  # noqa: BLE001 - one bad section must not break the scrape
            log.exception("rendering a section failed; serving its previous render",
                          extra=fields(section=section))

    def _families(self, section: str) -> List[Metric]:
        if section == PROCESS_SECTION:
            return list(self._process_registry.collect())
        if section == EXPORTER_SECTION:
            return list(selfmetrics.families(self.status(), self.cache.sections()))
        snapshots = dict(self._snapshots)
        return [f for s, reader in self._readers if s == section and reader in snapshots
                for f in reader.families(snapshots[reader])]

    def status(self) -> selfmetrics.RuntimeStatus:
        snapshots = list(dict(self._snapshots).values())
        return selfmetrics.RuntimeStatus(
            files=tuple(f for snapshot in snapshots for f in snapshot.files),
            watches=self.watcher.statuses(),
            reader_failures=dict(self._failures),
            rescans=self._rescans,
            watch_restarts=self.watcher.restarts,
        )
