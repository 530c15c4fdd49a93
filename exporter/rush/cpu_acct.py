"""Reader of Rush ``cpu.acct`` files: tail, parse, count, snapshot, families.

Counters are totals of every line read while the daemon runs: lines of a
rotated or deleted file stay counted, a file's lines are counted once (see
``exporter.tailer``). Gauges (utilization, daemon state) are the latest
record by time among the files of a host that still exist; a record dated
more than ``max_clock_skew`` ahead of the clock is counted but never becomes
the latest, so one bad date cannot freeze a gauge.

The *host* of a file's gauges (``u``, ``r``, ``s``, ``d`` and ``m`` records
carry no host) is, in order: the entry's ``host``; the ``(?P<host>...)``
group of ``host_from_path`` (the entry's, else the section's) searched in the
path; the host of the file's first ``p`` record; the file's path.

Every label value taken from a file or a path (host, user, title) is made
valid UTF-8 by ``families.label_value`` (bytes that are not UTF-8 escaped,
one-to-one), then goes through a ``LabelBudget``: cut to ``max_label_length``
and limited in number, so memory and series stay bounded whatever the files
contain.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import (
    Any,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
)

from prometheus_client.metrics_core import Metric

from exporter.budget import LabelBudget
from exporter.containment import OUTSIDE, Containment, OutsideRoots
from exporter.families import LiveRows, counter, gauge, label_value
from exporter.iogate import MountBusy, apart
from exporter.logs import RateLimitedLog, fields
from exporter.paths import PathPattern
from exporter.rush import saved
from exporter.rush.backlog import (
    BACKLOG_BYTES,
    BacklogReader,
    Outcome,
    RangeFailed,
    RangeResult,
    Settings,
    Task,
    plan,
    processes_to_use,
)
from exporter.rush.config import SERIES_PER_BREAKDOWN_VALUE, SERIES_PER_HOST, Breakdown, CpuAcctEntry, RushConfig
from exporter.rush.records import STATUSES, SYSTEM, USER, WALL
from exporter.rush.saved import FileState, GoneShare, SavedBudget, SavedReader
from exporter.rush.tally import BREAKDOWN_WALL, OVER_LONG, RECORD_NAMES, Exact, Tally
from exporter.sources import CHECK_RESOLUTION_SECONDS, FileStatus
from exporter.tailer import MAX_LINE_BYTES, Backlog, FileKey, LineState, Tailer

log = logging.getLogger(__name__)

KIND = "rush_cpu_acct"
#: Version of the checkpoint's content; a checkpoint of another version is ignored (files read again).
#: 2: the share of gone files merged by host (``gone``), their own state dropped.
#: 3: each file's clock skew (``FileState.clock_ahead``), so a host whose records are all ahead is still shown.
STATE_VERSION = 3

_CACHE_NOTE = " (read from cpu.acct; cached between changes of the file)"
Totals = List[Exact]


@dataclass(frozen=True)
class CpuAcctSnapshot:
    files: Tuple[FileStatus, ...]
    frames: Mapping[Tuple[str, str], float]  # whole numbers; floats in history rebuilt by backfill
    wall_seconds: Mapping[str, float]
    system_seconds: Mapping[str, float]
    user_seconds: Mapping[str, float]
    records: Mapping[Tuple[str, str], int]
    daemon_starts: Mapping[str, int]
    utilization: Mapping[str, float]
    online: Mapping[str, int]
    last_record_time: Mapping[str, int]
    user_frames: Optional[Mapping[Tuple[str, str], int]]
    user_wall_seconds: Optional[Mapping[str, float]]
    title_frames: Optional[Mapping[Tuple[str, str], int]]
    title_wall_seconds: Optional[Mapping[str, float]]
    #: Per label name (host, user, title): values cut to length, and records counted as __other__.
    #: None in rebuilt history, which has no exporter of its own.
    labels_truncated: Optional[Mapping[str, int]] = None
    labels_over_budget: Optional[Mapping[str, int]] = None


def _scanned(pattern: PathPattern) -> List[str]:
    """The files ``pattern`` matches, walked on a thread of its own (``iogate.apart``); none while a walk of it
    is stuck (the files known already are still read)."""
    try:
        return apart("scan " + pattern.pattern, lambda: list(pattern.scan()))
    except MountBusy:
        return []


def _frozen(mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


def _add(into: Dict[str, Totals], key: str, totals: Totals) -> None:
    mine = into.get(key)
    if mine is None:
        mine = into[key] = [0] * len(totals)
    for slot, value in enumerate(totals):
        mine[slot] += value


def _count(totals: Totals) -> int:
    """Frames in ``totals``: one budget decision each."""
    return int(totals[0] + totals[1] + totals[2] + totals[3])


class _Breakdown:
    """Frames and wall seconds per user or per job title, within a series budget."""

    def __init__(self, series_budget: int, max_length: int):
        self.budget = LabelBudget(series_budget, SERIES_PER_BREAKDOWN_VALUE, max_length)
        self.totals: Dict[str, Totals] = {}
        self.frames: LiveRows[Tuple[str, str]] = LiveRows()
        self.wall: LiveRows[str] = LiveRows()
        self.dirty: Set[str] = set()

    def merge(self, raw: Dict[str, Totals], contributed: Dict[str, Totals]) -> None:
        for value, totals in raw.items():
            label = self.budget.label_many(label_value(value), _count(totals))
            _add(self.totals, label, totals)
            _add(contributed, label, totals)
            self.dirty.add(label)

    def views(self) -> Tuple[Mapping[Tuple[str, str], int], Mapping[str, float]]:
        """Every status of every value, zeros included, so alerts see a series before the first failure."""
        for label in self.dirty:
            totals = self.totals[label]
            for slot, status in enumerate(STATUSES):
                self.frames.set((label, status), totals[slot])
            self.wall.set(label, float(totals[BREAKDOWN_WALL]))
        self.dirty.clear()
        return self.frames.frozen(), self.wall.frozen()


def _latest(candidates: Iterable[Optional[Tuple[int, Any]]]) -> Optional[Any]:
    latest: Optional[Tuple[int, Any]] = None
    for timed in candidates:
        if timed is not None and (latest is None or timed[0] >= latest[0]):
            latest = timed
    return None if latest is None else latest[1]


def _set_or_discard(view: LiveRows[str], host: str, value: Optional[Any]) -> None:
    if value is None:
        view.discard(host)
    else:
        view.set(host, value)


class CpuAcctReader:
    kind = KIND

    def __init__(self, config: RushConfig, backlogs: Optional[BacklogReader] = None):
        """``backlogs``: what reads big backlogs (tests give one with their own worker function)."""
        self._config = config
        self._entries = [(PathPattern(entry.path), entry) for entry in config.cpu_acct]
        self.patterns = [pattern for pattern, _ in self._entries]
        self._containment = Containment(self.patterns)
        self._tailer = Tailer(self._consume, discarded=self._discarded, backlog=self._defer,
                              containment=self._containment, changed=self._changed_while_stopped)
        #: Per file, reads refused because its path leads outside the configured folders (``containment``).
        self._outside: Dict[str, int] = {}
        #: Per file label: records dated beyond the horizon since the start (not checkpointed: a count of this
        #: run's reads; the skew itself is the file's state, ``FileState.clock_ahead``).
        self._ahead: Dict[str, int] = {}
        #: Per file label: when it was last looked at (a read, or a read that failed).
        self._checked: Dict[str, float] = {}
        self._backlogs = backlogs or BacklogReader(processes_to_use(config.read_processes))
        self._files: Dict[str, FileState] = {}
        #: What files that are gone left in the totals, by host; their ``FileState`` is dropped (``_retire``).
        self._gone = GoneShare()
        self._present: Set[str] = set()
        self._present_changes = 0  # files found or gone from ``_present``: with the tailer's, when to look at liveness
        self._gauge_host: Dict[str, str] = {}
        self._hosts: Dict[str, Totals] = {}
        self._host_budget = LabelBudget(config.host_series_budget, SERIES_PER_HOST, config.max_label_length)
        self._users = self._breakdown(config.users)
        self._titles = self._breakdown(config.titles)
        self._file_log = RateLimitedLog(log)
        #: (path, monotonic start) of the read in progress, for the ingest's stuck-read monitor.
        self.reading: Optional[Tuple[str, float]] = None
        #: Tallies and backlogs of this sync in file order, once a backlog was deferred (merged at the end).
        self._queue: List[Tuple[str, Tally] | Tuple[Backlog, List[Task]]] = []
        self._horizon = 0.0
        self._init_views()

    def _breakdown(self, config: Breakdown) -> Optional[_Breakdown]:
        return _Breakdown(config.series_budget, self._config.max_label_length) if config.enabled else None

    def _init_views(self) -> None:
        self._frames_view: LiveRows[Tuple[str, str]] = LiveRows()
        self._seconds_views: Tuple[LiveRows[str], ...] = (LiveRows(), LiveRows(), LiveRows())
        self._records_view: LiveRows[Tuple[str, str]] = LiveRows()
        self._starts_view: LiveRows[str] = LiveRows()
        self._gauge_views: Tuple[LiveRows[str], ...] = (LiveRows(), LiveRows(), LiveRows())
        self._statuses: Dict[str, FileStatus] = {}
        #: The statuses in path order, and each path's place there: re-sorted only when files come or go.
        self._status_list: List[FileStatus] = []
        self._status_at: Dict[str, int] = {}
        self._statuses_moved = False
        self._status_tuple: Tuple[FileStatus, ...] = ()
        #: ``_liveness``'s value when the live files were last worked out (None: never since the views were made).
        self._live_seen: Optional[Tuple[int, int]] = None
        self._label_host: Dict[str, str] = {}
        self._labels_by_host: Dict[str, Set[str]] = {}
        self._live: Set[str] = set()
        self._dirty_hosts: Set[str] = set()
        self._dirty_labels: Set[str] = set(self._files) | self._present
        #: Files looked at since the last snapshot: their statuses are new (size, time, last check), nothing else.
        self._restat: Set[str] = set()
        #: Whether files' states may belong to files no longer followed (after a restore): see ``_retire``.
        self._check_gone = True

    # -- reading -------------------------------------------------------------

    def sync(self, paths: Optional[Collection[str]] = None) -> CpuAcctSnapshot:
        """Reads the changed ``paths`` (or every matching file) and returns a snapshot."""
        if paths is None:
            matched = {path for pattern in self.patterns for path in _scanned(pattern)}
            candidates = matched | self._present | self._tailer.paths
        else:
            candidates = {path for path in paths if self._entry_for(path) is not None}
        self._horizon = time.time() + self._config.max_clock_skew
        self._tailer.defer_bytes = BACKLOG_BYTES if self._backlogs.processes > 1 else None
        try:
            ordered = sorted(candidates)
            with self._tailer.reading_ahead(ordered):  # files of a mount read in a few hand-overs to its thread
                for path in ordered:
                    try:
                        self._visit(path)
                    except MountBusy:  # skipped, cursor kept; its mount's files are synced when it answers
                        pass
            self._tailer.drain_retired()
        finally:
            self._tailer.defer_bytes = None
            if self._queue:
                self._catch_up()
        return self._snapshot()

    def close(self) -> None:
        self._tailer.close()

    def interrupt(self) -> None:
        """Cuts a backlog read in worker processes short (from another thread, at a stop): see
        ``BacklogReader.interrupt``; the sync then raises, its backlogs unread and left for a later start."""
        self._backlogs.interrupt()

    def _visit(self, path: str) -> None:
        """Reads ``path``; whatever is there (nothing, a FIFO, a directory, EMFILE) never raises."""
        if self._entry_for(path) is None:
            self._absent(path)
            return
        if path not in self._present:
            self._present.add(path)
            self._present_changes += 1
            self._dirty_labels.add(path)
        self.reading = (path, time.monotonic())
        try:
            self._tailer.follow(path)
        except (FileNotFoundError, NotADirectoryError):
            self._absent(path)
        except OSError as exc:
            self._went_down(self._state(path), path, exc)
            self._checked[path] = time.time()
        else:
            label = self._tailer.label_of(path) or path
            self._came_up(self._state(label), path)
            self._looked_at(label)
        finally:
            self.reading = None

    def _absent(self, path: str) -> None:
        """Nothing at ``path`` (or no longer matched): nothing is kept of the path; the state of the file it
        named goes once its last cursor is closed (``_retire``)."""
        self._tailer.forget(path)
        self._outside.pop(path, None)
        self._checked.pop(path, None)
        self._containment.forget(path)
        if path in self._present:
            self._present.discard(path)
            self._present_changes += 1
            self._dirty_labels.add(path)

    def _went_down(self, state: FileState, path: str, exc: OSError) -> None:
        """Marks the file down; counts and logs once per outage or change of its reason (the retries every 2 s
        are neither incidents nor news), at most once a minute per reason (EMFILE would otherwise log every one
        of 20,000 files)."""
        reason = exc.strerror or str(exc)
        if isinstance(exc, OutsideRoots):  # logged once by the containment; counted apart, not checkpointed
            self._outside[path] = self._outside.get(path, 0) + 1
        elif state.up or state.down_reason != reason:  # an incident; retries of it are not counted again
            state.errors += 1
            self._file_log.warning("down: " + reason, "cannot read cpu.acct; keeping what was read before, "
                                   "retrying", path=path, error=reason)
        state.up, state.down_reason = False, reason
        self._dirty_labels.add(path)

    def _looked_at(self, label: str) -> None:
        """A read of the file: news for its status when its size or time changed, or its last check is older
        than ``CHECK_RESOLUTION_SECONDS`` (a read that finds nothing new then hands out the same status)."""
        now = time.time()
        status, seen = self._statuses.get(label), self._tailer.seen(label)
        if (status is None or seen is None or now - (status.last_check_time or 0.0) >= CHECK_RESOLUTION_SECONDS
                or (seen.size, seen.modified, seen.unread) != (status.size_bytes, status.modified_time,
                                                              status.unread_bytes)):
            self._checked[label] = now
            self._restat.add(label)

    def _came_up(self, state: FileState, path: str) -> None:
        if not state.up:
            log.info("cpu.acct readable again", extra=fields(path=path))
            self._dirty_labels.add(path)
        state.up, state.down_reason = True, None
        state.last_success_time = time.time()

    def _state(self, label: str) -> FileState:
        state = self._files.get(label)
        if state is None:
            state = self._files[label] = FileState()
            self._dirty_labels.add(label)
        return state

    def _new_tally(self) -> Tally:
        return Tally(self._users is not None, self._titles is not None)

    def _discarded(self, label: str, nbytes: int, new_line: bool) -> None:
        """An over-long line: its bytes are consumed, and it is one malformed line."""
        tally = self._new_tally()
        tally.discarded(nbytes, new_line)
        self._take(label, tally)

    def _consume(self, label: str, block: bytes, key: FileKey) -> None:
        """Counts the complete lines of ``block``; malformed lines are counted and skipped (a Rush record is
        one line: which file of the label it came from, ``key``, does not matter)."""
        tally = self._new_tally()
        tally.add_block(block, self._horizon)
        self._take(label, tally)

    def _take(self, label: str, tally: Tally) -> None:
        """Merges now, or after the backlogs queued before it in this sync (file order decides admissions)."""
        if self._queue:
            self._queue.append((label, tally))
        else:
            self._merge(label, tally)

    def _defer(self, backlog: Backlog, fd: int) -> None:
        """A file with a big backlog: planned into ranges now (its descriptor is open), read at the sync's end."""
        settings = Settings(self._users is not None, self._titles is not None, self._horizon)
        ranges = plan(backlog, fd, self._backlogs.range_bytes(backlog.end - backlog.start))
        self._queue.append((backlog, [Task(backlog, start, end, settings) for start, end in ranges]))

    def _catch_up(self) -> None:
        """Reads the queued backlogs (in worker processes when big) and merges everything in file order."""
        queue, self._queue = self._queue, []
        tasks = [task for _, item in queue if isinstance(item, list) for task in item]
        self.reading = (tasks[0].backlog.label, time.monotonic()) if tasks else None
        results: List[Outcome] = []
        try:
            results = self._backlogs.read(tasks)
        finally:  # also when the read raised: every tally queued is merged, every backlog settled
            self.reading = None
            self._merge_queue(queue, iter(results) if len(results) == len(tasks) else None)

    def _merge_queue(self, queue: List[Tuple[str, Tally] | Tuple[Backlog, List[Task]]],
                     results: Optional[Iterator[Outcome]]) -> None:
        """Merges in file order; without ``results`` (the read failed) each backlog's cursor goes back to the
        backlog's start, so its bytes are read by a later sync: none lost, none counted twice."""
        for head, item in queue:
            if isinstance(head, Backlog) and isinstance(item, list):
                if results is None:
                    self._tailer.rewind(head.ticket)
                else:
                    self._merge_backlog(head, [next(results) for _ in item])
            elif isinstance(head, str) and isinstance(item, Tally):
                self._merge(head, item)

    def _merge_backlog(self, backlog: Backlog, results: List[Outcome]) -> None:
        """A backlog's ranges, merged in order. If one could not be read (its file is there: an I/O error),
        none is: the file is marked down and its cursor goes back to the backlog's start, so a later sync
        (down files are retried) reads those bytes: none lost, none counted twice."""
        failed = next((result for result in results if isinstance(result, RangeFailed)), None)
        if failed is not None:
            self._tailer.rewind(backlog.ticket)
            if isinstance(failed.error, MountBusy):  # skipped, as a file behind a stuck read is
                return
            self._went_down(self._state(backlog.label), backlog.label, failed.error)
            return
        for result in results:
            if isinstance(result, RangeResult):
                self._merge(backlog.label, result.tally)
        last = results[-1] if results else None
        self._tailer.caught_up(backlog.ticket, last.state if isinstance(last, RangeResult) else LineState())

    def _merge(self, label: str, tally: Tally) -> None:
        """Adds a tally of ``label``'s lines: labels through the budgets in order, totals, gauges."""
        state = self._state(label)
        counters = self._budget_counters()
        self._log_problems(label, tally, state.lines)
        state.bytes += tally.bytes
        state.lines += tally.lines
        state.malformed += tally.malformed
        for name, count in tally.records.items():
            state.records[name] = state.records.get(name, 0) + count
        state.daemon_starts += tally.daemon_starts
        if tally.utilization is not None and (state.utilization is None
                                              or tally.utilization[0] >= state.utilization[0]):
            state.utilization = tally.utilization
        if tally.online is not None and (state.online is None or tally.online[0] >= state.online[0]):
            state.online = tally.online
        if state.records:
            state.last_record_time = max(state.last_record_time or 0, tally.newest) or None
        self._note_ahead(label, state, tally)
        for raw, totals in tally.hosts.items():
            host = self._host_budget.label_many(label_value(raw), _count(totals))
            if state.seen_host is None:
                state.seen_host = host
            _add(self._hosts, host, totals)
            _add(state.hosts, host, totals)
            self._dirty_hosts.add(host)
        if self._users is not None and tally.users is not None:
            self._users.merge(tally.users, state.users)
        if self._titles is not None and tally.titles is not None:
            self._titles.merge(tally.titles, state.titles)
        self._count_budget_changes(state, counters)
        self._dirty_labels.add(label)

    def _note_ahead(self, label: str, state: FileState, tally: Tally) -> None:
        """The file's records dated ahead of the clock: counted, and the skew of its newest record when the tally
        has records and its last one is ahead (one whose host's clock was set right has no skew any more)."""
        self._ahead[label] = self._ahead.get(label, 0) + tally.ahead
        if tally.last_ahead:
            clock = self._horizon - self._config.max_clock_skew  # the clock at the start of this sync
            state.clock_ahead = max(0.0, tally.newest_ahead - clock)
        elif tally.newest:
            state.clock_ahead = 0.0

    def _budget_counters(self) -> Dict[str, Tuple[int, int]]:
        return {name: (budget.truncated, budget.overflowed) for name, budget in self._label_budgets()}

    def _count_budget_changes(self, state: FileState, before: Dict[str, Tuple[int, int]]) -> None:
        """The file's share of what the budgets counted since ``before`` (taken out with the file in ``restore``)."""
        for name, budget in self._label_budgets():
            truncated, overflowed = before[name]
            if budget.truncated != truncated:
                state.truncated[name] = state.truncated.get(name, 0) + budget.truncated - truncated
            if budget.overflowed != overflowed:
                state.over_budget[name] = state.over_budget.get(name, 0) + budget.overflowed - overflowed

    def _log_problems(self, label: str, tally: Tally, lines_before: int) -> None:
        """The first malformed line of ``tally`` by its number in the file (counted from the first line read
        of it) and ``logs.line_fields``, never verbatim."""
        if tally.problem is not None:
            reason, number, shown = tally.problem
            if reason == OVER_LONG:
                self._file_log.warning(label, "over-long cpu.acct line, or one cut by a hole, skipped", path=label,
                                       reason="longer than %d bytes, or cut by a hole of a sparse file"
                                       % MAX_LINE_BYTES,
                                       line_number=lines_before + number)
            else:
                self._file_log.warning(label, "malformed cpu.acct line skipped", path=label, reason=reason,
                                       line_number=lines_before + number, **shown, malformed=tally.malformed)
        if tally.future is not None:
            self._file_log.warning(label + "#future", "cpu.acct record dated ahead of the clock; "
                                   "counted, but not taken as the latest", path=label, time=tally.future)

    # -- host labels ---------------------------------------------------------

    def _entry_for(self, path: str) -> Optional[CpuAcctEntry]:
        for pattern, entry in self._entries:
            if pattern.matches(path):
                return entry
        return None

    def _host_of(self, label: str, state: FileState) -> str:
        """The file's gauge host, through the host budget once per file (seen hosts passed it already)."""
        host = self._gauge_host.get(label)
        if host is None:
            configured = self._configured_host_of(label)  # never "": None when not configured
            if configured is not None:
                host = self._host_budget.label(label_value(configured))
            elif state.seen_host is not None:
                host = state.seen_host
            else:
                return self._host_budget.label(label_value(label))  # until a p record names the host
            self._gauge_host[label] = host
        return host

    def _configured_host_of(self, path: str) -> Optional[str]:
        entry = self._entry_for(path)
        if entry is None:
            return None
        if entry.host:
            return entry.host
        regex = entry.host_from_path or self._config.host_from_path
        match = regex.search(path) if regex else None
        return match.group("host") if match and match.group("host") else None

    # -- snapshot ------------------------------------------------------------

    def _snapshot(self) -> CpuAcctSnapshot:
        """The snapshot, updated for the hosts and files this sync changed; the rest is reused as it was."""
        self._update_liveness()
        self._update_labels()
        self._retire()
        self._update_host_totals()
        users, titles = self._users, self._titles
        user_frames, user_wall = users.views() if users else (None, None)
        title_frames, title_wall = titles.views() if titles else (None, None)
        wall, system, user = (view.frozen() for view in self._seconds_views)
        utilization, online, last_record = (view.frozen() for view in self._gauge_views)
        return CpuAcctSnapshot(
            files=self._status_tuple,
            frames=self._frames_view.frozen(),
            wall_seconds=wall,
            system_seconds=system,
            user_seconds=user,
            records=self._records_view.frozen(),
            daemon_starts=self._starts_view.frozen(),
            utilization=utilization,
            online=online,
            last_record_time=last_record,
            user_frames=user_frames,
            user_wall_seconds=user_wall,
            title_frames=title_frames,
            title_wall_seconds=title_wall,
            labels_truncated=_frozen({name: b.truncated for name, b in self._label_budgets()}),
            labels_over_budget=_frozen({name: b.overflowed for name, b in self._label_budgets()}),
        )

    def _update_liveness(self) -> None:
        """Files followed or present decide which hosts have gauges; a change dirties the files concerned. Worked
        out only after a file came or went (the tailer's cursors or the present files changed), not per sync."""
        seen = (self._tailer.cursor_changes, self._present_changes)
        if seen == self._live_seen:
            return
        self._live_seen = seen
        live = self._tailer.live_labels() | self._present
        if live != self._live:
            self._dirty_labels |= live ^ self._live
            self._live = live
            self._check_gone = True

    def _retire(self) -> None:
        """Drops the state of files that are gone (no cursor left: deleted, or rotated away and drained; not
        matched any more), once their share is merged into their hosts' (``GoneShare``): the host totals stay,
        counters never go down, and what is kept per file is the live files' (RSS and checkpoint size come back
        after churn). The file's series went with its status already (``_update_status``)."""
        if not self._check_gone:
            return
        self._check_gone = False
        for label in self._files.keys() - self._live:
            state = self._files.pop(label)
            host = self._label_host.pop(label, None)
            if host is not None:
                self._gone.merge(state, host)
                by_host = self._labels_by_host.get(host)
                if by_host is not None:
                    by_host.discard(label)
                    if not by_host:
                        del self._labels_by_host[host]
                self._dirty_hosts.add(host)
            else:  # never through _update_labels (a restore): its host as it would have been
                self._gone.merge(state, self._host_of(label, state))
            self._gauge_host.pop(label, None)
            self._ahead.pop(label, None)
            self._checked.pop(label, None)
            self._file_log.forget(label, label + "#future")

    def _update_labels(self) -> None:
        """File statuses and the per-host rows that sum over files (records, starts, gauges) of changed files;
        only the statuses of files merely looked at (``_restat``: the same files, so the same order)."""
        restat = [label for label in self._restat - self._dirty_labels if label in self._statuses]
        self._restat.clear()
        for label in restat:
            self._update_status(label, self._files.get(label))
        if not self._dirty_labels:
            if restat:
                self._status_tuple = self._ordered_statuses()
            return
        for label in self._dirty_labels:
            state = self._files.get(label)
            self._update_status(label, state)
            if state is None:
                continue
            host = self._host_of(label, state)
            previous = self._label_host.get(label)
            if previous != host:
                if previous is not None:
                    self._labels_by_host[previous].discard(label)
                    self._dirty_hosts.add(previous)
                self._labels_by_host.setdefault(host, set()).add(label)
                self._label_host[label] = host
            self._dirty_hosts.add(host)
        self._dirty_labels.clear()
        self._status_tuple = self._ordered_statuses()

    def _ordered_statuses(self) -> Tuple[FileStatus, ...]:
        """The statuses in path order: re-sorted after files came or went, else as ``_update_status`` placed them."""
        if self._statuses_moved:
            paths = sorted(self._statuses)
            self._status_list = list(map(self._statuses.__getitem__, paths))
            self._status_at = dict(zip(paths, range(len(paths))))
            self._statuses_moved = False
        return tuple(self._status_list)

    def _update_status(self, path: str, state: Optional[FileState]) -> None:
        """The file's status anew, in its place; a file that came or went re-sorts them (``_update_labels``)."""
        if path not in self._present:
            if self._statuses.pop(path, None) is not None:
                self._statuses_moved = True
            return
        state = state or FileState()
        outside = self._outside.get(path, 0)
        ahead, skew = self._ahead.get(path, 0), state.clock_ahead
        seen = self._tailer.seen(path)
        status = self._statuses[path] = FileStatus(
            kind=KIND, path=path, up=state.up, last_success_time=state.last_success_time,
            errors_total=state.errors + outside, malformed_lines_total=state.malformed, bytes_read_total=state.bytes,
            lines_read_total=state.lines, last_error=None if state.up else state.down_reason,
            read_failures=((OUTSIDE, outside),) if outside else (),
            size_bytes=seen.size if seen else None, modified_time=seen.modified if seen else None,
            unread_bytes=seen.unread if seen else None, last_check_time=self._checked.get(path),
            records_ahead_total=ahead, clock_ahead_seconds=skew,
            warning=self._skew_warning(path, state, skew))
        at = self._status_at.get(path)
        if at is None:
            self._statuses_moved = True
        else:
            self._status_list[at] = status

    def _skew_warning(self, label: str, state: FileState, skew: float) -> Optional[str]:
        """What the status page says of a file whose records are dated ahead of the clock, beyond the skew
        allowed (``rush.max_clock_skew``): the host by name, as the alert and its runbook do."""
        if skew <= self._config.max_clock_skew:
            return None
        latest = ("none of its records is taken as the latest: it has no rush_utilization_ratio, "
                  "rush_daemon_online or rush_last_record_timestamp_seconds" if state.last_record_time is None
                  else "they are counted, but never taken as the latest: its gauges stay at older records")
        return ("%s: records up to %s ahead of this machine's clock; %s. Set the host's clock right (NTP): "
                "runbook: docs/alerts.md#rushclockahead" % (self._host_of(label, state), _duration(skew), latest))

    def _update_host_totals(self) -> None:
        for host in self._dirty_hosts:
            totals = self._hosts.get(host)
            if totals is not None:
                for slot, status in enumerate(STATUSES):
                    self._frames_view.set((host, status), totals[slot])
                for view, slot in zip(self._seconds_views, (WALL, SYSTEM, USER)):
                    view.set(host, float(totals[slot]))
            self._update_host_rows(host)
        self._dirty_hosts.clear()

    def _update_host_rows(self, host: str) -> None:
        """Records and daemon starts of every file of ``host``; gauges from them while one of them is live."""
        labels = self._labels_by_host.get(host, ())
        states = [self._files[label] for label in labels]
        records = dict(self._gone.records.get(host, {}))
        for state in states:
            for name, count in state.records.items():
                records[name] = records.get(name, 0) + count
        for name in RECORD_NAMES.values():
            if records.get(name):
                self._records_view.set((host, name), records[name])
            else:
                self._records_view.discard((host, name))
        starts = sum(state.daemon_starts for state in states) + self._gone.daemon_starts.get(host, 0)
        if starts:
            self._starts_view.set(host, starts)
        else:
            self._starts_view.discard(host)
        live = not self._live.isdisjoint(labels)
        utilization, online, last_record = self._gauge_views
        _set_or_discard(utilization, host, _latest([s.utilization for s in states]) if live else None)
        _set_or_discard(online, host, _latest([s.online for s in states]) if live else None)
        _set_or_discard(last_record, host, max((s.last_record_time for s in states
                                                if s.last_record_time is not None), default=None) if live else None)

    def _label_budgets(self) -> Iterable[Tuple[str, LabelBudget]]:
        yield "host", self._host_budget
        for name, breakdown in (("user", self._users), ("title", self._titles)):
            if breakdown is not None:
                yield name, breakdown.budget

    def families(self, snap: CpuAcctSnapshot) -> Iterable[Metric]:
        return families(snap)

    # -- checkpoint ------------------------------------------------------------

    def checkpoint_config(self) -> str:
        """What a checkpoint's content depends on: the section as configured (``read_processes`` aside)."""
        return repr(saved.config_key(self._config))

    def checkpoint(self) -> bytes:
        """Every file's cursor and contribution, the budgets and the hosts: totals as they are now.

        Raises ``TailerClosed`` after ``close`` (no cursors left: such a checkpoint would count every file
        again)."""
        return saved.dump(SavedReader(
            version=STATE_VERSION,
            tailer=self._tailer.save(),
            present=self._present,
            gauge_host=self._gauge_host,
            budgets={name: SavedBudget.of(budget) for name, budget in self._label_budgets()},
            files=self._files,
            gone=self._gone,
        ))

    def restore(self, state: bytes) -> bool:
        """Loads a checkpoint taken by ``checkpoint`` before the first sync; False, changing nothing, if it is
        of another version; ValueError (saying where, not quoting what), changing nothing, if it is not a
        state this reader could have written under its configuration (``saved.load`` checks every value:
        the files are then read from the start).

        A file whose cursor no longer matches the file at its path (same inode, other content: truncated
        or rewritten while the exporter was stopped) is read from the start, and its checkpointed
        contribution is taken out of the totals and the budgets' counters; a file that is gone keeps its
        contribution. A file that cannot be checked now (its mount busy, or not readable) is checked at its
        first read (``Tailer.mismatched``): until then its checkpointed contribution is served as it was."""
        if saved.version_of(state) != STATE_VERSION:
            return False
        loaded = saved.load(state, self._limits())
        self._tailer.load(loaded.tailer)  # checks the shape again before it changes anything
        self._files = loaded.files
        self._gone = loaded.gone
        self._present = loaded.present
        self._gauge_host = loaded.gauge_host
        for name, budget in self._label_budgets():
            if name in loaded.budgets:
                loaded.budgets[name].restore(budget)
        for label in self._tailer.mismatched():  # the files it could not check: at their first read
            log.info("cpu.acct changed while the exporter was stopped; reading it from the start",
                     extra=fields(path=label))
            self._forget_contribution(label)
        self._rebuild_totals()
        return True

    def _changed_while_stopped(self, label: str) -> None:
        """A file ``mismatched`` could not check at ``restore`` (its mount busy) was found changed at its first
        read: its checkpointed contribution goes, as in ``restore``, before its lines are read again."""
        log.info("cpu.acct changed while the exporter was stopped (found at its first read); reading it from "
                 "the start", extra=fields(path=label))
        self._forget_contribution(label)
        self._rebuild_totals()

    def _limits(self) -> saved.Limits:
        """What a checkpoint of this reader may hold: see ``saved.load``."""
        return saved.Limits(
            matches=lambda path: self._entry_for(path) is not None,
            max_label_length=self._config.max_label_length,
            capacities={name: budget.capacity for name, budget in self._label_budgets()},
            horizon=time.time() + self._config.max_clock_skew,
        )

    def _forget_contribution(self, label: str) -> None:
        """Takes a file's contribution out of the budgets' counters (its totals go with its state)."""
        state = self._files.pop(label, None)
        if state is None:
            return
        for name, budget in self._label_budgets():
            budget.truncated = max(0, budget.truncated - state.truncated.get(name, 0))
            budget.overflowed = max(0, budget.overflowed - state.over_budget.get(name, 0))

    def _rebuild_totals(self) -> None:
        """Totals as the sum of every file's contribution and the gone files' share (exact: the same as when
        they were added up)."""
        self._hosts = {}
        for breakdown in (self._users, self._titles):
            if breakdown is not None:
                breakdown.totals, breakdown.dirty = {}, set()
        shares: List[FileState | GoneShare] = [*self._files.values(), self._gone]
        for state in shares:
            for host, totals in state.hosts.items():
                _add(self._hosts, host, totals)
            for breakdown, contributed in ((self._users, state.users), (self._titles, state.titles)):
                if breakdown is not None:
                    for label, totals in contributed.items():
                        _add(breakdown.totals, label, totals)
                    breakdown.dirty |= set(contributed)
        self._init_views()
        self._dirty_hosts = set(self._hosts) | set(self._gone.records) | set(self._gone.daemon_starts)


def _duration(seconds: float) -> str:
    """A skew as people say it: 2.0 h, 12 min, 40 s."""
    if seconds >= 5400:
        return "%.1f h" % (seconds / 3600)
    if seconds >= 120:
        return "%d min" % (seconds // 60)
    return "%d s" % seconds


def families(snap: CpuAcctSnapshot) -> Iterable[Metric]:
    """The Rush metric families of a snapshot (live, and rebuilt history for backfill)."""
    note = _CACHE_NOTE
    yield counter("rush_frames", "Frames finished, by the host that ran them and Rush's exit status" + note,
                  ["host", "status"], snap.frames)
    yield counter("rush_frame_wall_seconds", "Wall clock seconds of finished frames" + note,
                  ["host"], snap.wall_seconds)
    yield counter("rush_frame_system_seconds", "System CPU seconds of finished frames' render scripts" + note,
                  ["host"], snap.system_seconds)
    yield counter("rush_frame_user_seconds", "User CPU seconds of finished frames' render scripts" + note,
                  ["host"], snap.user_seconds)
    yield counter("rush_records", "cpu.acct records read, by record type" + note,
                  ["host", "record"], snap.records)
    yield counter("rush_daemon_starts", "Render daemon starts (d start records)" + note,
                  ["host"], snap.daemon_starts)
    yield gauge("rush_utilization_ratio", "Share of time the processors were busy rendering, latest u record"
                + note, ["host"], snap.utilization)
    yield gauge("rush_daemon_online", "1 if the latest r, s or d record says the daemon is online" + note,
                ["host"], snap.online)
    yield gauge("rush_last_record_timestamp_seconds", "Time of the newest record of the host's log" + note,
                ["host"], snap.last_record_time)
    if snap.user_frames is not None and snap.user_wall_seconds is not None:  # both set, or neither
        yield counter("rush_user_frames", "Frames finished, by job owner (opt-in, capped)" + note,
                      ["user", "status"], snap.user_frames)
        yield counter("rush_user_frame_wall_seconds", "Wall clock seconds of frames, by job owner (opt-in, capped)"
                      + note, ["user"], snap.user_wall_seconds)
    if snap.title_frames is not None and snap.title_wall_seconds is not None:
        yield counter("rush_job_title_frames", "Frames finished, by job title (opt-in, capped)" + note,
                      ["title", "status"], snap.title_frames)
        yield counter("rush_job_title_frame_wall_seconds", "Wall clock seconds of frames, by job title "
                      "(opt-in, capped)" + note, ["title"], snap.title_wall_seconds)
    if snap.labels_truncated is not None and snap.labels_over_budget is not None:
        yield counter("renderfarm_exporter_rush_label_values_truncated",
                      "Label values read from cpu.acct that were longer than max_label_length and cut",
                      ["label"], snap.labels_truncated)
        yield counter("renderfarm_exporter_rush_label_values_over_budget",
                      "Records whose label value found its series budget spent and was counted as __other__",
                      ["label"], snap.labels_over_budget)
