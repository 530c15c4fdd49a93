"""A reader for statistics files that are rewritten whole (binary stats, JSON, INI), for any source.

What every such file needs, in one place:

- a file is read again only when its (inode, size, mtime) changed, or its
  last read failed;
- a failed read keeps the file's last good values and marks it down, with
  the reason, logged at most once a minute per file, and is counted as a
  parse error (the content was rejected) or a read failure by reason
  (``sources.READ_FAILURE_REASONS``: ``ReadFailed.failure``);
- a read that says it harmed the reader (``ReadFailed(back_off=True)``: a
  crashed or hung helper process) backs that file off on its own, 1 s
  doubling to 60 s; a new version of the file is tried at once;
- data that cannot be turned into metrics fails its own file, never the
  render of the whole section;
- ``newest=N`` reads only the N most recently changed matches (today's
  file); a file that disappears, or is no longer among the newest, takes
  its values with it.

A source gives it how to read one file (``parse``) and how to turn the data
of every file into families (``families``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Collection, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.metrics_core import Metric

from exporter.containment import OUTSIDE, OUTSIDE_REASON, Containment, OutsideRoots
from exporter.exposition import render_section
from exporter.logs import RateLimitedLog
from exporter.paths import PathPattern
from exporter.sources import FileStatus

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0

Signature = Tuple[int, int, int]


class ReadFailed(Exception):
    """One file could not be read.

    ``back_off``: the read harmed the reader, so wait before the next try.
    ``failure``: None when the file's content was rejected (a parse error),
    else why the read failed without the content being to blame, one of
    ``sources.READ_FAILURE_REASONS``.
    """

    def __init__(self, reason: str, back_off: bool = False, failure: Optional[str] = None):
        super().__init__(reason)
        self.back_off = back_off
        self.failure = failure


@dataclass(frozen=True)
class WholeFileSnapshot:
    files: Tuple[FileStatus, ...]
    data: Mapping[str, Any]


class _FileState:
    def __init__(self) -> None:
        self.signature: Optional[Signature] = None
        self.up = True
        self.last_success_time: Optional[float] = None
        self.errors = 0
        self.parse_errors = 0
        self.read_failures: Counter = Counter()
        self.bytes = 0
        self.backoff = 0.0
        self.retry_at = 0.0
        self.failed_signature: Optional[Signature] = None
        self.last_error: Optional[str] = None

    def backed_off(self, signature: Signature) -> bool:
        """Still waiting after a harmful read; a changed file (a fix, a new save) is tried at once."""
        return not self.up and signature == self.failed_signature and time.monotonic() < self.retry_at

    def back_off(self, signature: Signature) -> None:
        self.backoff = min(max(self.backoff * 2, BACKOFF_START_SECONDS), BACKOFF_MAX_SECONDS)
        self.retry_at = time.monotonic() + self.backoff
        self.failed_signature = signature


class WholeFileReader:
    def __init__(self, kind: str, patterns: Sequence[str], parse: Callable[[str], Any],
                 families: Callable[[Mapping[str, Any]], Iterable[Metric]], newest: Optional[int] = None,
                 failure_reasons: Sequence[str] = ("io",)):
        """``failure_reasons``: the ``ReadFailed.failure`` values ``parse`` raises, exported at zero from the start."""
        self.kind = kind
        self.patterns = [PathPattern(p) for p in patterns]
        self._parse = parse
        self._families = families
        self._newest = newest
        self._failure_reasons = tuple(failure_reasons)
        self._files: Dict[str, _FileState] = {}
        self._data: Dict[str, Any] = {}
        self._failure_log = RateLimitedLog(log)
        self._containment = Containment(self.patterns)

    def sync(self, paths: Optional[Collection[str]] = None) -> WholeFileSnapshot:
        """Reads the changed ``paths``; a rescan (None), or a reader of the newest files only, looks at all."""
        if paths is None or self._newest is not None:
            wanted = self.selected()
            for gone in set(self._files) - wanted:
                self._forget(gone)
        else:
            wanted = set(paths)
        for path in sorted(wanted):
            self._visit(path)
        return self._snapshot()

    def families(self, snapshot: WholeFileSnapshot) -> Iterable[Metric]:
        return self._families(snapshot.data)

    def close(self) -> None:
        """Nothing is held between reads."""

    def selected(self) -> set:
        """Every match, or the ``newest`` most recently changed ones."""
        matches = {path for pattern in self.patterns for path in pattern.scan()}
        if self._newest is None:
            return matches
        return set(sorted(matches, key=_mtime, reverse=True)[:self._newest])

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
            self._failed(path, str(exc), None, "io")
            return
        state = self._files.setdefault(path, _FileState())
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if (state.signature == signature and state.up) or state.backed_off(signature):
            return
        try:  # the file is read elsewhere (RR's worker) by path: checked before, and again after
            self._containment.check(path)
            data = self._parse(path)
            self._containment.check(path)
        except OutsideRoots:
            self._failed(path, OUTSIDE_REASON, None, OUTSIDE)
            return
        except ReadFailed as exc:
            self._failed(path, str(exc), signature if exc.back_off else None, exc.failure)
            return
        problem = self._unexportable(path, data)
        if problem:
            self._failed(path, problem, None, None)
            return
        self._data[path] = data
        state.signature, state.up, state.last_success_time, state.backoff = signature, True, time.time(), 0.0
        state.bytes += st.st_size

    def _unexportable(self, path: str, data: Any) -> Optional[str]:
        """Why one file's data cannot become metrics, or None: checked per file, so it fails only that file."""
        try:
            render_section(self._families({path: data}))
        except Exception as exc:  # noqa: BLE001 - any shape error in the data
            return "the data of this file cannot be exported: %s: %s" % (type(exc).__name__, exc)
        return None

    def _failed(self, path: str, reason: str, harmful: Optional[Signature], failure: Optional[str]) -> None:
        """Marks the file down; ``harmful``: the signature of the file version whose read harmed the reader;
        ``failure``: as in ``ReadFailed`` (None: a parse error)."""
        state = self._files.setdefault(path, _FileState())
        state.up = False
        state.errors += 1
        if failure is None:
            state.parse_errors += 1
        else:
            state.read_failures[failure] += 1
        state.last_error = reason[:500]
        if harmful is not None:
            state.back_off(harmful)
        if failure != OUTSIDE:  # logged once by the containment
            self._failure_log.warning(path, "cannot read file; keeping its last good values", path=path,
                                      kind=self.kind, reason=reason,
                                      **({"retry_in_seconds": state.backoff} if harmful is not None else {}))

    def _snapshot(self) -> WholeFileSnapshot:
        files: List[FileStatus] = [
            FileStatus(kind=self.kind, path=path, up=s.up, last_success_time=s.last_success_time,
                       errors_total=s.errors, malformed_lines_total=0, bytes_read_total=s.bytes, lines_read_total=0,
                       last_error=None if s.up else s.last_error, parse_errors_total=s.parse_errors,
                       read_failures=tuple((reason, s.read_failures[reason]) for reason
                                           in sorted(set(self._failure_reasons) | set(s.read_failures))))
            for path, s in sorted(self._files.items())
        ]
        return WholeFileSnapshot(files=tuple(files), data=MappingProxyType(dict(self._data)))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("-inf")
