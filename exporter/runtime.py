"""Runs the pipeline: watcher -> readers -> snapshots -> sections -> cache.

Threads, each owning its state:

- one *ingest* thread per source (``exporter.ingest``) takes the debounced
  paths the watcher reports (and does a full rescan at start and every
  ``rescan_interval``), lets each reader ``sync`` the paths that are its own,
  and keeps the newest immutable snapshot per reader;
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
from typing import Dict, Iterable, List, Mapping, Sequence, Set

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric

from exporter import selfmetrics
from exporter.config import WatchConfig
from exporter.exposition import ExpositionCache, SectionRenderer
from exporter.ingest import SourceIngest
from exporter.logs import fields
from exporter.memory import HeapTrimmer
from exporter.sources import Described, Reader
from exporter.status import ReloadStatus, RuntimeStatus
from exporter.watcher import Watcher

log = logging.getLogger(__name__)

EXPORTER_SECTION = "exporter"
PROCESS_SECTION = "process"
PROCESS_REFRESH_SECONDS = 5.0  # process metrics are re-rendered at most this often, when scraped


class Runtime:
    def __init__(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig):
        self._watch = watch
        self._ingests = [SourceIngest(section, rs, watch, self._published) for section, rs in readers.items() if rs]
        self.cache = ExpositionCache(list(readers) + [EXPORTER_SECTION, PROCESS_SECTION])
        self.watcher = self._new_watcher()
        self.reload_status = ReloadStatus()
        self.web_reload_status = ReloadStatus()  # set by the daemon when the web config is re-read
        # Totals of ingests and watchers retired by reloads, so the global counters never go down.
        self._retired_failures: Counter = Counter()
        self._retired_rescans = 0
        self._retired_watch_restarts = 0
        self._retiring: List[SourceIngest] = []  # replaced by a reload, their last read still running
        self._retire_lock = threading.Lock()
        self._process_registry = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self._process_registry)
        self._render_cond = threading.Condition()
        self._dirty: Set[str] = set()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._render_thread = threading.Thread(target=self._render_loop, name="render", daemon=True)
        self._process_rendered_at = time.monotonic()
        self._renderers: Dict[str, SectionRenderer] = {}
        self._trimmer = HeapTrimmer()

    def start(self) -> None:
        self.watcher.start()
        for ingest in self._ingests:
            ingest.start()
        self._render_thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._render_cond:
            self._render_cond.notify()
        self.watcher.stop()
        for ingest in self._ingests:
            ingest.stop()
        self._render_thread.join(timeout=1.0)
        self.close_readers()

    def _new_watcher(self) -> Watcher:
        patterns = [p for ingest in self._ingests for reader in ingest.readers for p in reader.patterns]
        return Watcher(patterns, self._watch, self._on_path, self.request_rescan,
                       on_status_change=lambda: self._mark_dirty({EXPORTER_SECTION}))

    def readers(self) -> Dict[str, Sequence[Reader]]:
        """The readers of each source section now running."""
        return {ingest.section: tuple(ingest.readers) for ingest in self._ingests}

    def reconfigure(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig) -> None:
        """Swaps in new readers (a reloaded config) while running; call from one thread at a time.

        A section whose readers are the same objects keeps its ingest thread,
        given the new watch settings: its counters go on, and no second
        thread ever reads the same readers. Any other section's ingest is
        retired (see ``_retire``) without waiting
        for a read it has in progress. New threads (ingests, the watcher) are
        started before they are published, so ``alive()``, which the
        watchdog pings wait on from another thread, never sees one not yet
        running. The watcher is replaced; its start asks every source for a
        full rescan, so changes made during the swap are not lost.
        """
        old_ingests = self._ingests
        self._watch = watch
        kept = {ingest.section: ingest for ingest in old_ingests
                if tuple(ingest.readers) == tuple(readers.get(ingest.section, ()))}
        for ingest in kept.values():
            ingest.use(watch)
        ingests = []
        for section, section_readers in readers.items():
            if section in kept:
                ingests.append(kept[section])
            elif section_readers:
                ingest = SourceIngest(section, section_readers, watch, self._published)
                ingest.start()
                ingests.append(ingest)
        still_used = {id(reader) for ingest in ingests for reader in ingest.readers}
        with self._retire_lock:
            self._ingests = ingests
            retiring = [ingest for ingest in old_ingests if ingest not in ingests]
            self._retiring.extend(retiring)
        for ingest in retiring:
            self._retire(ingest, [reader for reader in ingest.readers if id(reader) not in still_used])
        self._swap_watcher()
        self._mark_dirty(set(readers) | {EXPORTER_SECTION})

    def _swap_watcher(self) -> None:
        """A watcher for the current readers' patterns, started before the old one stops."""
        watcher = self._new_watcher()
        watcher.start()
        with self._retire_lock:
            old, self.watcher = self.watcher, watcher
            self._retired_watch_restarts += old.restarts
        old.stop()

    def _retire(self, ingest: SourceIngest, dropped: Sequence[Reader]) -> None:
        """Stops an ingest replaced by a reload, on a thread of its own.

        A read in progress (an RR worker hung up to its ``read_timeout``) is
        left to finish before the dropped readers are closed, but nobody
        waits for it: the reload, the watchdog pings and the scrapes go on.
        Until then its counters stay in the totals, so they never go down.
        """
        def finish() -> None:
            ingest.stop(timeout=None)
            for reader in dropped:
                reader.close()
            with self._retire_lock:
                self._retiring.remove(ingest)
                self._retired_rescans += ingest.rescans
                self._retired_failures.update(ingest.failures)

        threading.Thread(target=finish, name="retire-" + ingest.section, daemon=True).start()

    def close_readers(self) -> None:
        for ingest in self._ingests:
            ingest.close()

    def ingest_once(self) -> None:
        """One full read and render in the calling thread, without watching (``--once``)."""
        for ingest in self._ingests:
            ingest.sync(None)
        sections = {ingest.section for ingest in self._ingests} | {PROCESS_SECTION, EXPORTER_SECTION}
        for name in self._render_order(sections):
            self._render(name)

    def alive(self) -> bool:
        """Whether every thread of the pipeline still runs (the systemd watchdog asks)."""
        threads_alive = self._render_thread.is_alive() and all(ingest.alive() for ingest in self._ingests)
        return threads_alive and self.watcher.alive()

    def request_rescan(self) -> None:
        for ingest in self._ingests:
            ingest.debouncer.request_rescan()

    def status_changed(self) -> None:
        """Re-renders the exporter's own metrics (after a reload, say)."""
        self._mark_dirty({EXPORTER_SECTION})

    def _on_path(self, path: str) -> None:
        for ingest in self._ingests:
            if ingest.owns(path):
                ingest.debouncer.add(path)

    def _published(self, section: str) -> None:
        self._mark_dirty({section, EXPORTER_SECTION})

    # -- render ----------------------------------------------------------------

    def _mark_dirty(self, sections: Iterable[str]) -> None:
        with self._render_cond:
            self._dirty.update(sections)
            self._render_cond.notify()

    def scraped(self):
        """The exposition for a scrape; process metrics older than 5 s are refreshed for the next one.

        Demand-driven: an exporter nobody scrapes does no periodic work, and
        process metrics lag by at most one scrape interval.
        """
        if time.monotonic() - self._process_rendered_at >= PROCESS_REFRESH_SECONDS:
            self._process_rendered_at = time.monotonic()
            self._mark_dirty({PROCESS_SECTION})
        return self.cache.current

    def _render_loop(self) -> None:
        self._mark_dirty({PROCESS_SECTION})
        while not self._stop.is_set():
            with self._render_cond:
                if not self._dirty:
                    self._render_cond.wait(self._trimmer.wait_timeout())
                dirty, self._dirty = self._dirty, set()
            if self._stop.is_set():
                return
            for name in self._render_order(dirty):
                self._render(name)
            if dirty:
                self._trimmer.rendered()
            else:
                self._trimmer.trim_if_due()
            if not self.ready.is_set() and not self._dirty and self._all_ingested():
                self.ready.set()

    def _all_ingested(self) -> bool:
        return all(ingest.ingested_once.is_set() for ingest in self._ingests)

    @staticmethod
    def _render_order(dirty: Set[str]) -> List[str]:
        """The exporter section last: it reports the other sections' renders."""
        return sorted(dirty, key=lambda name: name == EXPORTER_SECTION)

    def _render(self, section: str) -> None:
        """Replaces one section of the cache; on failure the previous render stays served."""
        try:
            renderer = self._renderers.setdefault(section, SectionRenderer())
            self.cache.update({section: renderer.render(self._families(section))})
        except Exception:  # one bad section must not break the scrape
            log.exception("rendering a section failed; serving its previous render",
                          extra=fields(section=section))

    def _families(self, section: str) -> List[Metric]:
        if section == PROCESS_SECTION:
            return list(self._process_registry.collect())
        if section == EXPORTER_SECTION:
            return list(selfmetrics.families(self.status(), self.cache.sections()))
        return [f for ingest in self._ingests if ingest.section == section
                for reader, snapshot in dict(ingest.snapshots).items() for f in reader.families(snapshot)]

    def status(self) -> RuntimeStatus:
        snapshots = [snapshot for ingest in self._ingests for snapshot in dict(ingest.snapshots).values()]
        with self._retire_lock:
            counted = self._ingests + self._retiring
            failures: Counter = Counter(self._retired_failures)
            rescans = self._retired_rescans
            watcher, watch_restarts = self.watcher, self._retired_watch_restarts + self.watcher.restarts
        for ingest in counted:
            failures.update(ingest.failures)
        return RuntimeStatus(
            files=tuple(f for snapshot in snapshots for f in snapshot.files),
            watches=watcher.statuses(),
            reader_failures=dict(failures),
            rescans=rescans + sum(ingest.rescans for ingest in counted),
            watch_restarts=watch_restarts,
            reload=self.reload_status,
            web_reload=self.web_reload_status,
            patterns=tuple((reader.kind, pattern) for ingest in self._ingests for reader in ingest.readers
                           for pattern in reader.patterns),
            notes=tuple(note for snapshot in snapshots if isinstance(snapshot, Described) for note in snapshot.notes),
        )
