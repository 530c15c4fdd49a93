"""Royal Render's readers: one whole-file reader per file kind, reading through the worker, and the boundary's report.

Each kind is a ``WholeFileReader`` (re-read on change only, last good values
kept, a file that crashed or hung the worker backed off on its own while a
fresh worker reads the next file at once). A member of a vendor object that
failed during a read drops only the values that depend on it;
``MemberFailures`` counts it per kind and member, and ``BoundaryReport``,
the source's last reader, exports those counts with the worker's state.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Collection, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.families import counter, gauge, label_value
from exporter.logs import fields
from exporter.paths import PathPattern
from exporter.royalrender.client import WorkerClient, WorkerCrashed, WorkerError, WorkerStartFailed
from exporter.royalrender.contract import Kind
from exporter.royalrender.times import TOLERANCE_SECONDS, NotATime, Written
from exporter.royalrender.vendor.calls import STALE_SLOTS
from exporter.sources import READ_FAILURE_REASONS, FileStatus
from exporter.wholefile import ReadFailed, WholeFileReader

log = logging.getLogger(__name__)

#: Royal Render's changed files are read in batches at most this often (``sources.Batched``).
BATCH_SECONDS = 0.5


class TimeChecks:
    """What the reads of each kind said about RR's times (``times.checked``) and the shape decided.

    Per kind: reads whose latest values were not current (withheld), reads
    whose times were implausible, the last read's offset from its write,
    and the implausibility of the last read, logged whenever its text
    changes. Written only by the source's ingest thread.
    """

    def __init__(self) -> None:
        self.stale: Counter = Counter()
        self.implausible: Counter = Counter()
        self.offsets: Dict[str, float] = {}
        self.problems: Dict[str, str] = {}
        self.shape: Dict[str, str] = {}

    def add(self, kind: str, data: Mapping[str, Any], path: str) -> None:
        check = data.get("check")
        if check is not None:
            self._check(kind, check, path)
        shape = data.get("shape")
        if shape is not None:
            self.shape = {"daily_stats_type_ids": shape["type_ids"], "daily_stats_evidence": shape["evidence"]}

    def _check(self, kind: str, check: Mapping[str, Any], path: str) -> None:
        self.stale[kind] += bool(check["stale"])
        if check["offset"] is not None:
            self.offsets[kind] = check["offset"]
        problem = check["implausible"]
        self.implausible[kind] += problem is not None
        if problem != self.problems.get(kind):
            if problem is not None:
                log.warning("Royal Render times: %s", problem, extra=fields(kind=kind, path=path))
            else:
                log.info("Royal Render times plausible again", extra=fields(kind=kind, path=path))
        if problem is None:
            self.problems.pop(kind, None)
        else:
            self.problems[kind] = problem

    def snapshot(self) -> TimeCheckSnapshot:
        return TimeCheckSnapshot(stale=MappingProxyType(dict(self.stale)),
                                 implausible=MappingProxyType(dict(self.implausible)),
                                 offsets=MappingProxyType(dict(self.offsets)),
                                 problems=MappingProxyType(dict(self.problems)),
                                 shape=MappingProxyType(dict(self.shape)))


@dataclass(frozen=True)
class TimeCheckSnapshot:
    stale: Mapping[str, int]
    implausible: Mapping[str, int]
    offsets: Mapping[str, float]
    problems: Mapping[str, str]
    shape: Mapping[str, str]


class MemberFailures:
    """Reads in which a vendor member failed, per (kind, member); each pair is logged once.

    Written only by the source's ingest thread; readers hand out immutable copies.
    """

    def __init__(self) -> None:
        self._counts: Counter = Counter()

    def add(self, kind: str, failures: Mapping[str, str], path: str) -> None:
        for member, error in failures.items():
            if (kind, member) not in self._counts:
                log.warning("Royal Render module: a member failed; the values that depend on it are not exported",
                            extra=fields(kind=kind, member=member, error=error, path=path))
            self._counts[(kind, member)] += 1

    def snapshot(self) -> Mapping[Tuple[str, str], int]:
        return MappingProxyType(dict(self._counts))


def worker_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The options the worker gets: plain JSON values (compiled regexes stay on the daemon's side)."""
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool)) or v is None}


def written(path: str, worker: WorkerClient) -> Written:
    """When ``path`` was written, in RR's zone; taken before the worker reads it."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise ReadFailed(str(exc), failure="io") from None
    try:
        return Written(mtime, worker.settings.timezone.zone())
    except NotATime as exc:  # a broken clock on the file server: the file's times cannot be checked
        raise ReadFailed("RR's times cannot be placed: %s" % exc) from None


def file_reader(kind: Kind, patterns: Sequence[str], options: Mapping[str, Any], worker: WorkerClient,
                member_failures: MemberFailures, time_checks: TimeChecks) -> WholeFileReader:
    """The reader of one RR file kind: a whole-file reader whose files are read through the worker."""
    label = "royalrender_" + kind.name
    within_budget = kind.budget(options)

    def parse(path: str) -> Any:
        when = written(path, worker)
        try:
            reply = worker.read(kind.name, path, worker_options(options))
        except WorkerCrashed as exc:  # the file is to blame, unless a risky call was (it is avoided from now on)
            raise ReadFailed(str(exc), back_off=exc.step is None,
                             failure="timeout" if exc.timed_out else "crash") from None
        except WorkerStartFailed as exc:
            raise ReadFailed(str(exc), failure="unavailable") from None
        except WorkerError as exc:
            raise ReadFailed(str(exc), failure=_unopenable(path)) from None
        member_failures.add(label, reply.member_failures, path)
        data = kind.interpret(reply.data, when)
        time_checks.add(label, data, path)
        return within_budget(data)  # on the ingest thread: every render of this data shows the same series

    # Files of a kind that reads every match (one per client) each give their own series: a changed one
    # replaces only its own rows (``merged``), whatever the number of files. RR saves each file whole every
    # 20-90 s: changes are read in batches (BATCH_SECONDS), so thousands of clients saving at their own pace
    # cost a few passes and renders a second, not one per file.
    return WholeFileReader(label, patterns, parse, lambda data: kind.families(data, options), kind.newest(options),
                           failure_reasons=READ_FAILURE_REASONS, merged=kind.select == "all",
                           batch_seconds=BATCH_SECONDS)


def _unopenable(path: str) -> Optional[str]:
    """``io`` if the daemon cannot open the file the vendor's module refused either (gone, no permission);
    None if it can: then the module rejected the content, a parse error."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return "io"
    return None


def _module_note(failure: str, module: Mapping[str, str]) -> str:
    """The status page's line on the module: the cause while the worker cannot start, never a countdown."""
    if failure:
        return "NOT LOADED: " + failure
    if module["module"]:
        return "%s (%s)" % (module["module"], module["file"])
    return "not loaded yet (no file read)"


@dataclass(frozen=True)
class BoundarySnapshot:
    files: Tuple[FileStatus, ...]
    member_failures: Mapping[Tuple[str, str], int]
    times: TimeCheckSnapshot
    restarts: int
    avoided: Tuple[str, ...]
    module: Mapping[str, str]
    notes: Tuple[Tuple[str, str], ...]  # for the status page (sources.Described)
    start_failure: str = ""  # why the worker cannot start ("": it can, or was not tried)


class BoundaryReport:
    """The source's last reader: it reads no file (no patterns), and reports on the vendor boundary.

    Being synced after the file readers on every pass, its snapshot always
    includes what their reads just found.
    """

    kind = "royalrender_boundary"
    patterns: Sequence[PathPattern] = ()

    def __init__(self, worker: WorkerClient, member_failures: MemberFailures, time_checks: TimeChecks):
        self._worker = worker
        self._member_failures = member_failures
        self._time_checks = time_checks

    def sync(self, paths: Optional[Collection[str]] = None) -> BoundarySnapshot:
        info = self._worker.module_info
        times = self._time_checks.snapshot()
        module = {"module": str(info.get("module", "")), "file": str(info.get("file", "")),
                  "python": str(info.get("python", "")), "timezone": self._worker.settings.timezone.describe(),
                  "version": self._version(), "daily_stats_type_ids": times.shape.get("daily_stats_type_ids", ""),
                  "daily_stats_evidence": times.shape.get("daily_stats_evidence", "")}
        failure = self._worker.start_failure
        notes: Tuple[Tuple[str, str], ...] = (
                 ("Royal Render module", _module_note(failure, module)),
                 ("Royal Render module version", module["version"] or "not known yet"),
                 ("Royal Render worker's Python", module["python"] or self._worker.settings.python),
                 ("Royal Render time zone", module["timezone"]))
        notes += tuple(("Royal Render times of %s" % kind, "IMPLAUSIBLE: " + problem)
                       for kind, problem in sorted(times.problems.items()))
        if times.shape:
            notes += (("Royal Render daily stats type ids", "%s (%s)" % (
                times.shape["daily_stats_type_ids"], times.shape["daily_stats_evidence"])),)
        return BoundarySnapshot(files=(), member_failures=self._member_failures.snapshot(), times=times,
                                restarts=self._worker.restarts, avoided=tuple(sorted(self._worker.avoided)),
                                module=MappingProxyType(module), notes=notes, start_failure=failure)

    def _version(self) -> str:
        """``getRRModuleVersion()`` once the module is loaded (asked once; a risky call)."""
        if not self._worker.module_info.get("module"):
            return ""
        try:
            version = self._worker.module_version()
        except WorkerError as exc:
            return "unknown (%s)" % exc
        return "unknown" if version is None else version

    def families(self, snapshot: BoundarySnapshot) -> Iterable[Metric]:
        yield counter("renderfarm_exporter_royalrender_member_failures_total",
                      "Reads of a Royal Render file in which a member of the vendor module was missing, raised or "
                      "returned an unexpected type; the values depending on it were not exported",
                      ["kind", "member"], dict(snapshot.member_failures))
        yield counter("renderfarm_exporter_royalrender_worker_restarts_total",
                      "Times the Royal Render worker crashed, hung or broke the protocol and was replaced", [],
                      {(): snapshot.restarts})
        yield counter("renderfarm_exporter_royalrender_stale_slots_total",
                      "Reads of a Royal Render file whose latest slot (of the server, a user, project or render app, "
                      "a client) started more than %d slot lengths before the file was written or last saved; "
                      "those values were not exported as current" % STALE_SLOTS, ["kind"], dict(snapshot.times.stale))
        yield counter("renderfarm_exporter_royalrender_implausible_times_total",
                      "Reads of a Royal Render file whose newest time lay more than %d s and one slot from the file's "
                      "modification time (a wrong royalrender.timezone or time base)" % TOLERANCE_SECONDS, ["kind"],
                      dict(snapshot.times.implausible))
        yield gauge("renderfarm_exporter_royalrender_time_offset_seconds",
                    "The newest time the last read file of a kind states (last save, newest slot or item) minus "
                    "its modification time", ["kind"], dict(snapshot.times.offsets))
        yield gauge("renderfarm_exporter_royalrender_avoided_calls",
                    "1 per call outside the documented contract that crashed or hung the worker; it is no longer "
                    "made", ["call"], {call: 1 for call in snapshot.avoided})
        yield gauge("renderfarm_exporter_royalrender_module_loaded",
                    "1 if the Royal Render worker runs with the module loaded, or has not been needed yet; 0 while it "
                    "cannot start (renderfarm_exporter_royalrender_module_load_failure_info says why)", [],
                    {(): int(not snapshot.start_failure)})
        if snapshot.start_failure:
            failure = InfoMetricFamily("renderfarm_exporter_royalrender_module_load_failure",
                                       "Why the Royal Render worker cannot start (its import error, with the names "
                                       "and folders tried, or why its interpreter cannot run); present only then",
                                       labels=["reason"])
            failure.add_metric([label_value(snapshot.start_failure)], {})
            yield failure
        if snapshot.module["module"]:
            info = InfoMetricFamily("renderfarm_exporter_royalrender_module",
                                    "The Royal Render module the worker loaded, its version, its Python and RR's "
                                    "time zone",
                                    labels=sorted(snapshot.module))
            info.add_metric([snapshot.module[k] for k in sorted(snapshot.module)], {})
            yield info

    def close(self) -> None:
        """Stops the worker the source's file readers share (they hold nothing of their own)."""
        self._worker.close()
