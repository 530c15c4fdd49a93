"""One source's readers on a thread of their own.

Each source (Rush, Royal Render) has its own inbox of changed paths
(``exporter.debounce``: the watcher hands it a batch at a time), rescan timer
and thread, so a slow source (an RR read waiting on a hung worker for up to its
timeout) never delays another source's freshness. While files of the source
are down, those files (not the whole source: a rescan of 20,000 files takes
seconds) are read again every few seconds, so they recover without waiting
for the next change of the file.

A read that hangs (a share whose server went away, with a hard mount) cannot
be interrupted from Python, but it is made visible: a reader that says what
it is reading (``sources.ReportsReading``: path and start) and takes longer
than ``watch.stuck_read_timeout`` has that file marked down in its snapshot
and logged, from a small monitor thread, until the read returns.

Raw operations on files go through ``exporter.iogate``, turned on by
``start``: each runs on a thread of its file's mount, waited for a short
bound, so a read that hangs delays only the files of its own mount. Those
are skipped (their cursors kept) while the mount is busy, reported down
after ``watch.stuck_read_timeout`` (the stuck file, and the files waiting
behind it, which say so), and read again as soon as the stuck operation
returns (the gate tells the ingest, which asks for a sync of them).

Readers that can be checkpointed (``sources.Checkpointed``) are restored
before the first sync and saved after syncs and at a clean stop, by this
thread, when a checkpoint store is configured (``exporter.checkpoint``).
Readers are closed only after that last save: a stop that does not wait for
a long read leaves the closing to this thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from itertools import chain, filterfalse
from operator import attrgetter
from typing import Callable, Collection, Dict, Iterable, Optional, Sequence, Set, Tuple

from exporter.checkpoint import CheckpointCounts, Checkpointer, CheckpointStore
from exporter.config import WatchConfig
from exporter.debounce import Inbox
from exporter.iogate import GATE
from exporter.logs import RateLimitedLog, fields
from exporter.sources import (
    PROGRESS_SECONDS,
    Batched,
    FileStatus,
    Interruptible,
    Progressive,
    Reader,
    ReportsReading,
    Snapshot,
    changed_in_place,
)
from exporter.status import matched_files

log = logging.getLogger(__name__)
_UP, _PATH = attrgetter("up"), attrgetter("path")  # of a FileStatus

#: A file that failed to read is tried again this soon (a half-written file, a restarting worker).
RETRY_SECONDS = 2.0
#: The monitor looks for a stuck read every tenth of ``watch.stuck_read_timeout``, within these bounds: a stuck
#: read is reported at most 10% late, and an idle exporter wakes up once a second (default 10 s), not more.
STUCK_CHECK_SECONDS = (0.05, 2.0)


class SourceIngest:
    def __init__(self, section: str, readers: Sequence[Reader], watch: WatchConfig,
                 published: Callable[[str], None], store: Optional[CheckpointStore] = None):
        self.section = section
        self.readers = list(readers)
        #: Each reader's sync, decided once: ``isinstance`` of a runtime protocol costs about 50 us a call.
        self._syncs = {reader: reader.sync_steps if isinstance(reader, Progressive)
                       else lambda wanted, reader=reader: (reader.sync(wanted),) for reader in self.readers}
        self.checkpoints = Checkpointer(store, section, self.readers) if store is not None else None
        self._watch = watch
        self._published = published
        self.inbox = Inbox()
        #: Passes start at most this often (``sources.Batched``): 0 for sources whose readers do not ask.
        self._batch_seconds = max((r.batch_seconds for r in self.readers if isinstance(r, Batched)), default=0.0)
        self.snapshots: Dict[Reader, Snapshot] = {}
        # Zero from the start: increase() cannot see a counter's first step from nothing.
        self.failures: Counter = Counter({reader.kind: 0 for reader in self.readers})
        #: A reader that fails at every sync (10 a second) logs its traceback once a minute, with the count.
        self._failure_log = RateLimitedLog(log)
        self.rescans = 0
        self.ingested_once = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ingest-" + section, daemon=True)
        # Guards ``snapshots`` between the ingest thread and the stuck-read monitor.
        self._snapshots_lock = threading.Lock()
        self._reported_stuck: Dict[Reader, Tuple[str, float]] = {}
        self._monitor = threading.Thread(target=self._monitor_loop, name="stuck-" + section, daemon=True)
        # Whether the thread has ended, and whether it closes its readers then (``close``), under one lock.
        self._end_lock = threading.Lock()
        self._ended = False
        self._close_at_end = False
        self._stop_listening: Optional[Callable[[], None]] = None
        #: Busy mounts (mount, stuck path, since) already logged.
        self._reported_busy: Set[Tuple[str, str, float]] = set()
        self._down = DownFiles()
        #: (kind, pattern) that matched no file at the last full pass; None before the first.
        self._empty_patterns: Optional[Set[Tuple[str, str]]] = None

    @property
    def checkpoint_counts(self) -> CheckpointCounts:
        """Checkpoints written, writes failed, readers restored (zeros without a store)."""
        c = self.checkpoints
        return CheckpointCounts(0, 0, 0, {}) if c is None else CheckpointCounts(
            c.writes, c.write_failures, c.restored, dict(c.discarded), c.failing)

    def use(self, watch: WatchConfig) -> None:
        """New watch settings for the same readers (a reload that changed only ``watch``).

        The thread and its readers stay: a second thread reading the same
        readers would count their lines twice.
        """
        self._watch = watch
        self.inbox.request_rescan()

    def owns(self, path: str) -> bool:
        return any(pattern.matches(path) for reader in self.readers for pattern in reader.patterns)

    def start(self) -> None:
        GATE.enable()
        self._stop_listening = GATE.on_free(self._mount_free)
        self._thread.start()
        self._monitor.start()

    def stop(self, timeout: Optional[float] = 1.0) -> None:
        """Stops the thread; ``timeout=None`` waits for a read in progress. A read still running after
        ``timeout`` is interrupted where the reader can be (``sources.Interruptible``: worker processes it
        waits on are stopped, so they cannot hold the daemon's exit)."""
        self._stop.set()
        self.inbox.close()
        if self._stop_listening is not None:
            self._stop_listening()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            for reader in self.readers:
                if isinstance(reader, Interruptible):
                    reader.interrupt()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Closes the readers: now if the thread ended (or never ran), else as soon as it ends, after its last
        checkpoint (a reader closed under the running thread would let it save a checkpoint without cursors)."""
        with self._end_lock:
            if self._thread.is_alive() and not self._ended:
                self._close_at_end = True
                return
        self._close_readers()

    def _close_readers(self) -> None:
        for reader in self.readers:
            reader.close()

    def sync(self, paths: Optional[Collection[str]]) -> None:
        """Lets each reader read its share of ``paths`` (None: a full rescan).

        A full pass (the first read, a rescan) is published as it goes: after each reader but the last, and
        every ``PROGRESS_SECONDS`` of a ``Progressive`` reader's read, so that a kind is served once its own
        files are read, not after a reader of thousands of files (or one waiting on a hung read) is done.
        The caller publishes the end of every pass.
        """
        if paths is None:
            self.rescans += 1
        published = time.monotonic()
        for number, reader in enumerate(self.readers, 1):
            wanted = None if paths is None else {p for p in paths if any(pt.matches(p) for pt in reader.patterns)}
            if wanted is not None and not wanted and reader.patterns:
                continue  # a reader without patterns reports on its source: it is synced on every pass
            try:
                for snapshot in self._syncs[reader](wanted):
                    with self._snapshots_lock:
                        self.snapshots[reader] = self._behind_busy_mounts(reader, snapshot)
                    if time.monotonic() - published >= PROGRESS_SECONDS:
                        self._published(self.section)
                        published = time.monotonic()
            except Exception:  # noqa: BLE001 - logged (rate-limited, with traceback); the last good snapshot is kept
                self.failures[reader.kind] += 1
                self._failure_log.exception(reader.kind, "reader failed; keeping its last good values",
                                            kind=reader.kind)
            else:
                self._failure_log.ended(reader.kind, "reader syncs again", kind=reader.kind)
            if paths is None and number < len(self.readers):
                self._published(self.section)
                published = time.monotonic()

    def _loop(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.restore()
        try:
            self._follow()
        finally:
            try:
                if self.checkpoints is not None:
                    self.checkpoints.save()
            finally:
                with self._end_lock:
                    self._ended = True
                    close = self._close_at_end
                if close:
                    self._close_readers()

    def _follow(self) -> None:
        next_rescan = time.monotonic()
        retry_at: Optional[float] = None
        while not self._stop.is_set():
            wake = min(t for t in (next_rescan, retry_at, self._checkpoint_due()) if t is not None)
            paths, rescan = self.inbox.take(max(0.0, wake - time.monotonic()))
            if self._stop.is_set():
                return
            now = time.monotonic()
            full = rescan or now >= next_rescan
            retry = retry_at is not None and now >= retry_at
            if not (full or paths or retry):  # woken only to write a checkpoint
                self._save_checkpoint(due_only=True)
                continue
            if full:
                next_rescan = now + self._watch.rescan_interval
            elif retry:
                paths = set(paths) | self._down_paths()
            self.sync(None if full else paths)
            self._published(self.section)
            if full:  # after the publish: /-/ready waits for the render of what the first read found
                self.ingested_once.set()
                self._report_pattern_changes()
            self._save_checkpoint(due_only=False)
            retry_at = self._next_retry(retry_at, now)
            if self._batch_seconds:  # what changes meanwhile gathers in the inbox for the next pass
                self._stop.wait(max(0.0, now + self._batch_seconds - time.monotonic()))

    def _report_pattern_changes(self) -> None:
        """After a full pass: logs each pattern that stops matching files, or matches none at the first pass (an
        empty mount point, a wrong path), and each that matches files again. A pattern's files are found by
        events or rescans, so the line comes within ``watch.rescan_interval`` of the change."""
        patterns = [(reader.kind, pattern) for reader in self.readers for pattern in reader.patterns]
        counts = matched_files(patterns, list(self._files()))
        empty = {key for key, count in counts.items() if count == 0}
        for kind, pattern in sorted(empty - (self._empty_patterns or set())):
            log.warning("pattern matches no file: nothing is read from it until one appears (a share not mounted? "
                        "a wrong path?)", extra=fields(kind=kind, pattern=pattern))
        for kind, pattern in sorted((self._empty_patterns or set()) - empty):
            log.info("pattern matches files again", extra=fields(kind=kind, pattern=pattern,
                                                                 files=counts[(kind, pattern)]))
        self._empty_patterns = empty

    def _checkpoint_due(self) -> Optional[float]:
        return self.checkpoints.due_at() if self.checkpoints is not None else None

    def _save_checkpoint(self, due_only: bool) -> None:
        """After a sync (``due_only`` False) or on the checkpoint timer; a write is published, after the
        values it saved, so the exporter's own checkpoint counters are fresh without delaying the values."""
        if self.checkpoints is None:
            return
        writes = self.checkpoints.writes + self.checkpoints.write_failures
        if due_only:
            self.checkpoints.save_if_due()
        else:
            self.checkpoints.after_sync()
        if self.checkpoints.writes + self.checkpoints.write_failures != writes:
            self._published(self.section)

    def _next_retry(self, retry_at: Optional[float], now: float) -> Optional[float]:
        """When to read the down files again; reads of other files do not postpone it."""
        if not self._down_paths():
            return None
        return time.monotonic() + RETRY_SECONDS if retry_at is None or now >= retry_at else retry_at

    def _down_paths(self) -> Set[str]:
        """The paths of the files down in the newest snapshots (a copy of the mapping: the stuck-read monitor may
        replace a snapshot meanwhile)."""
        return self._down.paths(list(self.snapshots.items()))

    def _files(self) -> Iterable[FileStatus]:
        """Every file of the newest snapshots (iterating a copy: the stuck-read monitor may replace one meanwhile)."""
        return chain.from_iterable(snapshot.files for snapshot in list(self.snapshots.values()))

    def _monitor_loop(self) -> None:
        least, most = STUCK_CHECK_SECONDS
        while not self._stop.wait(min(most, max(least, self._watch.stuck_read_timeout / 10))):
            for reader in self.readers:
                reading = reader.reading if isinstance(reader, ReportsReading) else None
                self._report_returned(reader, reading)
                if reading is not None and time.monotonic() - reading[1] > self._watch.stuck_read_timeout:
                    self._report_stuck(reader, reading)
            self._report_busy_mounts()

    def _report_busy_mounts(self) -> None:
        """Marks the files of mounts stuck past ``watch.stuck_read_timeout`` down in the current snapshots."""
        if not GATE.busy():
            return
        changed = False
        with self._snapshots_lock:
            for reader, snapshot in list(self.snapshots.items()):
                marked = self._behind_busy_mounts(reader, snapshot)
                if marked is not snapshot:
                    self.snapshots[reader] = marked
                    changed = True
        if changed:
            self._published(self.section)

    def _behind_busy_mounts(self, reader: Reader, snapshot: Snapshot) -> Snapshot:
        """``snapshot``, with the files of mounts whose operation is stuck past ``watch.stuck_read_timeout``
        down: the stuck file as a stuck read (as ``_report_stuck``), the others as waiting behind it. The
        same object when nothing changes."""
        busy = GATE.busy()
        if not busy:
            return snapshot
        now = time.monotonic()
        late = {mount: (path, since) for mount, (path, since) in busy.items()
                if now - since > self._watch.stuck_read_timeout}
        if not late:
            return snapshot
        for mount, (path, since) in late.items():
            if (mount, path, since) not in self._reported_busy:
                self._reported_busy.add((mount, path, since))
                log.warning("reading a file is stuck; reported down until the read returns, with the files "
                            "of its mount, which are skipped meanwhile",
                            extra=fields(path=path, mount=mount, seconds=round(now - since, 1)))
        self._reported_busy &= {(mount, path, since) for mount, (path, since) in busy.items()}
        files = []
        mounts = [GATE.mount_of(status.path) for status in snapshot.files]
        waiting = Counter(mount for mount, status in zip(mounts, snapshot.files)
                          if mount in late and status.path != late[mount][0])
        for status, mount in zip(snapshot.files, mounts):
            if mount in late:
                stuck = late[mount][0]
                reason = (_stuck_reason(waiting[mount]) if status.path == stuck
                          else WAITING_REASON % (stuck, mount))
                if status.up or status.last_error != reason:
                    status = status._replace(up=False, last_error=reason)
            files.append(status)
        known = {status.path for status in files}
        for stuck, _ in late.values():
            if stuck not in known and any(pattern.matches(stuck) for pattern in reader.patterns):
                files.append(_down(reader.kind, stuck, STUCK_REASON))
        if all(a is b for a, b in zip(files, snapshot.files)) and len(files) == len(snapshot.files):
            return snapshot
        return dataclasses.replace(snapshot, files=tuple(files))

    def _mount_free(self, mount: str) -> None:
        """On the mount's thread: its stuck operation returned; its files are read again soon."""
        self.inbox.add({status.path for status in self._files() if GATE.mount_of(status.path) == mount})

    def _report_returned(self, reader: Reader, reading: Optional[Tuple[str, float]]) -> None:
        """Logs once that a read reported stuck has returned (the reader reads something else, or nothing)."""
        stuck = self._reported_stuck.get(reader)
        if stuck is not None and stuck != reading:
            del self._reported_stuck[reader]
            log.info("a stuck read returned; the file is read again", extra=fields(
                path=stuck[0], seconds=round(time.monotonic() - stuck[1], 1)))

    def _report_stuck(self, reader: Reader, reading: Tuple[str, float]) -> None:
        """Marks the file being read down (once per stuck read), unless the read finished meanwhile."""
        if self._reported_stuck.get(reader) == reading:
            return
        path = reading[0]
        with self._snapshots_lock:
            if not isinstance(reader, ReportsReading) or reader.reading != reading or reader not in self.snapshots:
                return
            self.snapshots[reader] = _marked_down(self.snapshots[reader], reader.kind, path)
        self._reported_stuck[reader] = reading
        log.warning("reading a file is stuck; reported down until the read returns",
                    extra=fields(path=path, seconds=round(time.monotonic() - reading[1], 1)))
        self._published(self.section)


class DownFiles:
    """The files that are down, per reader, kept up to date from the statuses that changed: the ingest asks
    after every sync, and a walk of every file after each (20,000 of them) would cost about what the sync of a
    few changed files does."""

    def __init__(self) -> None:
        self._files: Dict[Reader, Tuple[FileStatus, ...]] = {}
        self._down: Dict[Reader, Set[str]] = {}

    def paths(self, snapshots: Iterable[Tuple[Reader, Snapshot]]) -> Set[str]:
        """The paths of the down files of ``snapshots`` (reader, its newest snapshot)."""
        down: Set[str] = set()
        for reader, snapshot in snapshots:
            down |= self._of(reader, snapshot.files)
        return down

    def _of(self, reader: Reader, files: Tuple[FileStatus, ...]) -> Set[str]:
        old = self._files.get(reader)
        if old is files:
            return self._down[reader]
        self._files[reader] = files
        at = None if old is None else changed_in_place(files, old)
        if at is None:  # files came, went or moved: all of them looked at, in C
            down = self._down[reader] = set(map(_PATH, filterfalse(_UP, files)))
            return down
        down = self._down[reader]
        for status in map(files.__getitem__, at):
            if status.up:
                down.discard(status.path)
            else:
                down.add(status.path)
        return down


#: Why a file is down while a read of it is stuck, and while it waits behind such a read on its mount.
STUCK_REASON = "a read of the file is stuck (a hung share?)"
WAITING_REASON = "waiting behind a stuck read of %s on mount %s"


def _stuck_reason(waiting: int) -> str:
    """The stuck file's reason, saying how many files of its mount wait behind it (each of them says so)."""
    if not waiting:
        return STUCK_REASON
    return STUCK_REASON + "; %d other file%s of its mount wait%s behind it" % (
        waiting, "s" if waiting > 1 else "", "" if waiting > 1 else "s")


def _marked_down(snapshot: Snapshot, kind: str, path: str) -> Snapshot:
    """A copy of ``snapshot`` in which ``path`` is down (added if it was never read)."""
    reason = STUCK_REASON
    files = [f._replace(up=False, last_error=reason) if f.path == path else f for f in snapshot.files]
    if not any(f.path == path for f in snapshot.files):
        files.append(_down(kind, path, reason))
    return dataclasses.replace(snapshot, files=tuple(files))


def _down(kind: str, path: str, reason: str) -> FileStatus:
    return FileStatus(kind=kind, path=path, up=False, last_success_time=None, errors_total=0,
                      malformed_lines_total=0, bytes_read_total=0, lines_read_total=0, last_error=reason)
