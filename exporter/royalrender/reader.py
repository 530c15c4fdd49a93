"""One reader for every Royal Render file kind: find the files, read changed ones through the worker.

A file is re-read only when its (inode, size, mtime) changed since the last
successful read, or when the last read failed. A failed read (the vendor's
error, a worker crash, a timeout, a half-written file) keeps the file's last
good data and marks it down; a file that disappears takes its data with it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.metrics_core import Metric

from exporter.logs import RateLimitedLog
from exporter.paths import PathPattern
from exporter.royalrender.worker import WorkerClient, WorkerError
from exporter.sources import FileStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RrSnapshot:
    files: Tuple[FileStatus, ...]
    data: Mapping[str, Dict[str, Any]]


class _FileState:
    def __init__(self) -> None:
        self.signature: Optional[Tuple[int, int, int]] = None
        self.up = True
        self.last_success_time: Optional[float] = None
        self.errors = 0
        self.bytes = 0


def _worker_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Options the worker may need, as JSON (compiled regexes stay on the daemon side)."""
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool)) or v is None}


class RrFileReader:
    def __init__(self, kind: ModuleType, patterns: Sequence[str], options: Mapping[str, Any], worker: WorkerClient):
        self._kind = kind
        self.kind = "royalrender_" + kind.NAME
        self.patterns = [PathPattern(p) for p in patterns]
        self._options = dict(options)
        self._worker = worker
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
        if state.signature == signature and state.up:
            return
        try:
            self._data[path] = self._worker.read(self._kind.NAME, path, _worker_options(self._options))
        except WorkerError as exc:
            self._failed(path, str(exc))
            return
        state.signature, state.up, state.last_success_time = signature, True, time.time()
        state.bytes += st.st_size

    def _failed(self, path: str, reason: str) -> None:
        state = self._files.setdefault(path, _FileState())
        state.up = False
        state.errors += 1
        self._failure_log.warning(path, "cannot read Royal Render file; keeping its last good values",
                                  path=path, kind=self.kind, reason=reason)

    def _snapshot(self) -> RrSnapshot:
        files: List[FileStatus] = [
            FileStatus(kind=self.kind, path=path, up=s.up, last_success_time=s.last_success_time,
                       errors_total=s.errors, malformed_lines_total=0, bytes_read_total=s.bytes, lines_read_total=0)
            for path, s in sorted(self._files.items())
        ]
        return RrSnapshot(files=tuple(files), data=MappingProxyType(dict(self._data)))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("-inf")
