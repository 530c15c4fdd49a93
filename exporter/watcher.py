"""Notices changes to the configured files with watchdog, and keeps watching.

One watch per root folder of the configured patterns: inotify on local file
systems, polling on network ones (or as configured). watchdog's weak spots
are covered here:

- an exception in a handler kills the observer thread silently, so the
  handler catches everything, and a supervisor thread checks every second
  that each watch's emitter is alive and re-schedules dead watches (a polled
  folder that vanishes for a moment stops its watch for good);
- a folder that does not exist yet is scheduled as soon as it appears;
- a watch is also renewed when its path names another folder than the one
  watched (deleted and re-created, or re-mounted): inotify sends no
  ``IN_DELETE_SELF`` while a file in the old folder is still open, as a
  rotated log being drained is, and would watch the dead folder forever;
- inotify watch limits raise OSError: that folder is polled instead; with
  no inotify instance left at all (watchdog 7 takes one per observer), every
  folder is polled until the supervisor manages to create one;
- an inotify queue overflow (events lost) is counted and answered, at the
  next supervision tick, by one fresh inotify observer and one rescan
  request, however many overflows came in between (see ``_OverflowReportingInotify``);
- every (re)schedule asks for a full rescan, and the runtime rescans
  periodically anyway, as a safety net for anything else missed;
- watchdog's polling snapshot follows every symlink (``os.stat``) and walks
  symlinked folders wherever they lead, recursively, holding every entry in
  memory: a symlink to ``/usr``, or two symlinks to their own folder, took
  the daemon down (``MemoryError``). Polled folders are walked by
  ``_BoundedSnapshot`` instead: a symlinked folder is never walked, a
  symlink is followed (for the size and time of its file) only when it
  leads inside the watched folder, and at most ``MAX_POLLED_ENTRIES``
  entries are taken per poll (a warning says so; the rest are found by the
  periodic rescan).

The watcher only reports paths; it never reads files.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import deque
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD
from watchdog.observers.polling import PollingEmitter
from watchdog.utils.dirsnapshot import DirectorySnapshot

from exporter.config import WatchConfig
from exporter.containment import inside
from exporter.logs import RateLimitedLog, fields
from exporter.mounts import fstype_of, is_network, read_mounts
from exporter.paths import PathPattern
from exporter.status import WatchStatus

log = logging.getLogger(__name__)

#: The events the exporter acts on. With this filter watchdog asks inotify for nothing else: without it
#: every open and close-without-write (the exporter's own reads among them) fills the kernel's queue,
#: which overflows from about 4,000 watched folders up, and each overflow re-walks every folder.
#: Not IN_CLOSE_WRITE either: every write already raises IN_MODIFY, and a writer that opens, appends
#: and closes (Rush does, per line) would cost a second event per line in watchdog's three threads.
CHANGES = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent,
           DirCreatedEvent, DirDeletedEvent, DirMovedEvent]

SUPERVISE_INTERVAL = 1.0
#: Most entries (files and folders) one poll of a polled folder takes, so that a poll's memory is bounded: about
#: 0.5 KB per entry, twice while a poll is compared with the last (measured: 100,000 entries, +100 MB at the peak).
MAX_POLLED_ENTRIES = 100_000
_FILE_EVENTS = frozenset({"created", "modified", "moved", "deleted"})
_DIR_EVENTS = frozenset({"created", "moved", "deleted"})
_Observer = TypeVar("_Observer", bound=BaseObserver)


class _OverflowReportingInotify(InotifyFD):
    """An inotify instance that reports queue overflows instead of repairing its watches itself.

    watchdog answers an overflow by removing and re-adding the watch of every
    folder below a recursive root, in the thread that reads the queue. Each
    removal queues an ``IN_IGNORED`` event, so from about 16,000 folders (the
    kernel's default ``max_queued_events``) the repair would overflow the
    queue again and repair again (read from watchdog 7.1's code; not
    measured). The watcher replaces the whole observer
    instead: the fresh instance starts with an empty queue, and the old one's
    removals go to the old queue, which is closed.
    """

    def __init__(self, on_overflow: Callable[[], None]):
        super().__init__()
        self._on_overflow = on_overflow

    def handle_event(self, event: InotifyEvent) -> None:
        if event.is_queue_overflow:
            self._on_overflow()
            return
        super().handle_event(event)


class _EventsObserver(InotifyObserver):
    """watchdog's inotify observer on an instance that reports overflows (watchdog hard-codes its own)."""

    def __init__(self, count_overflow: Callable[[], None]):
        self.overflowed = False
        self._count_overflow = count_overflow
        self._inotify_fd = _OverflowReportingInotify(self._on_overflow)
        self._inotify_fd.start()
        BaseObserver.__init__(self, InotifyEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd)

    def _on_overflow(self) -> None:
        """In the inotify thread: only noted, so that a burst of overflows costs one recovery."""
        self.overflowed = True
        self._count_overflow()


class _Stat:
    """What watchdog's snapshot comparison reads of an entry's stat, in a third of an ``os.stat_result``'s memory."""

    __slots__ = ("st_ino", "st_dev", "st_mode", "st_mtime", "st_size", "st_uid", "st_gid")

    def __init__(self, st: os.stat_result):
        self.st_ino, self.st_dev, self.st_mode, self.st_mtime = st.st_ino, st.st_dev, st.st_mode, st.st_mtime
        self.st_size, self.st_uid, self.st_gid = st.st_size, st.st_uid, st.st_gid


class _BoundedSnapshot(DirectorySnapshot):
    """watchdog's snapshot of a polled folder, bounded (see the module's docstring).

    A symlink to a file inside the folder has its file's size and time (a
    change of the file is seen at the link); any other symlink has its own
    (``lstat``), so a symlinked folder is not walked and nothing outside the
    folder is touched. Folders are walked breadth-first without recursion
    (a deep tree cannot exhaust Python's stack), listing lazily; ``capped``
    says that the limit was reached and the rest left out.
    """

    def __init__(self, path: str, recursive: bool, limit: int):
        self._limit = limit
        self._taken = 0
        self.capped = False
        #: A symlink that leads outside the folder (its own lstat taken), for the warning.
        self.outside: Optional[str] = None
        self._resolved_root = os.path.realpath(path)
        super().__init__(path, recursive=recursive, stat=self._stat)

    def _stat(self, path: str) -> os.stat_result:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if inside(os.path.realpath(path), self._resolved_root):
                target = os.stat(path)
                if not stat.S_ISDIR(target.st_mode):
                    st = target
            elif self.outside is None:
                self.outside = path
        return _Stat(st)  # type: ignore[return-value]  # duck-typed: what the comparison reads

    def walk(self, root: str) -> Iterator[Tuple[str, os.stat_result]]:
        folders = deque([root])
        while folders:
            folder = folders.popleft()
            try:
                entries = os.scandir(folder)
            except OSError as exc:  # as watchdog: a folder gone (or replaced) meanwhile is empty
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EINVAL) or folder != root:
                    continue
                raise
            with entries:
                for entry in entries:
                    if self._taken >= self._limit:
                        self.capped = True
                        return
                    path = os.path.join(folder, entry.name)
                    try:
                        st = self._stat(path)
                    except OSError:
                        continue
                    self._taken += 1
                    yield path, st
                    if self.recursive and stat.S_ISDIR(st.st_mode):
                        folders.append(path)


class _BoundedPollingEmitter(PollingEmitter):
    """watchdog's polling emitter, taking ``_BoundedSnapshot``s; warns once while a folder is over the limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._said_capped = False
        self._said_outside = False
        if not hasattr(self, "_take_snapshot"):  # watchdog's emitter takes its snapshots through it (7.x)
            raise RuntimeError("watchdog's PollingEmitter changed: cannot bound its snapshots")
        self._take_snapshot = self._bounded_snapshot

    def _bounded_snapshot(self) -> DirectorySnapshot:
        snapshot = _BoundedSnapshot(os.fsdecode(self.watch.path), self.watch.is_recursive, MAX_POLLED_ENTRIES)
        if snapshot.capped and not self._said_capped:
            log.warning("polled folder has more entries than a poll takes; only the first are polled, the others "
                        "are found by the periodic rescan (watch.rescan_interval)",
                        extra=fields(directory=self.watch.path, limit=MAX_POLLED_ENTRIES))
        self._said_capped = snapshot.capped
        if snapshot.outside is not None and not self._said_outside:
            log.warning("symlinks in a polled folder lead outside it and are not followed: a folder they lead to is "
                        "not walked; a file is read only with watch.follow_symlinks_outside, its changes seen by "
                        "the rescan",
                        extra=fields(directory=self.watch.path, symlink=snapshot.outside))
        self._said_outside = snapshot.outside is not None
        return snapshot


class PollingObserver(BaseObserver):
    """watchdog's polling observer with bounded snapshots (``_BoundedSnapshot``)."""

    def __init__(self, *, timeout: float = DEFAULT_OBSERVER_TIMEOUT) -> None:
        super().__init__(_BoundedPollingEmitter, timeout=timeout)


class _Root:
    """A watched folder: how it is watched and its watchdog handle."""

    def __init__(self, directory: str, recursive: bool):
        self.directory = directory
        self.recursive = recursive
        self.mode = "events"
        self.fstype = "unknown"
        self.watch: Optional[ObservedWatch] = None
        self.observer: Optional[BaseObserver] = None
        self.identity: Optional[Tuple[int, int]] = None

    def still_same_folder(self) -> bool:
        try:
            st = os.stat(self.directory)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into paths; never raises (that would kill the observer)."""

    def __init__(self, on_path: Callable[[str], None], on_rescan: Callable[[], None]):
        self._on_path = on_path
        self._on_rescan = on_rescan

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory:
                if event.event_type in _DIR_EVENTS:
                    self._on_rescan()
                return
            if event.event_type not in _FILE_EVENTS:
                return
            self._on_path(os.fsdecode(event.src_path))
            if event.event_type == "moved":
                self._on_path(os.fsdecode(event.dest_path))
        except Exception:  # must not escape into watchdog's thread
            log.exception("error handling a file event")


def watch_roots(patterns: Iterable[PathPattern]) -> Dict[str, bool]:
    """Folder -> recursive, one per distinct pattern root."""
    roots: Dict[str, bool] = {}
    for pattern in patterns:
        roots[pattern.root] = roots.get(pattern.root, False) or pattern.recursive
    return roots


class Watcher:
    def __init__(
        self,
        patterns: Iterable[PathPattern],
        config: WatchConfig,
        on_path: Callable[[str], None],
        on_rescan: Callable[[], None],
        on_status_change: Callable[[], None] = lambda: None,
        supervise_interval: float = SUPERVISE_INTERVAL,
    ):
        self._config = config
        self._supervise_interval = supervise_interval
        self._on_rescan = on_rescan
        self._on_status_change = on_status_change
        self._handler = _Handler(on_path, on_rescan)
        self._roots = [_Root(d, r) for d, r in sorted(watch_roots(patterns).items())]
        self._said_no_inotify = False
        #: Supervision retries a folder every second: its warnings once a minute, with the count left out.
        self._folder_log = RateLimitedLog(log)
        self._overflow_lock = threading.Lock()
        self.overflows = 0
        self._events: Optional[_EventsObserver] = self._new_events_observer()
        self._polls: BaseObserver = PollingObserver(timeout=config.poll_interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise_loop, name="watch-supervisor", daemon=True)
        self.restarts = 0

    def start(self) -> None:
        for observer in self._observers():
            observer.start()
        self.supervise()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for observer in self._observers():
            observer.stop()
        for observer in self._observers():
            observer.join(timeout=1.0)

    def alive(self) -> bool:
        return self._thread.is_alive() and all(observer.is_alive() for observer in self._observers())

    def _observers(self) -> List[BaseObserver]:
        return [o for o in (self._events, self._polls) if o is not None]

    def _new_events_observer(self) -> Optional[_EventsObserver]:
        """An inotify observer, or None when the user has no inotify instance left (polling then)."""
        try:
            return _EventsObserver(self._count_overflow)
        except OSError as exc:
            if not self._said_no_inotify:
                self._said_no_inotify = True
                log.warning("inotify unavailable (instance limit, see fs.inotify.max_user_instances); "
                            "polling every folder instead", extra=fields(error=exc))
            return None

    def statuses(self) -> Tuple[WatchStatus, ...]:
        """One per folder once watching started (``--once`` never watches)."""
        if not self._thread.is_alive():
            return ()
        return tuple(
            WatchStatus(r.directory, r.mode, r.fstype,
                        r.watch is not None and self._emitter_alive(r) and r.still_same_folder())
            for r in self._roots
        )

    def _supervise_loop(self) -> None:
        last = self.statuses()
        while not self._stop.wait(self._supervise_interval):
            try:
                self.supervise()
                now = self.statuses()
                if now != last:
                    self._on_status_change()
                last = now
            except Exception:  # the supervisor must outlive any one failure
                log.exception("watch supervision failed; retrying")

    def _count_overflow(self) -> None:
        with self._overflow_lock:
            self.overflows += 1

    def _retire_overflowed_observer(self) -> Optional[BaseObserver]:
        """The events observer whose queue overflowed since the last tick, replaced by a fresh one.

        Its folders are scheduled on the fresh observer by ``supervise`` (a
        walk of each root, once), which then asks for one rescan: the files
        whose events were lost are read then.
        """
        overflowed = self._events
        if overflowed is None or not overflowed.overflowed or self._stop.is_set():
            return None
        fresh = self._new_events_observer()
        if fresh is None:
            return None  # no inotify instance left: keep the old one, whose watches still work
        self._events = self._restart_observer(overflowed, fresh, "inotify queue overflowed (events lost)")
        return overflowed

    def supervise(self) -> None:
        """Re-creates dead or overflowed observers and (re)schedules every folder that is not watched."""
        overflowed = self._retire_overflowed_observer()
        self._revive_observers()
        rescan = overflowed is not None
        for root in self._roots:
            if root.watch is not None and self._emitter_alive(root) and root.still_same_folder():
                continue
            if root.watch is not None:
                self._unschedule(root)
                self.restarts += 1
                self._folder_log.warning("stopped:" + root.directory, "watch stopped; re-establishing it",
                                         directory=root.directory)
            if os.path.isdir(root.directory):
                try:
                    self._schedule(root)
                except FileNotFoundError:
                    continue
                rescan = True
        if overflowed is not None:
            overflowed.stop()  # after the folders are watched again: no gap
        if rescan:
            self._on_rescan()

    def _revive_observers(self) -> None:
        if self._stop.is_set():
            return
        if self._events is None:
            self._events = self._new_events_observer()
            if self._events is not None:
                self._events.start()
                log.info("inotify available again; folders watched from now on use events")
        elif not self._events.is_alive():
            fresh = self._new_events_observer()
            self._events = (None if fresh is None
                            else self._restart_observer(self._events, fresh, "watcher thread died"))
        if not self._polls.is_alive():
            self._polls = self._restart_observer(self._polls, PollingObserver(timeout=self._config.poll_interval),
                                                 "watcher thread died")

    def _restart_observer(self, old: BaseObserver, fresh: _Observer, why: str) -> _Observer:
        """``fresh`` started in place of ``old``; the folders ``old`` watched are left for ``supervise``."""
        log.warning("%s; restarting the watcher thread", why)
        for root in self._roots:
            if root.observer is old:
                root.watch = root.observer = None
        fresh.start()
        return fresh

    def _choose_mode(self, root: _Root) -> str:
        root.fstype = fstype_of(root.directory, read_mounts())
        if self._config.mode != "auto":
            return self._config.mode
        return "poll" if is_network(root.fstype) else "events"

    def _schedule(self, root: _Root) -> None:
        st = os.stat(root.directory)
        root.identity = (st.st_dev, st.st_ino)
        root.mode = self._choose_mode(root)
        if root.mode == "events" and self._events is None:
            root.mode = "poll"
        elif root.mode == "events" and self._events is not None:
            try:
                root.watch = self._events.schedule(self._handler, root.directory, recursive=root.recursive,
                                                   event_filter=CHANGES)
                root.observer = self._events
                self._watching(root)
                return
            except OSError as exc:
                self._folder_log.warning("no inotify:" + root.directory,
                                         "inotify unavailable (watch limit?); polling this folder instead",
                                         directory=root.directory, error=exc)
                root.mode = "poll"
        try:
            root.watch = self._polls.schedule(self._handler, root.directory, recursive=root.recursive)
            root.observer = self._polls
        except OSError as exc:
            self._folder_log.warning("cannot:" + root.directory, "cannot watch folder; relying on rescans",
                                     directory=root.directory, error=exc)
            return
        self._watching(root, interval=self._config.poll_interval)

    def _watching(self, root: _Root, **more: object) -> None:
        """Logs a folder now watched, and the end of its failures to be watched if it had any."""
        self._folder_log.ended("cannot:" + root.directory, "folder can be watched again", directory=root.directory)
        log.info("watching folder", extra=fields(directory=root.directory, mode=root.mode, fstype=root.fstype, **more))

    def _unschedule(self, root: _Root) -> None:
        if root.observer is not None and root.watch is not None:  # else it was never scheduled
            try:
                root.observer.unschedule(root.watch)
            except (KeyError, OSError, AttributeError):
                pass
        root.watch = root.observer = None

    @staticmethod
    def _emitter_alive(root: _Root) -> bool:
        observer = root.observer
        if observer is None or not observer.is_alive():
            return False
        emitters: List = [e for e in list(observer.emitters) if e.watch == root.watch]
        return any(e.is_alive() for e in emitters)
