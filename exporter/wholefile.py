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

What a changed file costs does not grow with the number of files: a file's
``FileStatus`` is a new object only when that file was read (so the
exporter's per-file rows are updated for it alone), a sync that read nothing
hands out its previous snapshot, and the families of a reader whose files
each give their own series (``merged``: one client per file) are kept as
the union of every file's families, row by row (``families.LiveRows``, as
Rush keeps its hosts): a changed file replaces only its own rows, which
are kept as it last gave them (its previous data is not made into
families again). A long
sync (the first read of thousands of files) hands out what it has read so
far every ``PROGRESS_SECONDS`` (``sync_steps``), so those files are served
before the last one is read.
"""

from __future__ import annotations

import array
import collections
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from prometheus_client.metrics_core import Metric

from exporter.containment import OUTSIDE, OUTSIDE_REASON, Containment, OutsideRoots
from exporter.exposition import render_section
from exporter.families import LiveRows, RowCounter, RowGauge, RowMetric, Rows, like
from exporter.logs import RateLimitedLog, fields
from exporter.paths import PathPattern
from exporter.sources import CHECK_RESOLUTION_SECONDS, PROGRESS_SECONDS, FileStatus

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
    #: For a ``merged`` reader: each family as (a family of its name, HELP, type and labels; every file's rows),
    #: in order. None: the families are made from ``data`` as a whole.
    merged: Optional[Tuple[Tuple[RowMetric, Rows[Any]], ...]] = None


#: What tells families apart: name, type, HELP, unit and label names.
FamilyKey = Tuple[str, str, str, str, Tuple[str, ...]]


_ROWS = (RowCounter, RowGauge)


def _family_key(family: RowMetric) -> FamilyKey:
    return family.name, family.type, family.documentation, family.unit, family.label_names


class _Slot:
    """One family of the merged families: every file's rows, and how many files give the family now."""

    __slots__ = ("key", "template", "rows", "files", "always")

    def __init__(self, key: FamilyKey, template: RowMetric, always: bool):
        self.key = key
        self.template = template
        self.rows: LiveRows[Any] = LiveRows()
        self.files = 0
        self.always = always  # given even without data (by ``families({})``): shown even when empty


class _MergedFamilies:
    """Every file's families joined into one set, kept up to date one file at a time.

    Holds for families in which each file gives its own series: the union of
    the files' rows is then what the families of all the data make. A file's
    series that another file gives too (two client files named alike) break
    that: ``replace`` says so, and the reader goes back to joining all the
    data as a whole.
    """

    def __init__(self, skeleton: Iterable[Metric]):
        self._slots: Dict[FamilyKey, _Slot] = {}
        for family in skeleton:
            if isinstance(family, _ROWS):
                key = _family_key(family)
                self._slots.setdefault(key, _Slot(key, family, always=True))
        #: Each file's rows as last given, by family: what a new version of the file replaces (its previous data
        #: is not made into families again to find them).
        self._rows_of: Dict[str, Tuple[Tuple[_Slot, Tuple[Any, ...]], ...]] = {}

    def replace(self, path: str, new: Sequence[Metric]) -> bool:
        """The families ``new`` of the file at ``path`` in place of its previous ones (none: the file is gone);
        False, changing nothing, when they cannot be merged (not rows, a family twice, or a series another file
        gives too)."""
        if not all(isinstance(family, _ROWS) for family in new):
            return False
        before = {slot.key: (slot, labels) for slot, labels in self._rows_of.get(path, ())}
        after: Dict[FamilyKey, RowMetric] = {_family_key(f): f for f in new if isinstance(f, _ROWS)}
        if len(after) != len(new):
            return False
        for key, family in after.items():
            slot, had = self._slots.get(key), before[key][1] if key in before else ()
            if slot is not None and any(label in slot.rows for label in family.rows if label not in had):
                return False
        for key, (slot, labels) in before.items():
            kept = after[key].rows if key in after else _NO_ROWS
            for label in labels:
                if label not in kept:
                    slot.rows.discard(label)
            if key not in after:
                slot.files -= 1
        given = []
        for key, family in after.items():
            slot = self._slots.get(key) or self._slots.setdefault(key, _Slot(key, family, always=False))
            if key not in before:
                slot.files += 1
            for label, value in zip(family.rows, family.rows.sample_values):
                slot.rows.set(label, value)
            given.append((slot, tuple(family.rows)))
        if given:
            self._rows_of[path] = tuple(given)
        else:
            self._rows_of.pop(path, None)
        return True

    def frozen(self) -> Tuple[Tuple[RowMetric, Rows[Any]], ...]:
        return tuple((slot.template, slot.rows.frozen()) for slot in self._slots.values()
                     if slot.always or slot.files)


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
        #: The version of the file (its signature; None: its stat failed) the last failure was counted for.
        self.failed_on: Optional[Signature] = None
        #: Size and modification time at the last check, and when that was.
        self.size: Optional[int] = None
        self.modified: Optional[float] = None
        self.checked: Optional[float] = None

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
                 failure_reasons: Sequence[str] = ("io",), merged: bool = False, batch_seconds: float = 0.0):
        """``failure_reasons``: the ``ReadFailed.failure`` values ``parse`` raises, exported at zero from the start.
        ``merged``: each file gives its own series (``families`` of all the data is the union of each file's),
        so the families are kept file by file (see ``_MergedFamilies``). ``batch_seconds``: changes are read in
        batches at most this often (``sources.Batched``)."""
        self.kind = kind
        self.batch_seconds = batch_seconds
        self.patterns = [PathPattern(p) for p in patterns]
        self._parse = parse
        self._families = families
        self._newest = newest
        self._failure_reasons = tuple(failure_reasons)
        self._files: Dict[str, _FileState] = {}
        self._data: Dict[str, Any] = {}
        self._failure_log = RateLimitedLog(log)
        self._containment = Containment(self.patterns)
        self._merged: Optional[_MergedFamilies] = _MergedFamilies(families({})) if merged else None
        #: Each file's status as last handed out; a new object only for a file in ``_dirty`` (read, failed or gone).
        self._statuses: Dict[str, FileStatus] = {}
        self._status_tuple: Tuple[FileStatus, ...] = ()
        self._dirty: Set[str] = set()
        self._last: Optional[WholeFileSnapshot] = None
        #: The families of the last snapshot given to ``families`` (not merged), made once per snapshot.
        self._made: Tuple[Optional[WholeFileSnapshot], List[Metric]] = (None, [])
        #: One file's families made (once, at its read: a merged reader keeps the rows each file gave, so the data
        #: a read replaces is not made into families again): the work a changed file costs, which the tests count.
        #: Only the ingest thread touches it.
        self.families_made = 0

    def sync(self, paths: Optional[Collection[str]] = None) -> WholeFileSnapshot:
        """Reads the changed ``paths``; a rescan (None), or a reader of the newest files only, looks at all."""
        return collections.deque(self.sync_steps(paths), maxlen=1)[0]  # the last: the whole sync's

    def sync_steps(self, paths: Optional[Collection[str]] = None) -> Iterator[WholeFileSnapshot]:
        """As ``sync``, handing out what is read so far every ``PROGRESS_SECONDS`` of a long sync; the last
        snapshot is the whole sync's (``sources.Progressive``)."""
        if paths is None or self._newest is not None:
            wanted = self.selected()
            for gone in set(self._files) - wanted:
                self._forget(gone)
        else:
            wanted = set(paths)
        started = time.monotonic()
        due = started + PROGRESS_SECONDS
        for path in sorted(wanted):
            self._visit(path)
            now = time.monotonic()
            if self._dirty and now >= due:
                yield self._snapshot()
                # each step's render costs in proportion to the files read so far: steps grow with the read (a
                # quarter of the time it has taken), so that a long read pays a few renders, not one per step
                due = time.monotonic() + max(PROGRESS_SECONDS, (now - started) / 4)
        yield self._snapshot()

    def families(self, snapshot: WholeFileSnapshot) -> Iterable[Metric]:
        if snapshot.merged is not None:
            return [like(template, rows) for template, rows in snapshot.merged]
        made = self._made
        if made[0] is not snapshot:  # a reader the sync passed by keeps its snapshot: its families are reused
            made = self._made = (snapshot, list(self._families(snapshot.data)))
        return made[1]

    def close(self) -> None:
        """Nothing is held between reads."""

    def selected(self) -> set:
        """Every match, or the ``newest`` most recently changed ones."""
        matches = {path for pattern in self.patterns for path in pattern.scan()}
        if self._newest is None:
            return matches
        return set(sorted(matches, key=_mtime, reverse=True)[:self._newest])

    def _forget(self, path: str) -> None:
        self._containment.forget(path)  # a refusal of it when it comes back is logged again
        state = self._files.pop(path, None)
        if state is not None:
            self._dirty.add(path)
            if state.last_error is not None:
                self._failure_log.forget(path + "\0" + state.last_error)
        if self._data.pop(path, _NO_DATA) is not _NO_DATA and self._merged is not None:
            self._merged.replace(path, ())

    def _visit(self, path: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._forget(path)
            return
        except OSError as exc:
            self._failed(path, str(exc), None, None, "io")
            return
        state = self._files.setdefault(path, _FileState())
        self._look(path, state, st)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if (state.signature == signature and state.up) or state.backed_off(signature):
            return
        self._dirty.add(path)
        try:  # the file is read elsewhere (RR's worker) by path: checked before, and again after
            self._containment.check(path)
            data = self._parse(path)
            self._containment.check(path)
        except OutsideRoots:
            self._failed(path, OUTSIDE_REASON, signature, None, OUTSIDE)
            return
        except ReadFailed as exc:
            self._failed(path, str(exc), signature, signature if exc.back_off else None, exc.failure)
            return
        families, problem = self._exportable(path, data)
        if problem:
            self._failed(path, problem, signature, None, None)
            return
        self._merge(path, families)
        self._data[path] = data
        state.signature, state.up, state.last_success_time, state.backoff = signature, True, time.time(), 0.0
        state.bytes += st.st_size

    def _look(self, path: str, state: _FileState, st: os.stat_result) -> None:
        """Notes what the file looks like now: news for its status when its size or time changed, or its last
        check is older than ``CHECK_RESOLUTION_SECONDS``."""
        now = time.time()
        if ((st.st_size, st.st_mtime) != (state.size, state.modified) or state.checked is None
                or now - state.checked >= CHECK_RESOLUTION_SECONDS):
            state.size, state.modified, state.checked = st.st_size, st.st_mtime, now
            self._dirty.add(path)

    def _file_families(self, path: str, data: Any) -> List[Metric]:
        self.families_made += 1
        return list(self._families({path: data}))

    def _exportable(self, path: str, data: Any) -> Tuple[List[Metric], Optional[str]]:
        """The families of one file's data, and why they cannot become metrics (None: they can); checked per
        file, so that it fails only that file."""
        try:
            families = self._file_families(path, data)
            _check_exportable(families)
        except Exception as exc:  # noqa: BLE001 - any shape error in the data
            return [], "the data of this file cannot be exported: %s: %s" % (type(exc).__name__, exc)
        return families, None

    def _merge(self, path: str, families: List[Metric]) -> None:
        """A file read anew replaces its rows in the merged families; one that cannot ends the merging."""
        merged = self._merged
        if merged is None:
            return
        if not merged.replace(path, families):
            self._merged = None
            log.warning("files give the same series, or families that cannot be joined file by file: the "
                        "reader now makes its families from all the files at each change",
                        extra=fields(kind=self.kind, path=path))

    def _failed(self, path: str, reason: str, version: Optional[Signature], harmful: Optional[Signature],
                failure: Optional[str]) -> None:
        """Marks the file down. ``version``: the signature of the file version read (None: its stat failed);
        ``harmful``: that of the version whose read harmed the reader; ``failure``: as in ``ReadFailed`` (None:
        a parse error).

        A failure is counted and logged once per incident: when the file goes down, its error changes or
        another version of it fails. Retries of the same version with the same error (every 2 s while it is
        down) are neither, so the counts and the log say how often something went wrong, and the error shown
        stays the cause."""
        self._dirty.add(path)
        state = self._files.setdefault(path, _FileState())
        reason = reason[:MAX_REASON_CHARS]
        if not state.up and state.last_error == reason and state.failed_on == version:
            if harmful is not None:
                state.back_off(harmful)
            return
        state.up, state.failed_on = False, version
        state.errors += 1
        if failure is None:
            state.parse_errors += 1
        else:
            state.read_failures[failure] += 1
        state.last_error = reason
        if harmful is not None:
            state.back_off(harmful)
        if failure != OUTSIDE:  # logged once by the containment
            self._failure_log.warning(path + "\0" + reason, "cannot read file; keeping its last good values",
                                      path=path, kind=self.kind, reason=reason,
                                      **({"retry_in_seconds": state.backoff} if harmful is not None else {}))

    def _snapshot(self) -> WholeFileSnapshot:
        """The files read, failed or gone since the last snapshot get new statuses, the others keep theirs;
        nothing changed: the last snapshot again."""
        if not self._dirty and self._last is not None:
            return self._last
        statuses, came_or_went = self._statuses, False
        for path in self._dirty:
            state = self._files.get(path)
            if state is None:
                came_or_went = statuses.pop(path, None) is not None or came_or_went
                continue
            came_or_went = came_or_went or path not in statuses
            statuses[path] = self._status(path, state)
        self._dirty.clear()
        if came_or_went:
            self._statuses = statuses = dict(sorted(statuses.items()))
        self._status_tuple = tuple(statuses.values())
        merged = self._merged.frozen() if self._merged is not None else None
        self._last = WholeFileSnapshot(files=self._status_tuple, data=MappingProxyType(dict(self._data)),
                                       merged=merged)
        return self._last

    def _status(self, path: str, s: _FileState) -> FileStatus:
        return FileStatus(kind=self.kind, path=path, up=s.up, last_success_time=s.last_success_time,
                          errors_total=s.errors, malformed_lines_total=0, bytes_read_total=s.bytes,
                          lines_read_total=0, last_error=None if s.up else s.last_error,
                          parse_errors_total=s.parse_errors, size_bytes=s.size, modified_time=s.modified,
                          last_check_time=s.checked,
                          read_failures=tuple((reason, s.read_failures[reason]) for reason
                                              in sorted(set(self._failure_reasons) | set(s.read_failures))))


_NO_DATA: Any = object()
_NO_ROWS: Rows[Any] = Rows((), (), ())
#: A file's error is kept up to this length: whole for an import error with every name and folder tried (about
#: 700 characters); the files failing for one cause share one string (a slice of a shorter one is the string).
MAX_REASON_CHARS = 2000


def _check_exportable(families: Sequence[Metric]) -> None:
    """Raises if ``families`` cannot be rendered. Families of rows are checked in C for what a render of them
    needs (each value a number a double holds, each label value text that UTF-8 encodes, as many label values
    as names): a tenth of the cost of rendering them, paid for every file read. Any other family is rendered."""
    plain = [family for family in families if isinstance(family, _ROWS)]
    if len(plain) != len(families):
        render_section(families)
        return
    for family in plain:
        rows = family.rows
        array.array("d", rows.sample_values)
        "".join(chain.from_iterable(rows.label_values)).encode("utf-8")
        if set(map(len, rows.label_values)) - {len(family.label_names)}:
            raise ValueError("%s: label values do not match the label names %s" % (family.name, family.label_names))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("-inf")
