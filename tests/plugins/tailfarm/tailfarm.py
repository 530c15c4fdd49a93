"""A source of appended logs with multi-line records, written against ``exporter.plugin`` only (docs/plugins.md).

One record per finished job, appended by the queue manager; logs are rotated by rename::

    JOB gpu shot010
    FRAME 12.5
    FRAME 11.0
    END

A record counts once its ``END`` is read. Its lines come from one file: a record begun in a file that was
rotated away and continued in the new one is malformed (every line of both parts), never merged.
"""

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from prometheus_client.core import CounterMetricFamily

from exporter.plugin import (
    Containment,
    Field,
    FileKey,
    FileStatus,
    Glob,
    Integer,
    LabelBudget,
    ListOf,
    PathPattern,
    Source,
    Struct,
    Tailer,
    label_value,
)

KIND = "tailfarm_log"
MAX_QUEUE_CHARS = 64


@dataclass(frozen=True)
class TailFarmConfig:
    paths: Tuple[str, ...]
    max_queues: int


SCHEMA = Struct({"paths": Field(ListOf(Glob()), default=(), doc="job logs or globs"),
                 "max_queues": Field(Integer(minimum=1), default=100, doc="queues with series of their own")},
                build=lambda paths, max_queues: TailFarmConfig(tuple(paths), max_queues))


@dataclass
class _Record:
    """A record in progress: its queue, its frames' seconds, and its lines so far."""

    queue: str
    seconds: float = 0.0
    lines: int = 1


@dataclass
class _FileCounts:
    """What one label (the path a file was first followed at) has given, for its ``FileStatus``."""

    up: bool = True
    last_success: Optional[float] = None
    last_check: Optional[float] = None
    errors: int = 0
    last_error: Optional[str] = None
    malformed: int = 0
    bytes: int = 0
    lines: int = 0


@dataclass(frozen=True)
class TailFarmSnapshot:
    files: Tuple[FileStatus, ...]
    totals: Tuple[Tuple[str, int, float], ...]  # (queue label, jobs, frame seconds)


@dataclass
class _Totals:
    jobs: Dict[str, int] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)


class TailFarmReader:
    """Tails the job logs; assembles records per (label, file key); keeps totals per queue under a budget."""

    kind = KIND

    def __init__(self, config: TailFarmConfig):
        self.patterns = [PathPattern(pattern) for pattern in config.paths]
        self._tailer = Tailer(self._consume, discarded=self._discarded, containment=Containment(self.patterns))
        self._budget = LabelBudget(series_budget=2 * (config.max_queues + 1), series_per_value=2,
                                   max_length=MAX_QUEUE_CHARS)
        self._open: Dict[Tuple[str, FileKey], _Record] = {}
        self._files: Dict[str, _FileCounts] = {}
        self._totals = _Totals()

    def sync(self, paths):
        """Reads the changed paths (every matched and followed one at a rescan), then the duties of a tailer."""
        candidates = set(paths) if paths is not None else (
            {path for pattern in self.patterns for path in pattern.scan()} | self._tailer.paths)
        for path in sorted(candidates):
            self._visit(path)
        self._tailer.drain_retired()  # rotated files: read what their writer still appends, closed when quiet
        self._abandon_ended_records()
        self._drop_gone_files()
        return TailFarmSnapshot(self._statuses(), self._sorted_totals())

    def families(self, snapshot):
        jobs = CounterMetricFamily("tailfarm_jobs", "Job records read to their END, by queue", labels=["queue"])
        seconds = CounterMetricFamily("tailfarm_frame_seconds", "Render time of the frames of those jobs",
                                      labels=["queue"])
        for queue, count, total in snapshot.totals:
            jobs.add_metric([queue], count)
            seconds.add_metric([queue], total)
        return [jobs, seconds]

    def close(self):
        self._tailer.close()

    def _visit(self, path):
        if not any(pattern.matches(path) for pattern in self.patterns):
            self._tailer.forget(path)  # no longer matched: a renamed file drains, then closes
            return
        try:
            self._tailer.follow(path)
        except FileNotFoundError:  # gone, or renamed away: a renamed file drains, then closes
            self._tailer.forget(path)
        except OSError as exc:  # kept down, with why, until a read succeeds
            counts = self._files.setdefault(self._tailer.label_of(path) or path, _FileCounts())
            counts.up, counts.errors, counts.last_error = False, counts.errors + 1, str(exc)
            counts.last_check = time.time()
        else:
            counts = self._files.setdefault(self._tailer.label_of(path) or path, _FileCounts())
            counts.up, counts.last_error = True, None
            counts.last_success = counts.last_check = time.time()

    def _consume(self, label: str, block: bytes, key: FileKey) -> None:
        counts = self._files.setdefault(label, _FileCounts())
        counts.bytes += len(block)
        for line in block.decode("utf-8", "replace").splitlines():
            counts.lines += 1
            counts.malformed += self._take(label, key, line.split())

    def _take(self, label: str, key: FileKey, words: List[str]) -> int:
        """Adds one line to the record in progress of the file ``key``; returns the malformed lines it settles."""
        stream = (label, key)
        record = self._open.get(stream)
        if len(words) == 3 and words[0] == "JOB":
            self._open[stream] = _Record(words[1])
            return record.lines if record else 0  # a record without its END
        if record is None:
            return 1  # a line of no record begun in this file (maybe begun in the file rotated away)
        record.lines += 1
        if len(words) == 2 and words[0] == "FRAME":
            try:
                record.seconds += float(words[1])
                return 0
            except ValueError:
                pass
        elif words == ["END"]:
            del self._open[stream]
            self._count(record)
            return 0
        del self._open[stream]
        return record.lines

    def _count(self, record: _Record) -> None:
        queue = self._budget.label(label_value(record.queue))
        self._totals.jobs[queue] = self._totals.jobs.get(queue, 0) + 1
        self._totals.seconds[queue] = self._totals.seconds.get(queue, 0.0) + record.seconds

    def _discarded(self, label: str, nbytes: int, new_line: bool) -> None:
        counts = self._files.setdefault(label, _FileCounts())
        counts.bytes += nbytes
        counts.malformed += new_line

    def _abandon_ended_records(self) -> None:
        """A record whose file is closed (rotated away and drained, or deleted) will never end: malformed."""
        live = self._tailer.live_keys()
        for stream in [stream for stream in self._open if stream[1] not in live]:
            self._files.setdefault(stream[0], _FileCounts()).malformed += self._open.pop(stream).lines

    def _drop_gone_files(self) -> None:
        live = self._tailer.live_labels()
        for label in [label for label, counts in self._files.items() if label not in live and counts.up]:
            del self._files[label]

    def _statuses(self) -> Tuple[FileStatus, ...]:
        return tuple(self._status(label, counts) for label, counts in sorted(self._files.items()))

    def _status(self, label: str, counts: _FileCounts) -> FileStatus:
        seen = self._tailer.seen(label)
        return FileStatus(kind=KIND, path=label, up=counts.up, last_success_time=counts.last_success,
                          errors_total=counts.errors, malformed_lines_total=counts.malformed,
                          bytes_read_total=counts.bytes, lines_read_total=counts.lines, last_error=counts.last_error,
                          size_bytes=seen.size if seen else None, modified_time=seen.modified if seen else None,
                          unread_bytes=seen.unread if seen else None, last_check_time=counts.last_check)

    def _sorted_totals(self) -> Tuple[Tuple[str, int, float], ...]:
        return tuple((queue, jobs, self._totals.seconds[queue]) for queue, jobs in sorted(self._totals.jobs.items()))


def readers(section):
    return [TailFarmReader(section)] if section is not None and section.paths else []


SOURCE = Source(name="tailfarm", schema=SCHEMA, readers=readers, doc="Test plugin: job records from appended logs")
