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

Every label value taken from a file (host, user, title) goes through a
``LabelBudget``: cut to ``max_label_length`` and limited in number, so memory
and series stay bounded whatever the files contain.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Collection, Dict, Iterable, List, Mapping, Optional, Tuple

from prometheus_client.metrics_core import Metric

from exporter.budget import LabelBudget
from exporter.families import counter, gauge
from exporter.logs import RateLimitedLog, fields
from exporter.paths import PathPattern
from exporter.rush.config import SERIES_PER_BREAKDOWN_VALUE, SERIES_PER_HOST, CpuAcctEntry, RushConfig
from exporter.rush.records import (
    STATUSES,
    SYSTEM,
    USER,
    WALL,
    DaemonEvent,
    MalformedLine,
    Midnight,
    Process,
    Rotation,
    StateChange,
    Utilization,
    frame_status,
    new_totals,
    parse_line,
    status_slot,
)
from exporter.sources import FileStatus
from exporter.tailer import MAX_LINE_BYTES, Tailer

log = logging.getLogger(__name__)

KIND = "rush_cpu_acct"
RECORD_NAMES = {
    Process: "process",
    Utilization: "utilization",
    Rotation: "rotation",
    StateChange: "state_change",
    Midnight: "midnight",
    DaemonEvent: "daemon",
}

_CACHE_NOTE = " (read from cpu.acct; cached between changes of the file)"


class _FileState:
    """Everything learnt from one file (by the path it was first opened under)."""

    def __init__(self) -> None:
        self.up = True
        self.down_reason: Optional[str] = None
        self.last_success_time: Optional[float] = None
        self.errors = 0
        self.malformed = 0
        self.bytes = 0
        self.lines = 0
        self.seen_host: Optional[str] = None
        self.records: Counter = Counter()
        self.daemon_starts = 0
        self.utilization: Optional[Tuple[int, float]] = None
        self.online: Optional[Tuple[int, int]] = None
        self.last_record_time: Optional[int] = None


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


def _frozen(mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


def _with_all_statuses(frames: Mapping[Tuple[str, str], int]) -> Mapping[Tuple[str, str], int]:
    """Every status of every host, zeros included, so alerts see a series before the first failure."""
    full = {(name, status): 0 for name, _ in frames for status in STATUSES}
    full.update(frames)
    return _frozen(full)


def _latest_by_host(values: Iterable[Tuple[str, Optional[Tuple[int, float]]]]) -> Dict[str, float]:
    latest: Dict[str, Tuple[int, float]] = {}
    for host, timed in values:
        if timed is not None and (host not in latest or timed[0] >= latest[host][0]):
            latest[host] = timed
    return {host: value for host, (_, value) in latest.items()}


def _timed(when: Optional[int]) -> Optional[Tuple[int, float]]:
    return None if when is None else (when, when)


class _Breakdown:
    """Frames and wall seconds per user or per job title, within a series budget."""

    def __init__(self, series_budget: int, max_length: int):
        self.budget = LabelBudget(series_budget, SERIES_PER_BREAKDOWN_VALUE, max_length)
        self.frames: Counter = Counter()
        self.wall: Dict[str, float] = defaultdict(float)

    def add(self, value: str, status: str, wall_seconds: float) -> None:
        label = self.budget.label(value)
        self.frames[(label, status)] += 1
        self.wall[label] += wall_seconds


class CpuAcctReader:
    kind = KIND

    def __init__(self, config: RushConfig):
        self._config = config
        self._entries = [(PathPattern(entry.path), entry) for entry in config.cpu_acct]
        self.patterns = [pattern for pattern, _ in self._entries]
        self._tailer = Tailer(self._consume, discarded=self._discarded)
        self._files: Dict[str, _FileState] = {}
        self._present: set = set()
        self._gauge_host: Dict[str, str] = {}
        self._hosts: Dict[str, List[float]] = {}
        self._host_budget = LabelBudget(config.host_series_budget, SERIES_PER_HOST, config.max_label_length)
        self._users = self._breakdown(config.users)
        self._titles = self._breakdown(config.titles)
        self._file_log = RateLimitedLog(log)
        #: (path, monotonic start) of the read in progress, for the ingest's stuck-read monitor.
        self.reading: Optional[Tuple[str, float]] = None

    def _breakdown(self, config) -> Optional[_Breakdown]:
        return _Breakdown(config.series_budget, self._config.max_label_length) if config.enabled else None

    # -- reading -------------------------------------------------------------

    def sync(self, paths: Optional[Collection[str]] = None) -> CpuAcctSnapshot:
        """Reads the changed ``paths`` (or every matching file) and returns a snapshot."""
        if paths is None:
            matched = {path for pattern in self.patterns for path in pattern.scan()}
            candidates = matched | self._present | self._tailer.paths
        else:
            candidates = {path for path in paths if self._entry_for(path) is not None}
        for path in sorted(candidates):
            self._visit(path)
        self._tailer.drain_retired()
        return self._snapshot()

    def close(self) -> None:
        self._tailer.close()

    def _visit(self, path: str) -> None:
        """Reads ``path``; whatever is there (nothing, a FIFO, a directory, EMFILE) never raises."""
        if self._entry_for(path) is None:
            self._absent(path)
            return
        self._present.add(path)
        self.reading = (path, time.monotonic())
        try:
            self._tailer.follow(path)
        except (FileNotFoundError, NotADirectoryError):
            self._absent(path)
        except OSError as exc:
            self._went_down(self._state(path), path, exc)
        else:
            self._came_up(self._state(self._tailer.label_of(path) or path), path)
        finally:
            self.reading = None

    def _absent(self, path: str) -> None:
        self._tailer.forget(path)
        self._present.discard(path)

    def _went_down(self, state: _FileState, path: str, exc: OSError) -> None:
        """Marks the file down; logs once per outage (retries every 2 s must not flood the log), and at
        most once a minute per reason (EMFILE would otherwise log every one of 20,000 files)."""
        state.errors += 1
        reason = exc.strerror or str(exc)
        if state.up or state.down_reason != reason:
            self._file_log.warning("down: " + reason, "cannot read cpu.acct; keeping what was read before, retrying",
                                   path=path, error=reason)
        state.up, state.down_reason = False, reason

    @staticmethod
    def _came_up(state: _FileState, path: str) -> None:
        if not state.up:
            log.info("cpu.acct readable again", extra=fields(path=path))
        state.up, state.down_reason = True, None
        state.last_success_time = time.time()

    def _state(self, label: str) -> _FileState:
        state = self._files.get(label)
        if state is None:
            state = self._files[label] = _FileState()
        return state

    def _discarded(self, label: str, nbytes: int, new_line: bool) -> None:
        """An over-long line: its bytes are consumed, and it is one malformed line."""
        state = self._state(label)
        state.bytes += nbytes
        if new_line:
            state.lines += 1
            state.malformed += 1
            self._file_log.warning(label, "over-long cpu.acct line skipped", path=label,
                                   reason="longer than %d bytes" % MAX_LINE_BYTES)

    def _consume(self, label: str, block: bytes) -> None:
        """Counts the complete lines of ``block``; malformed lines are counted and skipped."""
        state = self._state(label)
        state.bytes += len(block)
        lines = block.decode("utf-8", "replace").split("\n")
        lines.pop()
        state.lines += len(lines)
        count_frame, apply_other = self._count_frame, self._apply_other
        records = state.records
        newest = state.last_record_time or 0
        horizon = time.time() + self._config.max_clock_skew
        for line in lines:
            try:
                record = parse_line(line)
            except MalformedLine as exc:
                state.malformed += 1
                self._file_log.warning(
                    label, "malformed cpu.acct line skipped", path=label, reason=exc, line=line[:200]
                )
                continue
            if record is None:
                continue
            kind = type(record)
            records[kind] += 1
            future = record.time > horizon
            if future:
                self._file_log.warning(label + "#future", "cpu.acct record dated ahead of the clock; "
                                       "counted, but not taken as the latest", path=label, time=record.time)
            elif record.time > newest:
                newest = record.time
            if isinstance(record, Process):  # no record type subclasses another
                count_frame(state, record)
            else:
                apply_other(state, kind, record, future)
        if records:
            state.last_record_time = newest or None

    @staticmethod
    def _apply_other(state: _FileState, kind: type, record, future: bool) -> None:
        """Utilization and daemon state: the latest record by time wins (never one from the future)."""
        if kind is DaemonEvent and record.action == "start":
            state.daemon_starts += 1
        if future:
            return
        if kind is Utilization:
            if state.utilization is None or record.time >= state.utilization[0]:
                state.utilization = (record.time, record.ratio)
        elif kind is not Midnight:
            if state.online is None or record.time >= state.online[0]:
                state.online = (record.time, int(record.online))

    def _count_frame(self, state: _FileState, frame: Process) -> None:
        host = self._host_budget.label(frame.host)
        totals = self._hosts.get(host)
        if totals is None:
            totals = self._hosts[host] = new_totals()
        if state.seen_host is None:
            state.seen_host = host
        code = frame.exit_code
        totals[status_slot(code)] += 1
        totals[WALL] += frame.wall_seconds
        totals[SYSTEM] += frame.system_seconds
        totals[USER] += frame.user_seconds
        if self._users is not None:
            self._users.add(frame.owner, frame_status(code), frame.wall_seconds)
        if self._titles is not None:
            self._titles.add(frame.title, frame_status(code), frame.wall_seconds)

    # -- host labels ---------------------------------------------------------

    def _entry_for(self, path: str) -> Optional[CpuAcctEntry]:
        for pattern, entry in self._entries:
            if pattern.matches(path):
                return entry
        return None

    def _host_of(self, label: str, state: _FileState) -> str:
        """The file's gauge host, through the host budget once per file (seen hosts passed it already)."""
        host = self._gauge_host.get(label)
        if host is None:
            configured = self._configured_host_of(label)  # never "": None when not configured
            if configured is not None:
                host = self._host_budget.label(configured)
            elif state.seen_host is not None:
                host = state.seen_host
            else:
                return self._host_budget.label(label)  # until a p record names the host
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

    def _file_statuses(self) -> Tuple[FileStatus, ...]:
        statuses = []
        for path in sorted(self._present):
            state = self._files.get(path) or _FileState()
            statuses.append(
                FileStatus(
                    kind=KIND,
                    path=path,
                    up=state.up,
                    last_success_time=state.last_success_time,
                    errors_total=state.errors,
                    malformed_lines_total=state.malformed,
                    bytes_read_total=state.bytes,
                    lines_read_total=state.lines,
                    last_error=None if state.up else state.down_reason,
                )
            )
        return tuple(statuses)

    def _snapshot(self) -> CpuAcctSnapshot:
        hosts = {label: self._host_of(label, state) for label, state in self._files.items()}
        live = self._tailer.live_labels() | self._present
        live_hosts = {hosts[label] for label in live if label in hosts}
        current = [(hosts[label], state) for label, state in self._files.items() if hosts[label] in live_hosts]
        records: Counter = Counter()
        starts: Counter = Counter()
        for label, state in self._files.items():
            for kind, count in state.records.items():
                records[(hosts[label], RECORD_NAMES[kind])] += count
            if state.daemon_starts:
                starts[hosts[label]] += state.daemon_starts
        users, titles = self._users, self._titles
        return CpuAcctSnapshot(
            files=self._file_statuses(),
            frames=_frozen({(host, status): t[slot] for host, t in self._hosts.items()
                            for slot, status in enumerate(STATUSES)}),
            wall_seconds=_frozen({host: t[WALL] for host, t in self._hosts.items()}),
            system_seconds=_frozen({host: t[SYSTEM] for host, t in self._hosts.items()}),
            user_seconds=_frozen({host: t[USER] for host, t in self._hosts.items()}),
            records=_frozen(records),
            daemon_starts=_frozen(starts),
            utilization=_frozen(_latest_by_host((host, s.utilization) for host, s in current)),
            online=_frozen(_latest_by_host((host, s.online) for host, s in current)),
            last_record_time=_frozen(_latest_by_host((host, _timed(s.last_record_time)) for host, s in current)),
            user_frames=_with_all_statuses(users.frames) if users else None,
            user_wall_seconds=_frozen(users.wall) if users else None,
            title_frames=_with_all_statuses(titles.frames) if titles else None,
            title_wall_seconds=_frozen(titles.wall) if titles else None,
            labels_truncated=_frozen({name: b.truncated for name, b in self._label_budgets()}),
            labels_over_budget=_frozen({name: b.overflowed for name, b in self._label_budgets()}),
        )

    def _label_budgets(self) -> Iterable[Tuple[str, LabelBudget]]:
        yield "host", self._host_budget
        for name, breakdown in (("user", self._users), ("title", self._titles)):
            if breakdown is not None:
                yield name, breakdown.budget

    def families(self, snap: CpuAcctSnapshot) -> Iterable[Metric]:
        return families(snap)


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
