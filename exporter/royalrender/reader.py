"""Royal Render's readers: one per file kind, reading changed files through the worker, and the boundary's report.

A file is re-read only when its (inode, size, mtime) changed since the last
successful read, or when the last read failed. A failed read (the vendor's
error, a worker crash, a timeout, a half-written file) keeps the file's last
good data and marks it down; a file that disappears takes its data with it.

A file whose read crashed or hung the worker is backed off on its own
(1 s, doubling to 60 s): the worker is started afresh for the next file at
once, so one bad file never takes the others down. A member of a vendor
object that failed during a read drops only the values that depend on it;
``MemberFailures`` counts it per kind and member, and ``BoundaryReport``,
the source's last reader, exports those counts with the worker's state.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.exposition import render_section
from exporter.families import counter, gauge
from exporter.logs import RateLimitedLog, fields
from exporter.paths import PathPattern
from exporter.royalrender.client import WorkerClient, WorkerCrashed, WorkerError
from exporter.sources import FileStatus

log = logging.getLogger(__name__)

FILE_BACKOFF_START_SECONDS = 1.0
FILE_BACKOFF_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class RrSnapshot:
    files: Tuple[FileStatus, ...]
    data: Mapping[str, Dict[str, Any]]


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


class _FileState:
    def __init__(self) -> None:
        self.signature: Optional[Tuple[int, int, int]] = None
        self.up = True
        self.last_success_time: Optional[float] = None
        self.errors = 0
        self.bytes = 0
        self.backoff = 0.0
        self.retry_at = 0.0
        self.failed_signature: Optional[Tuple[int, int, int]] = None
        self.last_error: Optional[str] = None

    def backed_off(self, signature: Tuple[int, int, int]) -> bool:
        """Still waiting after a crash or hang; a changed file (a fix, a new save) is tried at once."""
        return not self.up and signature == self.failed_signature and time.monotonic() < self.retry_at

    def back_off(self, signature: Optional[Tuple[int, int, int]]) -> None:
        """After this file crashed or hung the worker: wait longer before trying it again."""
        self.backoff = min(max(self.backoff * 2, FILE_BACKOFF_START_SECONDS), FILE_BACKOFF_MAX_SECONDS)
        self.retry_at = time.monotonic() + self.backoff
        self.failed_signature = signature


def worker_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The options the worker gets: plain JSON values (compiled regexes stay on the daemon's side)."""
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool)) or v is None}


class RrFileReader:
    def __init__(self, kind: ModuleType, patterns: Sequence[str], options: Mapping[str, Any], worker: WorkerClient,
                 member_failures: MemberFailures):
        self._kind = kind
        self.kind = "royalrender_" + kind.NAME
        self.patterns = [PathPattern(p) for p in patterns]
        self._options = dict(options)
        self._worker = worker
        self._member_failures = member_failures
        self._files: Dict[str, _FileState] = {}
        self._data: Dict[str, Dict[str, Any]] = {}
        self._failure_log = RateLimitedLog(log)

    def sync(self, paths: Optional[Collection[str]] = None) -> RrSnapshot:
        """Reads the changed ``paths``; a rescan (None), or a kind that reads only the newest file, looks at all."""
        if paths is None or self._kind.SELECT == "newest":
            wanted = self.selected()
            for gone in set(self._files) - wanted:
                self._forget(gone)
        else:
            wanted = set(paths)
        for path in sorted(wanted):
            self._visit(path)
        return self._snapshot()

    def families(self, snapshot: RrSnapshot) -> Iterable[Metric]:
        return self._kind.families(snapshot.data, self._options)

    def close(self) -> None:
        self._worker.close()

    def selected(self) -> set:
        """Every match, or for ``SELECT = "newest"`` the most recently changed (``newest_count`` of them)."""
        matches = {path for pattern in self.patterns for path in pattern.scan()}
        if self._kind.SELECT != "newest":
            return matches
        count = self._kind.newest_count(self._options) if hasattr(self._kind, "newest_count") else 1
        return set(sorted(matches, key=_mtime, reverse=True)[:count])

    def _forget(self, path: str) -> None:
        self._files.pop(path, None)
        self._data.pop(path, None)

    def _visit(self, path: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._forget(path)
            return
        except OSError as exc:
            self._failed(path, str(exc))
            return
        state = self._files.setdefault(path, _FileState())
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if (state.signature == signature and state.up) or state.backed_off(signature):
            return
        try:
            reply = self._worker.read(self._kind.NAME, path, worker_options(self._options))
        except WorkerCrashed as exc:
            self._failed(path, str(exc), signature if exc.step is None else None)
            return
        except WorkerError as exc:
            self._failed(path, str(exc))
            return
        problem = self._unexportable(path, reply.data)
        if problem:
            self._failed(path, problem)
            return
        self._data[path] = reply.data
        self._member_failures.add(self.kind, reply.member_failures, path)
        state.signature, state.up, state.last_success_time, state.backoff = signature, True, time.time(), 0.0
        state.bytes += st.st_size

    def _unexportable(self, path: str, data: Any) -> Optional[str]:
        """Why the worker's data for one file cannot become metrics (a reply of the wrong shape), or None.

        Checked here, per file, so one bad reply fails its own file instead of every render of the section.
        """
        try:
            render_section(self._kind.families({path: data}, self._options))
        except Exception as exc:  # noqa: BLE001 - any shape error in the plain data
            return "the worker's data for this file cannot be exported: %s: %s" % (type(exc).__name__, exc)
        return None

    def _failed(self, path: str, reason: str, crashed_on: Optional[Tuple[int, int, int]] = None) -> None:
        """Marks the file down; ``crashed_on``: the signature of the file version that crashed or hung the worker."""
        state = self._files.setdefault(path, _FileState())
        state.up = False
        state.errors += 1
        state.last_error = reason[:500]
        if crashed_on is not None:
            state.back_off(crashed_on)
        self._failure_log.warning(path, "cannot read Royal Render file; keeping its last good values",
                                  path=path, kind=self.kind, reason=reason,
                                  **({"retry_in_seconds": state.backoff} if crashed_on is not None else {}))

    def _snapshot(self) -> RrSnapshot:
        files: List[FileStatus] = [
            FileStatus(kind=self.kind, path=path, up=s.up, last_success_time=s.last_success_time,
                       errors_total=s.errors, malformed_lines_total=0, bytes_read_total=s.bytes, lines_read_total=0,
                       last_error=None if s.up else s.last_error)
            for path, s in sorted(self._files.items())
        ]
        return RrSnapshot(files=tuple(files), data=MappingProxyType(dict(self._data)))


@dataclass(frozen=True)
class BoundarySnapshot:
    files: Tuple[FileStatus, ...]
    member_failures: Mapping[Tuple[str, str], int]
    restarts: int
    avoided: Tuple[str, ...]
    module: Mapping[str, str]
    notes: Tuple[Tuple[str, str], ...]  # for the status page (sources.Described)


class BoundaryReport:
    """The source's last reader: it reads no file (no patterns), and reports on the vendor boundary.

    Being synced after the file readers on every pass, its snapshot always
    includes what their reads just found.
    """

    kind = "royalrender_boundary"
    patterns: Sequence[PathPattern] = ()

    def __init__(self, worker: WorkerClient, member_failures: MemberFailures):
        self._worker = worker
        self._member_failures = member_failures

    def sync(self, paths: Optional[Collection[str]] = None) -> BoundarySnapshot:
        info = self._worker.module_info
        module = {"module": str(info.get("module", "")), "file": str(info.get("file", "")),
                  "python": str(info.get("python", "")), "timezone": self._worker.settings.timezone.describe(),
                  "version": self._version()}
        notes = (("Royal Render module", "%s (%s)" % (module["module"] or "not loaded yet", module["file"])),
                 ("Royal Render module version", module["version"] or "not known yet"),
                 ("Royal Render worker's Python", module["python"] or self._worker.settings.python),
                 ("Royal Render time zone", module["timezone"]))
        return BoundarySnapshot(files=(), member_failures=self._member_failures.snapshot(),
                                restarts=self._worker.restarts, avoided=tuple(sorted(self._worker.avoided)),
                                module=MappingProxyType(module), notes=notes)

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
        yield gauge("renderfarm_exporter_royalrender_avoided_calls",
                    "1 per call outside the documented contract that crashed or hung the worker; it is no longer "
                    "made", ["call"], {call: 1 for call in snapshot.avoided})
        if snapshot.module["module"]:
            info = InfoMetricFamily("renderfarm_exporter_royalrender_module",
                                    "The Royal Render module the worker loaded, its version, its Python and RR's "
                                    "time zone",
                                    labels=sorted(snapshot.module))
            info.add_metric([snapshot.module[k] for k in sorted(snapshot.module)], {})
            yield info

    def close(self) -> None:
        """The file readers close the shared worker."""


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("-inf")
