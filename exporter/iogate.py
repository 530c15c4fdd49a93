"""Raw operations on statistics files, each run on a thread of the file's mount, waited for a short bound.

One ingest thread reads all the files of a source in turn. A read that hangs
(a hard-mounted share whose server died) or takes long would hold every file
behind it. So the tailer does every system call on a file (open, fstat,
pread, lseek, close, a folder listing) through this gate: an *operation*, a
function run on a thread of the file's *mount*, found in
``/proc/self/mountinfo`` by the longest mount point that prefixes the path
(no system call on the path itself, which could hang too), while the caller
waits at most ``wait_seconds``. Each hand-over costs two context switches, so
an operation does all it can at once: reading a changed file is one (checks,
open, fstat, the reads of what was appended, close; ``opened_by``).

If the operation does not return in time, its mount is *busy*: the caller
gets ``MountBusy`` (not an ``OSError``, so no code that handles a missing or
unreadable file mistakes it for one), and every further operation on that
mount raises it at once, without waiting, until the stuck operation returns.
The caller skips the file (its cursor stays where it was: nothing lost,
nothing counted twice) and goes on with files of other mounts. When the
stuck operation returns, its result is thrown away (a descriptor it opened
is closed), the mount is free again, and the listeners (``on_free``) are
told, so that the files of the mount are read again.

- Threads are made lazily, one per mount in use, at most ``max_threads``;
  one idle for ``IDLE_SECONDS`` ends. A mount stuck forever costs one
  thread. Past the bound, operations on mounts without a thread run in the
  caller, as they did before this gate (logged once).
- A mount whose operations keep taking longer than ``wait_seconds`` but do
  return (a slow, not a dead, server) is waited for longer: twice the last
  overrun, at most ``MAX_WAIT_SECONDS``, shrinking again as its operations
  get fast. So a slow share is still read, never skipped forever.
- ``close`` never raises and never waits for a busy mount: it is queued
  behind the stuck operation and done when that returns.
- In a process other than the one that enabled the gate (a worker process
  reading a backlog, forked or started from a forkserver), operations run
  directly: such a process has no mount threads, and its reader has a
  deadline of its own.
- Off (``GATE`` not enabled: ``--once``, in-process tests), every operation
  runs directly in the caller.

Holes: ``pread_data`` reads a range in proportion to its data, not its size,
where the file system says where data is (``SEEK_DATA``/``SEEK_HOLE``); see
``exporter.tailer`` for what a hole means for lines.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from exporter.logs import fields
from exporter.mounts import read_mounts

log = logging.getLogger(__name__)

#: How long the caller waits for an operation on a mount that answers promptly.
WAIT_SECONDS = 0.15
#: The longest wait for a mount whose operations are slow but return.
MAX_WAIT_SECONDS = 2.0
#: Mount threads at most; past it, operations on further mounts run in the caller.
MAX_THREADS = 256
#: A mount thread idle this long ends (made again at the mount's next operation).
IDLE_SECONDS = 60.0
#: The mount table is read again when older than this (a share mounted meanwhile).
MOUNTS_MAX_AGE_SECONDS = 2.0

_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)

T = Any


class MountBusy(Exception):
    """An operation on ``mount`` did not return within its bound, or one before it is still stuck there
    (``path``, since ``since``, monotonic): the file was not read; its cursor is where it was."""

    def __init__(self, mount: str, path: str, since: float):
        super().__init__("waiting behind a stuck read of %s on mount %s" % (path, mount))
        self.mount = mount
        self.path = path
        self.since = since


class _Done:
    """Set once, waited for with a timeout: a lock the worker releases (cheaper than ``threading.Event``, whose
    wait takes a condition and a second lock: measured 12 against 7 microseconds a hand-over)."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._set:
            return True
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
            return True
        return self._set


class _Op:
    __slots__ = ("fn", "args", "path", "cleanup", "done", "result", "error", "abandoned", "started", "keep")

    def __init__(self, fn: Callable[..., Any], args: Tuple[Any, ...], path: str,
                 cleanup: Optional[Callable[[Any], None]]):
        self.fn = fn
        self.args = args
        self.path = path
        self.cleanup = cleanup
        self.done = _Done()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.abandoned = False
        self.started = time.monotonic()
        self.keep = False


class _Mount:
    """One mount's thread and state; every field is guarded by the gate's lock."""

    def __init__(self, point: str):
        self.point = point
        self.queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self.stuck: Optional[_Op] = None  # the operation the caller gave up on
        self.slow = 0.0  # seconds of the last overrun that returned (extends the wait), shrinking as ops are fast
        self.late: Optional[_Op] = None  # an abandoned operation of ``call(keep=True)`` that returned since
        self.thread: Optional[threading.Thread] = None


class Gate:
    def __init__(self, wait_seconds: float = WAIT_SECONDS, max_threads: int = MAX_THREADS,
                 mountinfo: str = "/proc/self/mountinfo"):
        self.wait_seconds = wait_seconds
        self.max_threads = max_threads
        self._mountinfo = mountinfo
        self._lock = threading.Lock()
        self._pid: Optional[int] = None  # the process the gate is on in (None: off)
        self._mounts: Dict[str, _Mount] = {}
        #: descriptor -> (mount point, path, fstat at the open), for descriptors opened through the gate
        self._fds: Dict[int, Tuple[str, str, Optional[os.stat_result]]] = {}
        self._points: List[str] = []  # mount points, longest first
        self._points_read = -MOUNTS_MAX_AGE_SECONDS
        self._mount_of: Dict[str, str] = {}
        self._listeners: List[Callable[[str], None]] = []
        self._over_bound_logged = False

    # -- set-up ----------------------------------------------------------------

    def enable(self) -> None:
        """Turns the gate on in this process (the daemon's ingest threads; not ``--once``)."""
        with self._lock:
            self._pid = os.getpid()

    @property
    def enabled(self) -> bool:
        return self._pid is not None and self._pid == os.getpid()

    def on_free(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Calls ``listener(mount)`` (on the mount's thread) when a busy mount is free again; returns the
        call that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    # -- which mount -----------------------------------------------------------

    def mount_of(self, path: str) -> str:
        """The longest mount point that is ``path`` or a folder above it, by name only (no system call on
        ``path``: a symlink to another mount is attributed to the mount of its own name)."""
        now = time.monotonic()
        with self._lock:
            if now - self._points_read > MOUNTS_MAX_AGE_SECONDS:
                points = sorted({point for point, _ in read_mounts(self._mountinfo)}, key=len, reverse=True)
                if points != self._points:
                    self._points, self._mount_of = points, {}
                self._points_read = now
            found = self._mount_of.get(path)
            if found is None:
                found = self._mount_of[path] = _longest_prefix(os.path.abspath(path), self._points)
                if len(self._mount_of) > 100_000:
                    self._mount_of.clear()
            return found

    def busy(self) -> Dict[str, Tuple[str, float]]:
        """Busy mounts: mount point -> (path of the stuck operation, monotonic time it started); not the
        folder walks of ``apart``."""
        with self._lock:
            return {m.point: (m.stuck.path, m.stuck.started) for m in self._mounts.values()
                    if m.stuck is not None and not m.point.startswith(_APART)}

    # -- operations ------------------------------------------------------------

    def call(self, mount: str, path: str, fn: Callable[..., T], *args: Any,
             cleanup: Optional[Callable[[T], None]] = None, keep: bool = False) -> T:
        """``fn(*args)`` on ``mount``'s thread, waited for a bound; ``MountBusy`` if it does not return in time
        (``cleanup(result)`` then runs when it does) or the mount is busy. With ``keep``, the result of such an
        operation that returned late is the answer of the next call (a long folder walk still progresses)."""
        if not self.enabled:
            return fn(*args)
        with self._lock:
            state = self._mounts.get(mount)
            if state is not None and state.stuck is not None:
                raise MountBusy(mount, state.stuck.path, state.stuck.started)
            if state is not None and state.late is not None and keep:
                late, state.late = state.late, None
                return self._outcome(late)
            if state is None:
                state = self._start(mount)
                if state is None:
                    return fn(*args)
            op = _Op(fn, args, path, cleanup)
            op.keep = keep
            wait = min(MAX_WAIT_SECONDS, max(self.wait_seconds, 2 * state.slow))
            self._put(state, op)
        if op.done.wait(wait):
            return self._outcome(op)
        with self._lock:
            if not op.done.is_set():
                op.abandoned = True
                if state.stuck is None:
                    state.stuck = op
                log.info("an operation on a mount takes long; skipping its files until it returns",
                         extra=fields(mount=mount, path=op.path, waited=round(wait, 3)))
                raise MountBusy(mount, op.path, op.started)
        return self._outcome(op)

    def close(self, fd: int) -> None:
        """Closes a descriptor on its mount's thread, without waiting (on a busy mount, after the stuck
        operation). Never raises."""
        with self._lock:
            opened = self._fds.pop(fd, None)
            state = self._mounts.get(opened[0]) if opened is not None and self.enabled else None
            if state is not None:
                self._put(state, _Op(_close_quietly, (fd,), opened[1] if opened else "", None))
                return
        _close_quietly(fd)

    def register(self, fd: int, mount: str, path: str, st: Optional[os.stat_result] = None) -> None:
        with self._lock:
            self._fds[fd] = (mount, path, st)

    def opened_on(self, fd: int) -> Optional[Tuple[str, str, Optional[os.stat_result]]]:
        """(mount, path, fstat taken at the open) of a descriptor opened through the gate."""
        return self._fds.get(fd)

    # -- the threads -----------------------------------------------------------

    def _start(self, mount: str) -> Optional[_Mount]:
        """A new state with a running thread for ``mount``; None past the thread bound (under the lock)."""
        if len(self._mounts) >= self.max_threads:
            if not self._over_bound_logged:
                self._over_bound_logged = True
                log.warning("more mounts than mount threads; files of the others are read without isolation",
                            extra=fields(threads=self.max_threads))
            return None
        state = self._mounts[mount] = _Mount(mount)
        state.thread = threading.Thread(target=self._serve, args=(state,), name="io-" + mount, daemon=True)
        state.thread.start()
        return state

    def _put(self, state: _Mount, op: _Op) -> None:
        state.queue.put(op)

    def _serve(self, state: _Mount) -> None:
        while True:
            try:
                op = state.queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # callers put under this lock: nothing arrives while it is held
                    if state.queue.empty() and state.stuck is None:
                        state.thread = None
                        self._mounts.pop(state.point, None)
                        return
                continue
            self._run(state, op)

    def _run(self, state: _Mount, op: _Op) -> None:
        _running.op = op
        try:
            op.result = op.fn(*op.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            op.error = exc
        _running.op = None
        took = time.monotonic() - op.started
        freed = False
        with self._lock:
            op.done.set()
            if took <= self.wait_seconds:
                state.slow /= 2
            else:
                state.slow = took
            if op.abandoned:
                if op.keep:
                    state.late = op
                elif op.error is None and op.cleanup is not None:
                    try:
                        op.cleanup(op.result)
                    except Exception:  # a cleanup (a close) of an abandoned result
                        log.debug("cleanup of an abandoned operation failed", exc_info=True)
                if state.stuck is op:
                    state.stuck = None
                    freed = True
            listeners = list(self._listeners) if freed else []
        if freed:
            log.info("a mount answers again; reading its files", extra=fields(mount=state.point,
                                                                               path=op.path, seconds=round(took, 1)))
            for listener in listeners:
                try:
                    listener(state.point)
                except Exception:  # a listener must not end the mount's thread
                    log.exception("mount listener failed")

    @staticmethod
    def _outcome(op: _Op) -> Any:
        if op.error is not None:
            raise op.error
        return op.result


#: The operation a mount's thread runs (``op``), for ``working_on``.
_running = threading.local()


def working_on(path: str) -> None:
    """Called by an operation for many files (``on_mount``) as it comes to ``path``: were it stuck, ``path`` is the
    file named (``MountBusy``, ``Gate.busy``), not the first of the operation."""
    op = getattr(_running, "op", None)
    if op is not None:
        op.path = path


def _longest_prefix(path: str, points: List[str]) -> str:
    for point in points:  # longest first
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return point
    return "/"


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


#: The gate of this process, turned on by the daemon's ingest threads (``SourceIngest.start``).
GATE = Gate()


# -- the raw operations, through the gate ------------------------------------------


def opened_by(opener: Callable[..., Tuple[Optional[int], os.stat_result, T]], path: str,
              *args: Any) -> Tuple[Optional[int], os.stat_result, T]:
    """``opener(path, *args)``, one operation of the path's mount: the tailer's open and fstat, its checks, and
    what it can read at once. It returns (descriptor, fstat, what it read): the descriptor None when the opener
    closed the file itself (a read done whole in the one operation), else known to the gate (close it with
    ``close``; a descriptor of an operation that returned too late is closed by the gate)."""
    gate = GATE
    if not gate.enabled:
        return opener(path, *args)
    mount = gate.mount_of(path)
    fd, st, got = gate.call(mount, path, opener, path, *args, cleanup=_close_opened)
    if fd is not None:
        gate.register(fd, mount, path, st)
    return fd, st, got


def _close_opened(result: Tuple[Optional[int], os.stat_result, Any]) -> None:
    if result[0] is not None:
        os.close(result[0])


def close(fd: int) -> None:
    GATE.close(fd)


def on_fd(fd: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, one operation of the mount of ``fd`` (opened through ``opened_by``): everything a read
    needs of an open file at once (``fn`` runs on the mount's thread: it calls ``os`` directly)."""
    gate = GATE
    opened = gate.opened_on(fd) if gate.enabled else None
    if opened is None:
        return fn(*args)
    return gate.call(opened[0], opened[1], fn, *args)


def fstat(fd: int) -> os.stat_result:
    """``os.fstat``; of a descriptor opened through the gate, the fstat taken with the open (no operation: the
    reads that follow read to the end of the file anyway)."""
    opened = GATE.opened_on(fd) if GATE.enabled else None
    if opened is not None and opened[2] is not None:
        return opened[2]
    return on_fd(fd, os.fstat, fd)


def pread(fd: int, size: int, offset: int) -> bytes:
    return on_fd(fd, os.pread, fd, size, offset)


#: Keys of the threads of ``apart`` (never a mount point, which is absolute).
_APART = "apart:"


def apart(key: str, fn: Callable[[], T]) -> T:
    """``fn()`` on a thread of its own, ``key``'s (a folder walk, which may cross into any mount below its
    folder): waited for as an operation of a mount is; ``MountBusy`` while one of ``key``'s is stuck. Never
    on a mount's thread: a stuck walk does not hold the reads of the files of the mount it started in."""
    gate = GATE
    if not gate.enabled:
        return fn()
    return gate.call(_APART + key, key, fn, keep=True)


def raw_pread_data(fd: int, size: int, offset: int) -> Tuple[int, bytes]:
    """(hole, b"") when ``offset`` is in a hole of ``hole`` bytes (up to the next data, or the end of the
    file); else (0, at most ``size`` bytes of data, up to the next hole). (0, b"") at the end."""
    if _SEEK_DATA is None or _SEEK_HOLE is None:
        return 0, os.pread(fd, size, offset)
    try:
        data = os.lseek(fd, offset, _SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a hole up to the end, or at/after the end
            return _hole_to_the_end(fd, offset, _SEEK_DATA), b""
        if exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return 0, os.pread(fd, size, offset)  # no hole information: all data
        raise
    if data > offset:
        return data - offset, b""
    try:
        hole = os.lseek(fd, offset, _SEEK_HOLE)
    except OSError:
        hole = offset + size
    return 0, os.pread(fd, max(1, min(size, hole - offset)), offset)


def _hole_to_the_end(fd: int, offset: int, seek_data: int) -> int:
    """The hole from ``offset`` to the end, after ``SEEK_DATA`` found no data there: the size is taken first and
    the data looked for again, so a line appended in between is data, never a hole."""
    end = os.fstat(fd).st_size
    if end <= offset:
        return 0
    try:
        os.lseek(fd, offset, seek_data)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data up to the size taken before: a hole that long
            return end - offset
        raise
    return 0  # data after all (appended meanwhile): read at the next chunk


def raw_data_bytes(fd: int, start: int, end: int, enough: int) -> int:
    """Bytes of data (not holes) in ``[start, end)``, counted up to ``enough`` (``end - start`` where the file
    system says nothing about holes)."""
    if _SEEK_DATA is None or _SEEK_HOLE is None:
        return end - start
    found, offset = 0, start
    try:
        while offset < end and found < enough:
            data = os.lseek(fd, offset, _SEEK_DATA)
            if data >= end:
                break
            hole = min(end, os.lseek(fd, data, _SEEK_HOLE))
            found += hole - data
            offset = hole
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after offset
            return found
        return end - start
    return found


def pread_data(fd: int, size: int, offset: int) -> Tuple[int, bytes]:
    """``raw_pread_data``, one operation of the descriptor's mount."""
    return on_fd(fd, raw_pread_data, fd, size, offset)


def by_mount(paths: List[str]) -> Dict[str, List[str]]:
    """``paths`` by the mount each is on (by name, as ``mount_of``), in their order; one group when the gate is
    off."""
    gate = GATE
    if not gate.enabled:
        return {"/": list(paths)} if paths else {}
    groups: Dict[str, List[str]] = {}
    for path in paths:
        groups.setdefault(gate.mount_of(path), []).append(path)
    return groups


def on_mount(mount: str, path: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, one operation of ``mount`` (from ``by_mount``), for files of it: ``path``, the first, is named
    if it gets stuck, until ``fn`` says it came to another one (``working_on``)."""
    gate = GATE
    if not gate.enabled:
        return fn(*args)
    return gate.call(mount, path, fn, *args)


def on_path(path: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, an operation on ``path`` (a folder listing), one operation of the path's mount."""
    gate = GATE
    if not gate.enabled:
        return fn(*args)
    return gate.call(gate.mount_of(path), path, fn, *args)
