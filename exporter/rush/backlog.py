"""A big backlog of ``cpu.acct`` bytes (a cold start) read in worker processes.

The tailer hands over files with many unread bytes (``exporter.tailer.Backlog``);
each is cut at line starts into ranges of a few MiB, and the ranges of every
file are tallied in parallel by a pool of processes, one per core by default
(``rush.read_processes``). Each range comes back as a ``Tally`` plus its line
state; the reader merges them in file and offset order, so label budgets
admit values as a sequential read would and totals are identical.

Workers are started with ``forkserver`` (``spawn`` where it is missing), not
``fork``: the daemon has threads (HTTP, ingest, watcher) whose locks a forked
child would inherit in whatever state they were. The forkserver is started
once, from a clean single-threaded process, so later pools start in a few
milliseconds (measured: docs/rush.md). A worker that dies or raises loses
nothing: its ranges are read again in the daemon's own process, once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import List, NamedTuple, Optional, Sequence, Tuple

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


def tally_range(task: Task) -> RangeResult:
    """Tallies ``[start, end)`` of a backlog's file; the first range starts with the cursor's line state."""
    backlog, settings = task.backlog, task.settings
    first = task.start == backlog.start
    state = LineState(backlog.partial, backlog.skipping) if first else LineState()
    tally = Tally(settings.users, settings.titles)
    read_range(backlog, task.start, task.end, state,
               lambda label, block: tally.add_block(block, settings.horizon),
               lambda label, nbytes, new_line: tally.discarded(nbytes, new_line))
    return RangeResult(tally, state)


def processes_to_use(configured: Optional[int]) -> int:
    """``rush.read_processes``: None (``auto``) is every core."""
    return configured if configured is not None else max(1, os.cpu_count() or 1)


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def prepare_workers() -> None:
    """Starts the forkserver now, with this module imported, so the first backlog does not wait for it.

    The server is a fresh interpreter (not a fork of the daemon), started before the backlog is there;
    each worker is then a fork of it: ~50 ms for a pool instead of ~300 ms (docs/rush.md)."""
    if start_method() == "forkserver":
        from multiprocessing import forkserver

        multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
        forkserver.ensure_running()


def plan(backlog: Backlog, fd: int, range_bytes: int) -> List[Tuple[int, int]]:
    """``backlog`` cut at line starts into ranges of about ``range_bytes``."""
    parts = max(1, (backlog.end - backlog.start) // max(range_bytes, MIN_RANGE_BYTES))
    cuts = line_starts(fd, backlog.start, backlog.end, parts) + [backlog.end]
    return list(zip(cuts, cuts[1:]))


class BacklogReader:
    """Reads the ranges of a sync's backlogs: in a pool of processes when big enough, else in this one."""

    def __init__(self, processes: int):
        self.processes = processes

    def range_bytes(self, total: int) -> int:
        """Ranges small enough to keep every process busy to the end (four per process)."""
        return max(MIN_RANGE_BYTES, total // (self.processes * 4))

    def read(self, tasks: Sequence[Task]) -> List[Optional[RangeResult]]:
        """The result of every task, in order; None for a range whose file is gone (logged)."""
        total = sum(task.end - task.start for task in tasks)
        if self.processes <= 1 or total < PARALLEL_MIN_BYTES:
            return [self._in_process(task, None) for task in tasks]
        started = time.monotonic()
        try:
            context = multiprocessing.get_context(start_method())
            with ProcessPoolExecutor(min(self.processes, len(tasks)), mp_context=context) as pool:
                futures = [pool.submit(tally_range, task) for task in tasks]
                results = [self._collect(future, task) for future, task in zip(futures, tasks)]
        except OSError as exc:  # no process could be started (a limit on processes, memory)
            log.warning("cannot start worker processes; reading the backlog in the daemon",
                        extra=fields(error=exc))
            return [self._in_process(task, None) for task in tasks]
        log.debug("backlog read in worker processes", extra=fields(
            bytes=total, ranges=len(tasks), processes=self.processes, seconds=round(time.monotonic() - started, 3)))
        return results

    def _collect(self, future: Future[RangeResult], task: Task) -> Optional[RangeResult]:
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - a worker died (BrokenProcessPool) or raised: read it here
            return self._in_process(task, exc)

    @staticmethod
    def _in_process(task: Task, worker_error: Optional[BaseException]) -> Optional[RangeResult]:
        if worker_error is not None and not isinstance(worker_error, FileChanged):
            log.warning("a worker process failed reading a backlog range; reading it in the daemon instead",
                        extra=fields(path=task.backlog.label, start=task.start, end=task.end,
                                     error=repr(worker_error)))
        try:
            return tally_range(task)
        except OSError as exc:
            log.error("cannot read a backlog range: its file is gone or changed; its lines are not counted",
                      extra=fields(path=task.backlog.label, start=task.start, end=task.end, error=exc))
            return None
