"""A big backlog of ``cpu.acct`` bytes (a cold start) read in worker processes.

The tailer hands over files with many unread bytes (``exporter.tailer.Backlog``);
each is cut at line starts into ranges of a few MiB, and the ranges of every
file are tallied in parallel by a pool of processes, one per core by default
(``rush.read_processes``). Each range comes back as a ``Tally`` plus its line
state; the reader merges them in file and offset order, so label budgets
admit values as a sequential read would and totals are identical.

Workers are forked from the reading process while it has one thread (a
one-shot read, ``--once``, of Rush alone): they start at once, with
everything imported. The daemon has threads (HTTP, ingest, watcher) whose locks a forked child
would inherit in whatever state they were, so its workers are forked from a
forkserver instead (``spawn`` where it is missing): a fresh interpreter with
this module imported, started at the first backlog; later pools start in a
few milliseconds (measured: docs/rush.md). A worker that dies or raises, a
pool that breaks while tasks are submitted, or workers still busy at a
deadline (a hung share) lose nothing: the ranges without a result are read
in the daemon's own process, once (tests/test_rush_tally.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

from exporter.iogate import MountBusy
from exporter.logs import fields
from exporter.rush.tally import Tally
from exporter.tailer import Backlog, FileChanged, LineState, line_starts, read_range

log = logging.getLogger(__name__)

#: A file with at least this many unread bytes is a backlog (a cold start, a long outage), not an append.
BACKLOG_BYTES = 1 << 20
#: Backlogs smaller than this in total are read in the daemon's process: a pool costs more than it saves.
PARALLEL_MIN_BYTES = 4 << 20
#: Smallest range worth a task of its own.
MIN_RANGE_BYTES = 2 << 20


class Settings(NamedTuple):
    """What a worker needs to tally lines as the reader would."""

    users: bool
    titles: bool
    horizon: float


class Task(NamedTuple):
    backlog: Backlog
    start: int
    end: int
    settings: Settings


class RangeResult(NamedTuple):
    tally: Tally
    state: LineState  # the line state at the range's end


class RangeFailed(NamedTuple):
    """A range of a file that is still there but could not be read (an I/O error, a share that refused; or its
    mount is busy, ``MountBusy``: a stuck read before it): the reader reads that file's backlog again later,
    from its start."""

    error: OSError | MountBusy


#: What reading a range gives: its tally; None when its file is gone or changed (its lines are no longer
#: there to count); or the error of a file that is there but could not be read.
Outcome = Union[RangeResult, RangeFailed, None]


def tally_range(task: Task) -> RangeResult:
    """Tallies ``[start, end)`` of a backlog's file; the first range starts with the cursor's line state."""
    backlog, settings = task.backlog, task.settings
    first = task.start == backlog.start
    state = LineState(backlog.partial, backlog.skipping) if first else LineState()
    tally = Tally(settings.users, settings.titles)
    read_range(backlog, task.start, task.end, state,
               lambda label, block, key: tally.add_block(block, settings.horizon),
               lambda label, nbytes, new_line: tally.discarded(nbytes, new_line))
    return RangeResult(tally, state)


def processes_to_use(configured: Optional[int]) -> int:
    """``rush.read_processes``: None (``auto``) is every core."""
    return configured if configured is not None else max(1, os.cpu_count() or 1)


def start_method() -> str:
    """``fork`` while this process has only the calling thread (no other thread can hold a lock the child would
    inherit); else ``forkserver``, or ``spawn`` where that is missing."""
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def plan(backlog: Backlog, fd: int, range_bytes: int) -> List[Tuple[int, int]]:
    """``backlog`` cut at line starts into ranges of about ``range_bytes``."""
    parts = max(1, (backlog.end - backlog.start) // max(range_bytes, MIN_RANGE_BYTES))
    cuts = line_starts(fd, backlog.start, backlog.end, parts) + [backlog.end]
    return list(zip(cuts, cuts[1:]))


class ReadInterrupted(RuntimeError):
    """The daemon is stopping: the backlog read was cut short (``BacklogReader.interrupt``); nothing of it counted."""


#: A pool gets at least this long for a sync's backlogs before its unfinished ranges are read in the daemon,
MIN_DEADLINE_SECONDS = 60.0
#: or one second per this many bytes if that is longer: generous for any disk or share that answers at all.
DEADLINE_BYTES_PER_SECOND = 1 << 20


def deadline_seconds(total: int) -> float:
    """How long a pool may take for ``total`` bytes of backlogs (a worker stuck on a hung share is not waited
    for longer)."""
    return max(MIN_DEADLINE_SECONDS, total / DEADLINE_BYTES_PER_SECOND)


#: How often a worker process checks that the exporter that started it still runs.
DAEMON_CHECK_SECONDS = 1.0


def new_pool(processes: int) -> ProcessPoolExecutor:
    method = start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])  # for the server's first start: its workers have this module
    log.debug("starting worker processes", extra=fields(processes=processes, start_method=method))
    return ProcessPoolExecutor(processes, mp_context=context, initializer=_end_with, initargs=(os.getpid(),))


def _end_with(daemon: int) -> None:
    """In a worker: exits once the exporter ``daemon`` is gone.

    Each worker holds the write end of the pool's queue, and in the daemon
    its parent is the forkserver, whose keep-alive pipe it holds too: after
    the exporter is killed (``kill -9``, the OOM killer) nothing would ever
    end them, nor the forkserver, which lives while a worker does.
    """
    def watch() -> None:
        while True:
            time.sleep(DAEMON_CHECK_SECONDS)
            try:
                os.kill(daemon, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # another user's process now has the number: ours is gone
                os._exit(0)

    threading.Thread(target=watch, name="end-with-exporter", daemon=True).start()


Work = Callable[[Task], RangeResult]
Submitted = Union["Future[RangeResult]", BaseException]


class BacklogReader:
    """Reads the ranges of a sync's backlogs: in a pool of processes when big enough, else in this one.

    Whatever happens to the pool (no process can start, a worker is killed
    while tasks are submitted or run, a worker hangs past the deadline),
    each range is still read once: in the daemon's process, in order.

    ``work``, ``pools`` and ``deadline`` are for tests: what a worker runs for a task, how a pool of so many
    processes is made, and how long a pool may take for so many bytes.
    """

    def __init__(self, processes: int, work: Work = tally_range,
                 pools: Callable[[int], ProcessPoolExecutor] = new_pool,
                 deadline: Callable[[int], float] = deadline_seconds):
        self.processes = processes
        self._work = work
        self._pools = pools
        self._deadline = deadline
        self._lock = threading.Lock()  # guards _pool and _interrupted against interrupt() from another thread
        self._pool: Optional[ProcessPoolExecutor] = None
        self._interrupted = False

    def range_bytes(self, total: int) -> int:
        """Ranges small enough to keep every process busy to the end (four per process)."""
        return max(MIN_RANGE_BYTES, total // (self.processes * 4))

    def read(self, tasks: Sequence[Task]) -> List[Outcome]:
        """The outcome of every task, in order (see ``Outcome``; a file gone is logged here).

        Raises only ``ReadInterrupted`` (after ``interrupt``)."""
        total = sum(task.end - task.start for task in tasks)
        if self.processes <= 1 or total < PARALLEL_MIN_BYTES:
            return [self._in_process(task, None) for task in tasks]
        started = time.monotonic()
        pool = self._start_pool(len(tasks))
        if pool is None:
            return [self._in_process(task, None) for task in tasks]
        submitted: List[Submitted] = []
        try:
            submitted = self._submit(pool, tasks)
            deadline = started + self._deadline(total)
            results = [self._collect(pool, item, task, deadline) for item, task in zip(submitted, tasks)]
        finally:
            self._close_pool(pool, all(isinstance(item, Future) and item.done() for item in submitted))
        log.debug("backlog read in worker processes", extra=fields(
            bytes=total, ranges=len(tasks), processes=self.processes, seconds=round(time.monotonic() - started, 3)))
        return results

    def interrupt(self) -> None:
        """From another thread, when the daemon stops: the read in progress raises ``ReadInterrupted`` and its
        workers are killed, so that no worker (stuck on a hung share) keeps the daemon from exiting."""
        with self._lock:
            self._interrupted = True
            pool = self._pool
        if pool is not None:
            _kill_workers(pool)

    def _start_pool(self, tasks: int) -> Optional[ProcessPoolExecutor]:
        try:
            with self._lock:
                self._check_interrupted()
                self._pool = self._pools(min(self.processes, tasks))
                return self._pool
        except ReadInterrupted:
            raise
        except Exception as exc:  # noqa: BLE001 - no process could be started (a limit on processes, memory)
            log.warning("cannot start worker processes; reading the backlog in the daemon",
                        extra=fields(error=repr(exc)))
            return None

    def _submit(self, pool: ProcessPoolExecutor, tasks: Sequence[Task]) -> List[Submitted]:
        """A future per task; the error instead for the tasks after a failed submit (a worker died meanwhile:
        ``BrokenProcessPool``, or no process could be started)."""
        submitted: List[Submitted] = []
        for task in tasks:
            try:
                submitted.append(pool.submit(self._work, task))
            except Exception as exc:  # noqa: BLE001 - those ranges are read here (_collect)
                return submitted + [exc] * (len(tasks) - len(submitted))
        return submitted

    def _collect(self, pool: ProcessPoolExecutor, item: Submitted, task: Task,
                 deadline: float) -> Outcome:
        try:
            if isinstance(item, BaseException):
                raise item
            try:
                return item.result(timeout=max(0.0, deadline - time.monotonic()))
            except FuturesTimeout:
                log.warning("worker processes took longer than their deadline (a hung share?); stopping them",
                            extra=fields(path=task.backlog.label, start=task.start, end=task.end))
                _kill_workers(pool)  # the other unfinished ranges fail now, and are read here too
                raise
        except Exception as exc:  # noqa: BLE001 - a worker died (BrokenProcessPool), raised or hung: read it here
            with self._lock:
                self._check_interrupted()
            return self._in_process(task, exc)

    def _close_pool(self, pool: ProcessPoolExecutor, finished: bool) -> None:
        """Waits for a pool whose every task finished; kills one that still works (its results are not needed)."""
        with self._lock:
            self._pool = None
        if not finished:
            _kill_workers(pool)
        pool.shutdown(wait=finished, cancel_futures=True)

    def _check_interrupted(self) -> None:
        if self._interrupted:
            raise ReadInterrupted("the daemon is stopping")

    def _in_process(self, task: Task, worker_error: Optional[BaseException]) -> Outcome:
        if worker_error is not None and not isinstance(worker_error, FileChanged):
            log.warning("a worker process failed reading a backlog range; reading it in the daemon instead",
                        extra=fields(path=task.backlog.label, start=task.start, end=task.end,
                                     error=repr(worker_error)))
        try:
            return tally_range(task)
        except FileChanged as exc:
            log.error("cannot read a backlog range: its file is gone or changed; its lines are not counted",
                      extra=fields(path=task.backlog.label, start=task.start, end=task.end, error=exc))
            return None
        except (OSError, MountBusy) as exc:  # the reader marks the file down (logged there; not when its mount
            return RangeFailed(exc)  # is busy) and reads the backlog again


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kills the pool's worker processes; the pool breaks, its unfinished futures fail (BrokenProcessPool).

    Python before 3.14 has no public call for it (3.14: ``ProcessPoolExecutor.kill_workers``)."""
    for process in list((pool._processes or {}).values()):
        process.kill()
