"""The pipeline: the watcher and one ingest per source, from changed paths to fresh snapshots.

The watcher hands each changed path to the ingest whose readers' patterns
match it; each ingest (``exporter.ingest``, a thread per source) lets its
readers ``sync`` and keeps the newest immutable snapshot per reader. A
reader that fails keeps its previous snapshot: the last good values stay
served, the failure is counted and logged. Whenever a source publishes, or
the state of a watch changes, the pipeline says which sources ``changed``;
the renderer reads their ``families`` later, on its own thread.

A reload swaps in new readers with ``reconfigure``. The status board is
told which ingests and which watcher are counted, so the counters of the
ones a reload retires are kept.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set

from prometheus_client.metrics_core import Metric

from exporter import containment
from exporter.checkpoint import CheckpointStore
from exporter.config import WatchConfig
from exporter.ingest import SourceIngest
from exporter.iogate import GATE
from exporter.sources import Described, Reader
from exporter.statusboard import Readings, StatusBoard
from exporter.watcher import Watcher


class Pipeline:
    def __init__(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig, board: StatusBoard,
                 changed: Callable[[Iterable[str]], None], store: Optional[CheckpointStore] = None):
        """``changed(sources)`` is called from the pipeline's threads: those sources published new
        snapshots (none: only the pipeline's status changed). ``store`` keeps the readers' checkpoints
        (``--storage.path``; None: none kept)."""
        self._watch = watch
        containment.follow_outside(watch.follow_symlinks_outside)  # one setting for every reader of the process
        self._store = store
        self._board = board
        self._changed = changed
        self._ingests = [self._new_ingest(source, rs) for source, rs in readers.items() if rs]
        #: Made by ``start``: a one-shot read (``ingest_once``) watches nothing, and so runs no thread.
        self._watcher: Optional[Watcher] = None

    def start(self) -> None:
        GATE.enable()  # before the watcher, whose system calls on folders go through it too
        self._swap_watcher()
        for ingest in self._ingests:
            ingest.start()

    def stop(self) -> None:
        """Stops watching and reading, then closes the readers (those of an ingest still reading are closed
        by its thread when it ends, after its last checkpoint)."""
        if self._watcher is not None:
            self._watcher.stop()
        for ingest in self._ingests:
            ingest.stop()
        self.close_readers()

    def close_readers(self) -> None:
        for ingest in self._ingests:
            ingest.close()

    def alive(self) -> bool:
        """Whether every thread of the pipeline still runs (the systemd watchdog asks)."""
        watching = self._watcher is not None and self._watcher.alive()
        return watching and all(ingest.alive() for ingest in self._ingests)

    def ingest_once(self) -> List[str]:
        """One full read in the calling thread, without watching (``--once``); returns the sources read."""
        for ingest in self._ingests:
            ingest.sync(None)
        return [ingest.section for ingest in self._ingests]

    def request_rescan(self) -> None:
        for ingest in self._ingests:
            ingest.inbox.request_rescan()

    # -- what the renderer and the status board read ---------------------------

    def readers(self) -> Dict[str, Sequence[Reader]]:
        """The readers of each source now running."""
        return {ingest.section: tuple(ingest.readers) for ingest in self._ingests}

    def families(self, source: str) -> List[Metric]:
        """The metric families of the source's newest snapshots (on the caller's thread)."""
        return [family for ingest in self._ingests if ingest.section == source
                for reader, snapshot in dict(ingest.snapshots).items() for family in reader.families(snapshot)]

    def ingested(self) -> bool:
        """Whether every source has finished its first full read (the exporter is ready after that)."""
        return all(ingest.ingested_once.is_set() for ingest in self._ingests)

    def readings(self) -> Readings:
        """The running readers' files, patterns and set-up notes, for the status board."""
        ingests = self._ingests
        snapshots = [snapshot for ingest in ingests for snapshot in dict(ingest.snapshots).values()]
        return Readings(
            groups=tuple(snapshot.files for snapshot in snapshots),
            patterns=tuple((reader.kind, pattern) for ingest in ingests for reader in ingest.readers
                           for pattern in reader.patterns),
            notes=tuple(note for snapshot in snapshots if isinstance(snapshot, Described) for note in snapshot.notes),
        )

    # -- reloads ---------------------------------------------------------------

    def reconfigure(self, readers: Mapping[str, Sequence[Reader]], watch: WatchConfig) -> None:
        """Swaps in new readers (a reloaded config) while running; call from one thread at a time.

        A source whose readers are the same objects keeps its ingest thread,
        given the new watch settings: its counters go on, and no second
        thread ever reads the same readers. Any other source's ingest is
        retired (see ``_retire``) without waiting for a read it has in
        progress. New threads (ingests, the watcher) are started before they
        are published, so ``alive()``, which the watchdog pings wait on from
        another thread, never sees one not yet running. The watcher is
        replaced; its start asks every source for a full rescan, so changes
        made during the swap are not lost.
        """
        old_ingests = self._ingests
        self._watch = watch
        containment.follow_outside(watch.follow_symlinks_outside)
        kept = {ingest.section: ingest for ingest in old_ingests
                if tuple(ingest.readers) == tuple(readers.get(ingest.section, ()))}
        for ingest in kept.values():
            ingest.use(watch)
        ingests = []
        for source, source_readers in readers.items():
            if source in kept:
                ingests.append(kept[source])
            elif source_readers:
                ingest = self._new_ingest(source, source_readers)
                ingest.start()
                ingests.append(ingest)
        self._ingests = ingests
        still_used = {id(reader) for ingest in ingests for reader in ingest.readers}
        for ingest in old_ingests:
            if ingest not in ingests:
                self._retire(ingest, [reader for reader in ingest.readers if id(reader) not in still_used])
        self._swap_watcher()
        self._changed(list(readers))

    def _swap_watcher(self) -> None:
        """A watcher for the current readers' patterns, started before the old one (if any) stops."""
        watcher = self._new_watcher()
        watcher.start()
        self._board.watching(watcher)
        old, self._watcher = self._watcher, watcher
        if old is not None:
            old.stop()

    def _retire(self, ingest: SourceIngest, dropped: Sequence[Reader]) -> None:
        """Stops an ingest replaced by a reload, on a thread of its own.

        A read in progress (an RR worker hung up to its ``read_timeout``) is
        left to finish before the dropped readers are closed, but nobody
        waits for it: the reload, the watchdog pings and the scrapes go on.
        Until then the board keeps counting it, so no counter goes down.
        """
        def finish() -> None:
            ingest.stop(timeout=None)
            for reader in dropped:
                reader.close()
            self._board.retired(ingest)

        threading.Thread(target=finish, name="retire-" + ingest.section, daemon=True).start()

    # -- wiring ----------------------------------------------------------------

    def _new_ingest(self, source: str, readers: Sequence[Reader]) -> SourceIngest:
        ingest = SourceIngest(source, readers, self._watch, self._published, self._store)
        self._board.counting(ingest)
        return ingest

    def _new_watcher(self) -> Watcher:
        patterns = [p for ingest in self._ingests for reader in ingest.readers for p in reader.patterns]
        return Watcher(patterns, self._watch, self._on_paths, self.request_rescan,
                       on_status_change=lambda: self._changed(()))

    def _on_paths(self, paths: Set[str]) -> None:
        """A batch from the watcher: each ingest gets the paths its readers' patterns match, in one call."""
        for ingest in self._ingests:
            owned = {path for path in paths if ingest.owns(path)}
            if owned:
                ingest.inbox.add(owned)

    def _published(self, source: str) -> None:
        self._changed((source,))
