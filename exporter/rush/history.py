"""Rush's past for backfill: every ``cpu.acct`` and rotated ``Ocpu.acct``, replayed in time order.

Counters are rebuilt as cumulative series: at every ``step`` boundary the
totals of all frames finished before it. A host's series are written while
it is active (a record within the last ``hold``), so an idle host leaves a
gap instead of hours of repeated values. Names and labels are the live
exporter's (``exporter.rush.cpu_acct.families``).
"""

from __future__ import annotations

import heapq
import os
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from exporter.containment import Containment
from exporter.families import label_value
from exporter.paths import PathPattern
from exporter.rush.config import RushConfig
from exporter.rush.cpu_acct import CpuAcctSnapshot, families
from exporter.rush.records import (
    STATUSES,
    SYSTEM,
    USER,
    WALL,
    MalformedLine,
    Process,
    new_totals,
    parse_line,
    status_slot,
)
from exporter.sources import HistorySink
from exporter.tailer import open_regular

ROTATED_NAME = "Ocpu.acct"
EMPTY: Mapping[Any, Any] = MappingProxyType({})


def history_files(config: RushConfig) -> List[str]:
    """Matched files plus the rotated ``Ocpu.acct`` beside each, every file once (by inode)."""
    seen, files = set(), []
    for entry in config.cpu_acct:
        for path in sorted(PathPattern(entry.path).scan()):
            for candidate in (os.path.join(os.path.dirname(path), ROTATED_NAME), path):
                try:
                    st = os.stat(candidate)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    files.append(candidate)
    return files


class Replay:
    """Replays the records of several files in time order; counts what it read."""

    def __init__(self, paths: List[str], progress: Callable[[int, int], None],
                 containment: Optional[Containment] = None):
        """``containment``: the folders the paths must lead into (``exporter.containment``); None: any."""
        self.paths = paths
        self._containment = containment
        self.total_bytes = sum(os.path.getsize(p) for p in paths)
        self.bytes_read = 0
        self.records = 0
        self.malformed = 0
        self.unreadable: List[Tuple[str, str]] = []
        self._progress = progress

    def _records(self, path: str) -> Iterator[Tuple[int, int, Process]]:
        try:
            if self._containment is not None:
                self._containment.check(path)
            handle = os.fdopen(open_regular(path)[0], "rb")  # a FIFO must not block the backfill either
        except OSError as exc:  # OutsideRoots too: a symlink out of the configured folders
            self.unreadable.append((path, str(exc)))
            return
        if self._containment is not None:
            try:
                self._containment.check_descriptor(handle.fileno(), path)
            except OSError as exc:
                handle.close()
                self.unreadable.append((path, str(exc)))
                return
        with handle:
            for number, raw in enumerate(handle):
                self.bytes_read += len(raw)
                if number % 50000 == 0:
                    self._progress(self.bytes_read, self.records)
                try:
                    record = parse_line(raw.decode("utf-8", "surrogateescape"))
                except MalformedLine:
                    self.malformed += 1
                    continue
                if record is not None:
                    self.records += 1
                    if type(record) is Process:
                        yield record.time, number, record

    def frames(self) -> Iterable[Process]:
        """Every frame of every file, oldest first (a rotated file's lines before the new file's)."""
        for _, _, frame in heapq.merge(*(self._records(p) for p in self.paths), key=lambda t: (t[0], t[1])):
            yield frame


def _snapshot(totals: Dict[str, List[float]], hosts: Iterable[str]) -> CpuAcctSnapshot:
    hosts = list(hosts)
    return CpuAcctSnapshot(
        files=(), records=EMPTY, daemon_starts=EMPTY, utilization=EMPTY, online=EMPTY, last_record_time=EMPTY,
        frames=MappingProxyType({(h, s): totals[h][i] for h in hosts for i, s in enumerate(STATUSES)}),
        wall_seconds=MappingProxyType({h: totals[h][WALL] for h in hosts}),
        system_seconds=MappingProxyType({h: totals[h][SYSTEM] for h in hosts}),
        user_seconds=MappingProxyType({h: totals[h][USER] for h in hosts}),
        user_frames=None, user_wall_seconds=None, title_frames=None, title_wall_seconds=None,
    )


def history(replay: Replay, step: float, hold: Optional[float] = None) -> Iterator[Tuple[float, list]]:
    """(time, families) at each ``step`` boundary from the first frame to just after the last."""
    hold = max(900.0, 3 * step) if hold is None else hold
    totals: Dict[str, List[float]] = {}
    last_seen: Dict[str, int] = {}
    boundary: Optional[float] = None

    def at(when: float):
        active = [h for h, seen in last_seen.items() if when - seen <= hold]
        return when, list(families(_snapshot(totals, active))) if active else []

    for frame in replay.frames():
        if boundary is None:
            boundary = (frame.time // step + 1) * step
        while frame.time >= boundary:
            yield at(boundary)
            boundary += step
        host = label_value(frame.host)  # as the live reader labels it
        slots = totals.setdefault(host, new_totals())
        slots[status_slot(frame.exit_code)] += 1
        slots[WALL] += frame.wall_seconds
        slots[SYSTEM] += frame.system_seconds
        slots[USER] += frame.user_seconds
        last_seen[host] = frame.time
    if boundary is not None:
        yield at(boundary)


def backfill(config: RushConfig, sink: HistorySink) -> List[str]:
    """``Source.history``: replays every matched file into ``sink``; returns the files it could not read."""
    progress = sink.progress("rush")
    replay = Replay(history_files(config), lambda done, records: progress(done, replay.total_bytes, records),
                    Containment([PathPattern(entry.path) for entry in config.cpu_acct]))
    for when, at_that_time in history(replay, sink.step):
        sink.add(when, at_that_time)
    sink.note("rush: %d files, %d records, %d malformed lines skipped" % (
        len(replay.paths), replay.records, replay.malformed))
    return ["%s: %s" % (path, reason) for path, reason in replay.unreadable]
