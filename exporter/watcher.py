"""Notices changes to the configured files with watchdog, and keeps watching.

One watch per root folder of the configured patterns: inotify on local file
systems, polling on network ones (or as configured). One thread (``watch``)
reads watchdog's inotify instance itself, a batch at a time (``Watcher``),
and supervises; no event is handed between threads. watchdog's weak spots
are covered here:

- the polling observer's handler catches everything (an exception would
  kill its thread silently), and every second the thread checks each watch
  (an active watch group, a live polling emitter) and re-schedules dead
  ones (a polled folder that vanishes for a moment stops its watch for good);
- a folder that does not exist yet is scheduled as soon as it appears;
- a watch is also renewed when its path names another folder than the one
  watched (deleted and re-created, or re-mounted): inotify sends no
  ``IN_DELETE_SELF`` while a file in the old folder is still open, as a
  rotated log being drained is, and would watch the dead folder forever;
- inotify watch limits raise OSError: that folder is polled instead; with
  no inotify instance left at all, every folder is polled until the
  supervision manages to create one;
- an inotify queue overflow (events lost) is counted and answered, at the
  next supervision tick, by one fresh inotify instance and one rescan
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

- a folder on a share that does not answer would hold the watch thread,
  start-up, reloads and the status page in ``stat``: every system call on
  a watched folder runs through ``exporter.iogate`` (the folder's mount
  thread, a short wait); a busy mount's folders count as not watched and
  are scheduled again once it answers.

The watcher only reports paths; it never reads files.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Set, Tuple, TypeVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, InotifyFD, Mask
from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
from watchdog.observers.polling import PollingEmitter
from watchdog.utils.dirsnapshot import DirectorySnapshot

from exporter.config import WatchConfig
from exporter.containment import inside
from exporter.debounce import batch_seconds
from exporter.iogate import GATE, MountBusy
from exporter.logs import RateLimitedLog, fields
from exporter.mounts import fstype_of, is_network, read_mounts
from exporter.paths import PathPattern
from exporter.status import WatchStatus

log = logging.getLogger(__name__)

#: The inotify events the exporter acts on, and nothing else: without this mask every open and
#: close-without-write (the exporter's own reads among them) fills the kernel's queue, which overflows from
#: about 4,000 watched folders up, and each overflow re-walks every folder. Not IN_CLOSE_WRITE either: every
#: write already raises IN_MODIFY, and a writer that opens, appends and closes (Rush does, per line) would
#: cost a second event per line.
_FILE_CHANGES = (InotifyConstants.IN_CREATE | InotifyConstants.IN_MODIFY | InotifyConstants.IN_ATTRIB
                 | InotifyConstants.IN_MOVED_FROM | InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_DELETE)
#: A folder created, moved or deleted (the watched folder itself included) asks for a rescan.
_FOLDER_CHANGES = (InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_FROM | InotifyConstants.IN_MOVED_TO
                   | InotifyConstants.IN_DELETE | InotifyConstants.IN_DELETE_SELF)
CHANGES = Mask(_FILE_CHANGES | InotifyConstants.IN_DELETE_SELF)

SUPERVISE_INTERVAL = 1.0
#: Most entries (files and folders) one poll of a polled folder takes, so that a poll's memory is bounded: about
#: 0.5 KB per entry, twice while a poll is compared with the last (measured: 100,000 entries, +100 MB at the peak).
MAX_POLLED_ENTRIES = 100_000
_FILE_EVENTS = frozenset({"created", "modified", "moved", "deleted"})
_DIR_EVENTS = frozenset({"created", "moved", "deleted"})


class _OverflowReportingInotify(InotifyFD):
    """watchdog's inotify instance, read by the watcher's thread (never started as a thread of its own), that
    reports queue overflows instead of repairing its watches itself.

    watchdog answers an overflow by removing and re-adding the watch of every
    folder below a recursive root, in the thread that reads the queue. Each
    removal queues an ``IN_IGNORED`` event, so from about 16,000 folders (the
    kernel's default ``max_queued_events``) the repair would overflow the
    queue again and repair again (read from watchdog 7.1's code; not
    measured). The watcher replaces the whole instance instead: the fresh
    one starts with an empty queue, and the old one's removals go to the old
    queue, which is closed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.overflowed = False
        self._is_reading = False  # no thread of its own: ``close`` closes the descriptors itself
        self._ready = select.poll()
        self._ready.register(self._inotify_fd, select.POLLIN)

    @property
    def fd(self) -> int:
        return self._inotify_fd

    def handle_event(self, event: InotifyEvent) -> None:
        if event.is_queue_overflow:
            self.overflowed = True
            return
        super().handle_event(event)

    def read_waiting(self) -> int:
        """Handles every event waiting in the queue, never blocking; returns how many overflows it held."""
        overflows = 0
        while any(revents & select.POLLIN for _, revents in self._ready.poll(0)):  # not POLLNVAL: closed
            events = self.read_events()
            if not events:
                break
            for event in events:
                overflows += event.is_queue_overflow
                self.handle_event(event)
        return overflows


class _PathSink:
    """Takes the place of watchdog's move-event grouper in its ``InotifyWatchGroup``: each event becomes a path
    (a file created, changed, moved or deleted) or a rescan request (a folder created, moved or deleted) at once,
    in the thread that reads the queue. The group still keeps its watches (recursive ones, moved folders);
    a move needs no pairing here, since both of its paths are reported."""

    _REMEMBERED_MOVES = 1024

    def __init__(self, on_path: Callable[[str], None], on_rescan: Callable[[], None]):
        self._on_path = on_path
        self._on_rescan = on_rescan
        self._moved_from: Dict[int, PathedInotifyEvent] = {}

    def put_event(self, event: PathedInotifyEvent) -> None:
        ev = event.ev
        if ev.is_moved_from:  # the group asks for it at the IN_MOVED_TO, to move the watches of a moved folder
            if len(self._moved_from) >= self._REMEMBERED_MOVES:
                self._moved_from.clear()
            self._moved_from[ev.cookie] = event
        if ev.is_directory:
            if ev.mask & _FOLDER_CHANGES:
                self._on_rescan()
        elif ev.mask & _FILE_CHANGES:
            self._on_path(os.fsdecode(event.path))

    def get_queued_moved_from_event(self, cookie: int) -> Optional[PathedInotifyEvent]:
        return self._moved_from.get(cookie)

    def discard_pending_events(self) -> None:
        self._moved_from.clear()

    def close(self) -> None:
        self._moved_from.clear()


def _watch_group(inotify: _OverflowReportingInotify, directory: str, recursive: bool,
                 sink: _PathSink) -> InotifyWatchGroup:
    """watchdog's watches of ``directory`` on ``inotify``, their events going to ``sink`` (OSError: not watched)."""
    group = InotifyWatchGroup(inotify, os.fsencode(directory), is_recursive=recursive, event_mask=CHANGES)
    if not (hasattr(group, "_move_event_grouper") and hasattr(group, "_active_callbacks_by_path")):  # watchdog 7.x
        group.deactivate()
        raise RuntimeError("watchdog's InotifyWatchGroup changed: cannot read its events")
    group._move_event_grouper = sink  # type: ignore[assignment]  # duck-typed: what the group calls
    return group


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
    """A watched folder: how it is watched and its watchdog handle (a watch group on the inotify instance, or a
    polling emitter's watch)."""

    def __init__(self, directory: str, recursive: bool):
        self.directory = directory
        self.recursive = recursive
        self.mode = "events"
        self.fstype = "unknown"
        self.group: Optional[InotifyWatchGroup] = None
        self.polled: Optional[ObservedWatch] = None
        self.identity: Optional[Tuple[int, int]] = None

    def still_same_folder(self) -> bool:
        try:
            st = _on_its_mount(self.directory, os.stat, self.directory)
        except (OSError, MountBusy):
            return False
        return (st.st_dev, st.st_ino) == self.identity

    @property
    def watched(self) -> bool:
        return self.group is not None or self.polled is not None


T = TypeVar("T")


def _on_its_mount(path: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the thread of ``path``'s mount, waited for a short bound (``MountBusy`` past it)."""
    return GATE.call(GATE.mount_of(path), path, fn, *args)


class _Handler(FileSystemEventHandler):
    """Turns the polling observer's events into paths; never raises (that would kill the observer)."""

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
    """The watches of every configured folder, read and supervised by one thread (``watch``).

    The thread sleeps until the inotify queue has an event, a poll found a
    change, or the next supervision tick; after the first change it gathers
    for ``batch_seconds`` (events wait in the kernel's queue meanwhile), then
    reads the whole queue at once and hands the batch's paths over in one
    call: a few wake-ups a second whatever the number of events, none per
    event. ``on_paths`` must not block (it hands the paths to the ingests).
    """

    def __init__(
        self,
        patterns: Iterable[PathPattern],
        config: WatchConfig,
        on_paths: Callable[[Set[str]], None],
        on_rescan: Callable[[], None],
        on_status_change: Callable[[], None] = lambda: None,
        supervise_interval: float = SUPERVISE_INTERVAL,
    ):
        self._config = config
        self._supervise_interval = supervise_interval
        self._on_paths = on_paths
        self._on_rescan = on_rescan
        self._on_status_change = on_status_change
        self._roots = [_Root(d, r) for d, r in sorted(watch_roots(patterns).items())]
        self._said_no_inotify = False
        #: Supervision retries a folder every second: its warnings once a minute, with the count left out.
        self._folder_log = RateLimitedLog(log)
        self.overflows = 0
        self.restarts = 0
        #: Paths of the batch being gathered (by this thread from the queue, by the polling threads), and
        #: whether it asks for a rescan.
        self._batch_lock = threading.Lock()
        self._batch: Set[str] = set()
        self._sink = _PathSink(self._add_path, self._add_rescan)
        self._inotify: Optional[_OverflowReportingInotify] = self._new_inotify()
        self._polls: BaseObserver = PollingObserver(timeout=config.poll_interval)
        self._handler = _Handler(self._add_path_from_poll, self._add_rescan_from_poll)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> None:
        self._polls.start()
        self.supervise()
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread (which closes the inotify instance as it ends) and the polling observer."""
        self._stop.set()
        self._wake()
        self._polls.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
        elif self._inotify is not None:  # never started
            self._inotify.close()
        if not self._thread.is_alive():  # else the thread may still wake itself: its pipe stays open
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._polls.join(timeout=1.0)

    def alive(self) -> bool:
        return self._thread.is_alive() and self._polls.is_alive()

    def statuses(self) -> Tuple[WatchStatus, ...]:
        """One per folder once watching started (``--once`` never watches)."""
        if not self._thread.is_alive():
            return ()
        return tuple(WatchStatus(r.directory, r.mode, r.fstype, self._works(r) and r.still_same_folder())
                     for r in self._roots)

    # -- the thread -------------------------------------------------------------

    def _run(self) -> None:
        last = self.statuses()
        next_tick = time.monotonic() + self._supervise_interval
        try:
            while not self._stop.is_set():
                self._wait_for_change(next_tick)
                if self._stop.is_set():
                    return
                try:
                    self._hand_over()
                except Exception:  # the thread must outlive any one failure; a lost event is found by a rescan
                    log.exception("reading file events failed")
                    self._add_rescan()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self._supervise_interval
                    last = self._supervision_tick(last)
        finally:
            if self._inotify is not None:
                self._inotify.close()

    def _wait_for_change(self, until: float) -> None:
        """Returns at ``until`` or, after a change, once the batch has gathered for ``batch_seconds``."""
        waited = [self._wake_r] if self._inotify is None else [self._wake_r, self._inotify.fd]
        try:
            ready, _, _ = select.select(waited, [], [], max(0.0, until - time.monotonic()))
        except (OSError, ValueError):  # the instance was closed meanwhile (stop): the loop ends
            return
        if ready:
            self._stop.wait(batch_seconds(self._config))

    def _hand_over(self) -> None:
        """Reads the inotify queue and hands the batch over: its paths, then a rescan if one was asked for."""
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        if self._inotify is not None:
            try:
                self.overflows += self._inotify.read_waiting()
            except OSError as exc:
                log.warning("reading the inotify queue failed; the next supervision tick starts a fresh one",
                            extra=fields(error=exc))
                self._inotify.overflowed = True
        with self._batch_lock:
            paths, self._batch = self._batch, set()
            rescan, self._rescan_asked = self._rescan_asked, False
        if paths:
            self._on_paths(paths)
        if rescan:
            self._on_rescan()

    def _supervision_tick(self, last: Tuple[WatchStatus, ...]) -> Tuple[WatchStatus, ...]:
        try:
            self.supervise()
            now = self.statuses()
            if now != last:
                self._on_status_change()
            return now
        except Exception:  # the supervisor must outlive any one failure
            log.exception("watch supervision failed; retrying")
            return last

    # -- the batch --------------------------------------------------------------

    _rescan_asked = False

    def _add_path(self, path: str) -> None:
        with self._batch_lock:
            self._batch.add(path)

    def _add_rescan(self) -> None:
        with self._batch_lock:
            self._rescan_asked = True

    def _add_path_from_poll(self, path: str) -> None:
        self._add_path(path)
        self._wake()

    def _add_rescan_from_poll(self) -> None:
        self._add_rescan()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:  # the pipe is full: the thread is woken already
            pass

    # -- supervision --------------------------------------------------------------

    def _new_inotify(self) -> Optional[_OverflowReportingInotify]:
        """An inotify instance, or None when the user has no inotify instance left (polling then)."""
        try:
            return _OverflowReportingInotify()
        except OSError as exc:
            if not self._said_no_inotify:
                self._said_no_inotify = True
                log.warning("inotify unavailable (instance limit, see fs.inotify.max_user_instances); "
                            "polling every folder instead", extra=fields(error=exc))
            return None

    def _replace_overflowed_inotify(self) -> Optional[_OverflowReportingInotify]:
        """The inotify instance whose queue overflowed since the last tick, replaced by a fresh one.

        Its folders are watched on the fresh instance by ``supervise`` (a
        walk of each root, once), which then asks for one rescan: the files
        whose events were lost are read then.
        """
        overflowed = self._inotify
        if overflowed is None or not overflowed.overflowed or self._stop.is_set():
            return None
        fresh = self._new_inotify()
        if fresh is None:
            return None  # no inotify instance left: keep the old one, whose watches still work
        log.warning("inotify queue overflowed (events lost); watching every folder on a fresh queue")
        for root in self._roots:
            if root.group is not None:
                root.group = None
        self._inotify = fresh
        return overflowed

    def supervise(self) -> None:
        """Replaces an overflowed inotify instance or a dead polling observer and (re)schedules every folder
        that is not watched; asks for a rescan when it did."""
        overflowed = self._replace_overflowed_inotify()
        self._revive()
        rescan = overflowed is not None
        for root in self._roots:
            if root.watched and self._works(root) and root.still_same_folder():
                continue
            if root.watched:
                self._unschedule(root)
                self.restarts += 1
                self._folder_log.warning("stopped:" + root.directory, "watch stopped; re-establishing it",
                                         directory=root.directory)
            try:
                if not _on_its_mount(root.directory, os.path.isdir, root.directory):
                    continue
                _on_its_mount(root.directory, self._schedule, root)
            except (FileNotFoundError, MountBusy):
                continue
            rescan = True
        if overflowed is not None:
            overflowed.close()  # after the folders are watched again: no gap
        if rescan:
            self._on_rescan()

    def _revive(self) -> None:
        if self._stop.is_set():
            return
        if self._inotify is None:
            self._inotify = self._new_inotify()
            if self._inotify is not None:
                self._wake()  # the thread waits on the new queue from its next round
                log.info("inotify available again; folders watched from now on use events")
        if not self._polls.is_alive():
            log.warning("watcher thread died; restarting the watcher thread")
            for root in self._roots:
                if root.polled is not None:
                    root.polled = None
            self._polls = PollingObserver(timeout=self._config.poll_interval)
            self._polls.start()

    def _choose_mode(self, root: _Root) -> str:
        root.fstype = fstype_of(root.directory, read_mounts())
        if self._config.mode != "auto":
            return self._config.mode
        return "poll" if is_network(root.fstype) else "events"

    def _schedule(self, root: _Root) -> None:
        st = os.stat(root.directory)
        root.identity = (st.st_dev, st.st_ino)
        root.mode = self._choose_mode(root)
        if root.mode == "events" and self._inotify is None:
            root.mode = "poll"
        elif root.mode == "events" and self._inotify is not None:
            try:
                root.group = _watch_group(self._inotify, root.directory, root.recursive, self._sink)
                self._watching(root)
                return
            except OSError as exc:
                self._folder_log.warning("no inotify:" + root.directory,
                                         "inotify unavailable (watch limit?); polling this folder instead",
                                         directory=root.directory, error=exc)
                root.mode = "poll"
        try:
            root.polled = self._polls.schedule(self._handler, root.directory, recursive=root.recursive)
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
        if root.group is not None:
            try:
                root.group.deactivate()
            except (KeyError, OSError):
                pass
        if root.polled is not None:
            try:
                self._polls.unschedule(root.polled)
            except (KeyError, OSError, AttributeError):
                pass
        root.group = root.polled = None

    def _works(self, root: _Root) -> bool:
        """Whether the root's watch still works: its watch group active, or its polling emitter alive."""
        if root.group is not None:  # the folder's own watch is gone once inotify removed it (IN_IGNORED)
            return root.group.is_active and os.fsencode(root.directory) in root.group._active_callbacks_by_path
        if root.polled is None or not self._polls.is_alive():
            return False
        return any(e.is_alive() for e in list(self._polls.emitters) if e.watch == root.polled)
