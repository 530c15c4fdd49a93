"""The exporter's own metrics (``renderfarm_exporter_*``): is each file read, and how.

Modelled on node_exporter's textfile collector: per file whether the last
read succeeded and when it last did, so users alert on ``up == 0`` or on
``time() - last_success_timestamp_seconds``.

A farm has thousands of files and a render pass follows every few changed
ones, so the per-file rows are kept (``FileRows``) and updated for the files
whose status changed: readers hand out a new ``FileStatus`` only for a file
they read, and the same tuple of statuses while none changed, so an
unchanged reader's files are passed over whole and the others' found
unchanged by identity, in C. A family whose content did not change is
handed out again as the same object (``_Kept``), which the section renderer
passes over without a look at its rows. A per-file metric is one entry of
``PER_FILE``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__, paths
from exporter.exposition import PlacedSection
from exporter.families import LiveRows, RowMetric, Rows, counter, gauge, label_value
from exporter.paths import PathPattern
from exporter.sources import READ_FAILURE_REASONS, FileStatus, changed_in_place
from exporter.status import CHECKPOINT_DISCARD_REASONS, ReloadStatus, RuntimeStatus, WatchStatus, matched_files


@dataclass(frozen=True)
class PerFile:
    """One per-file family (labels ``kind``, ``path``): a file's row holds ``value(status)``, none when None.

    A new per-file metric is one more entry of ``PER_FILE``: its rows are kept and updated like the others."""

    name: str
    doc: str
    make: Callable[[str, str, Sequence[str], Mapping], RowMetric]  # ``families.counter`` or ``families.gauge``
    value: Callable[[FileStatus], Optional[float]]


PER_FILE = (
    PerFile("renderfarm_exporter_source_up", "1 if the last read of the file succeeded", gauge,
            lambda status: int(status.up)),
    PerFile("renderfarm_exporter_source_last_success_timestamp_seconds", "When the file was last read successfully",
            gauge, attrgetter("last_success_time")),
    PerFile("renderfarm_exporter_source_parse_errors", "Reads of the file whose content was rejected (not loadable "
            "as a whole), once per incident (a retry of the same version with the same error is not counted "
            "again); the last good values are kept", counter, attrgetter("parse_errors_total")),
    PerFile("renderfarm_exporter_source_malformed_lines", "Lines of the file skipped as malformed", counter,
            attrgetter("malformed_lines_total")),
    PerFile("renderfarm_exporter_source_read_bytes", "Bytes consumed from the file", counter,
            attrgetter("bytes_read_total")),
    PerFile("renderfarm_exporter_source_read_lines", "Complete lines consumed from the file", counter,
            attrgetter("lines_read_total")),
    # What a file looked like at its last check, and its records dated ahead of the clock: they tell a host that
    # stopped writing from a reader that stopped reading. Not every reader gives them (None: no row).
    PerFile("renderfarm_exporter_source_size_bytes", "Size of the file at its last check", gauge,
            attrgetter("size_bytes")),
    PerFile("renderfarm_exporter_source_modified_timestamp_seconds",
            "Modification time of the file at its last check: still while its writer is silent", gauge,
            attrgetter("modified_time")),
    PerFile("renderfarm_exporter_source_unread_bytes", "Bytes of the file past what was read, at its last check (a "
            "tailed file); above 0 for long: the exporter is behind", gauge, attrgetter("unread_bytes")),
    PerFile("renderfarm_exporter_source_last_check_timestamp_seconds",
            "When the exporter last looked at the file (a read, or a read that failed); at least every "
            "watch.rescan_interval, so an old one means the exporter stopped reading it", gauge,
            attrgetter("last_check_time")),
    PerFile("renderfarm_exporter_source_records_ahead",
            "Records of the file dated more than the allowed skew (rush.max_clock_skew) ahead of this machine's "
            "clock, since the exporter started: counted, never taken as the latest", counter,
            attrgetter("records_ahead_total")),
    PerFile("renderfarm_exporter_source_clock_ahead_seconds",
            "How far the newest record of the file's last read with records was ahead of this machine's clock, "
            "when more than the allowed skew (rush.max_clock_skew); 0 otherwise", gauge,
            attrgetter("clock_ahead_seconds")),
)

FileKey = Tuple[str, str]


class FileRows:
    """The per-file rows of the exporter's metrics, updated for the files whose status is a new object.

    The files come in groups, one per reader (``RuntimeStatus.file_groups``): a group that is the same tuple
    as before is skipped whole, so a render after one Rush file changed does not look at 5,000 RR files."""

    def __init__(self) -> None:
        self._groups: Tuple[Tuple[FileStatus, ...], ...] = ()
        self._patterns: Tuple[Tuple[str, PathPattern], ...] = ()
        self.rows: Tuple[LiveRows[FileKey], ...] = tuple(LiveRows() for _ in PER_FILE)
        self.read_failures: LiveRows[Tuple[str, str, str]] = LiveRows()
        #: Why each file that is down is down, as a label value (only the down files: a few).
        self.errors: Dict[FileKey, str] = {}
        self.matched: Mapping[Tuple[str, str], int] = {}
        #: Whether two of the files have one (kind, path); the last of them then wins, as in a fresh mapping.
        self._duplicates = False

    def update(self, status: RuntimeStatus) -> None:
        """Takes in the files' statuses now; a file not among them any more loses its rows."""
        groups = status.file_groups or (status.files,)
        changed: Optional[Sequence[FileStatus]] = None if self._duplicates else _changed_groups(groups, self._groups)
        moved = changed is None
        if changed is None:
            before = {_key(f): f for f in chain.from_iterable(self._groups)}
            keys = {_key(f) for f in status.files}
            for gone in before.keys() - keys:
                self._forget(gone)
            self._duplicates = len(keys) != len(status.files)
            # files came or went (a first read published as it goes): the others' rows stay unless new objects
            changed = status.files if self._duplicates else [f for f in status.files if before.get(_key(f)) is not f]
        for file in changed:
            self._set(file)
        if moved or status.patterns != self._patterns:
            self.matched = {(kind, label_value(pattern)): count
                            for (kind, pattern), count in matched_files(status.patterns, status.files).items()}
        self._groups, self._patterns = groups, status.patterns

    def _set(self, status: FileStatus) -> None:
        key = _key(status)
        for per_file, rows in zip(PER_FILE, self.rows):
            value = per_file.value(status)
            if value is None:
                rows.discard(key)
            else:
                rows.set(key, value)
        failures = status.read_failures_by_reason()
        for reason, count in failures.items():
            self.read_failures.set((*key, reason), count)
        for reason in set(READ_FAILURE_REASONS) - set(failures):
            self.read_failures.discard((*key, reason))
        if status.up or not status.last_error:
            self.errors.pop(key, None)
        else:
            self.errors[key] = label_value(status.last_error)

    def _forget(self, key: FileKey) -> None:
        for rows in self.rows:
            rows.discard(key)
        for reason in READ_FAILURE_REASONS:
            self.read_failures.discard((*key, reason))
        self.errors.pop(key, None)


def _key(status: FileStatus) -> FileKey:
    """The file's labels: a path is a name from outside, made a valid label value (``families.label_value``)."""
    return status.kind, label_value(status.path)


def _changed_groups(groups: Sequence[Sequence[FileStatus]],
                    old: Sequence[Sequence[FileStatus]]) -> Optional[List[FileStatus]]:
    """The statuses that are new objects for the same files in the same places; None when files came, went or
    moved. A group that is the same object as before is passed over in constant time."""
    if len(groups) != len(old):
        return None
    changed: List[FileStatus] = []
    for group, was in zip(groups, old):
        if group is not was:
            at = changed_in_place(group, was)
            if at is None:
                return None
            changed += map(group.__getitem__, at)
    return changed


class _Kept:
    """Families handed out again, the same objects, while what they are made from is the same: the section
    renderer then passes them over by identity, without a look at their rows."""

    def __init__(self) -> None:
        self._made: Dict[str, Tuple[Any, Metric]] = {}

    def family(self, name: str, made_from: Any, make: Callable[[], Metric]) -> Metric:
        """``make()``, or the family it made last for ``name`` if ``made_from`` is that one's (rows by identity,
        small values by ``_alike``)."""
        kept = self._made.get(name)
        if kept is not None and (kept[0] is made_from or (
                not isinstance(made_from, Rows) and _alike(kept[0], made_from))):
            return kept[1]
        family = make()
        self._made[name] = (made_from, family)
        return family


def _alike(old: Any, new: Any) -> bool:
    """Whether two small values print alike: equal, and a mapping's values of the same types too (1 == 1.0 ==
    True, yet they print differently)."""
    if old != new:
        return False
    if isinstance(new, Mapping):
        return list(map(type, old.values())) == list(map(type, new.values())) and all(
            value != 0 or str(value) == str(old[key]) for key, value in new.items())  # 0.0 and -0.0
    return True


class SelfMetrics:
    """Makes the exporter's own families, keeping the per-file rows and unchanged families between calls."""

    def __init__(self) -> None:
        self._files = FileRows()
        self._kept = _Kept()

    def families(self, status: RuntimeStatus, sections: Mapping[str, PlacedSection]) -> List[Metric]:
        self._files.update(status)
        return list(_families(status, sections, self._files, self._kept))


def _families(status: RuntimeStatus, sections: Mapping[str, PlacedSection], files: FileRows,
              kept: _Kept) -> Iterable[Metric]:
    """The exporter's own families, the per-file ones from ``files`` (updated to ``status.files``); each one
    the object ``kept`` made before while its content is the same."""

    def made(make: Callable[..., Metric], name: str, doc: str, labels: Sequence[str], samples: Any) -> Metric:
        return kept.family(name, samples, lambda: make(name, doc, labels, samples))

    yield kept.family("renderfarm_exporter_build", (), lambda: InfoMetricFamily(
        "renderfarm_exporter_build",
        "Version of the exporter and of the Python running it",
        value={"version": __version__, "python_version": platform.python_version()},
    ))
    for per_file, rows in zip(PER_FILE, files.rows):
        yield made(per_file.make, per_file.name, per_file.doc, ["kind", "path"], rows.frozen())
    yield made(counter, "renderfarm_exporter_source_read_failures",
               "Reads of the file that failed for a reason other than its content: the reading helper crashed or "
               "timed out, an I/O error, the reader unavailable; once per incident (the retries of a file down "
               "with the same error are not counted again); the last good values are kept",
               ["kind", "path", "reason"], files.read_failures.frozen())
    errors = tuple(sorted(files.errors.items()))  # a copy: the mapping changes in place
    yield kept.family("renderfarm_exporter_source_error", errors, lambda: _error_info(errors))
    yield made(gauge, "renderfarm_exporter_pattern_matched_files",
               "Files each configured pattern matches now; 0 means a wrong path or an unmounted share",
               ["kind", "pattern"], files.matched)
    yield made(gauge, "renderfarm_exporter_pattern_match_limit_reached",
               "1 if the pattern's last scan matched more files than the limit (%d) and was cut there: only the "
               "first found are read" % paths.MAX_MATCHES, ["kind", "pattern"],
               {(kind, pattern.pattern): int(pattern.pattern in status.capped_patterns)
                for kind, pattern in status.patterns})
    yield made(counter, "renderfarm_exporter_reader_failures",
               "Unexpected errors of a file kind's reader (a bug: please report)", ["kind"], status.reader_failures)
    yield made(counter, "renderfarm_exporter_rescans", "Full rescans of every configured pattern", [],
               {(): status.rescans})
    yield made(counter, "renderfarm_exporter_watch_restarts",
               "Watches re-established after their folder or watcher thread went away", [],
               {(): status.watch_restarts})
    yield made(counter, "renderfarm_exporter_watch_overflows",
               "inotify queue overflows: events were lost; each burst costs one fresh watch and one rescan", [],
               {(): status.watch_overflows})
    yield made(counter, "renderfarm_exporter_checkpoint_writes", "Checkpoints written to --storage.path", [],
               {(): status.checkpoint_writes})
    yield made(counter, "renderfarm_exporter_checkpoint_write_failures",
               "Checkpoints that could not be written (a restart then reads more; never a wrong total)", [],
               {(): status.checkpoint_write_failures})
    yield made(counter, "renderfarm_exporter_checkpoint_discards",
               "Checkpoints discarded at a start, by reason (the files were read from the start instead): "
               "unreadable, corrupt, outdated (another version or configuration), invalid (content the "
               "exporter could not have written: forged or broken)", ["reason"],
               {reason: status.checkpoint_discarded.get(reason, 0) for reason in CHECKPOINT_DISCARD_REASONS})
    yield made(gauge, "renderfarm_exporter_checkpoint_restored_readers",
               "Readers of the source that started from a checkpoint (0: every file read from its start)",
               ["source"], status.checkpoint_restored)
    yield from _reload_families(status.reload, made)
    yield from _web_reload_families(status.web_reload, made)
    yield kept.family("renderfarm_exporter_watch", status.watches, lambda: _watch_info(status.watches))
    yield made(gauge, "renderfarm_exporter_watch_up", "1 if the folder is being watched now", ["directory"],
               {label_value(w.directory): int(w.up) for w in status.watches})
    yield made(gauge, "renderfarm_exporter_exposition_series", "Series in each exposition section at its last render",
               ["section"], {name: s.series for name, s in sections.items()})
    yield made(gauge, "renderfarm_exporter_exposition_render_seconds", "How long the last render of each section took",
               ["section"], {name: s.render_seconds for name, s in sections.items()})
    yield made(gauge, "renderfarm_exporter_exposition_dropped_series",
               "Series left out of each section's last render because they could not be rendered (a bug: please "
               "report it with the log); the rest of the section is served", ["section"],
               {name: sum(count for _, count in s.dropped) for name, s in sections.items()})


#: Makes a family of rows (``families.counter`` or ``gauge``), or hands out the one made before from equal samples.
Made = Callable[[Callable[..., Metric], str, str, Sequence[str], Any], Metric]


def _reload_families(reload: ReloadStatus, made: Made) -> Iterable[Metric]:
    yield made(gauge, "renderfarm_exporter_config_last_reload_successful",
                "1 if the last configuration reload succeeded (or none was tried); 0: the old config still runs",
                [], {(): int(reload.successful)})
    if reload.last_attempt_time is not None:
        yield made(gauge, "renderfarm_exporter_config_last_reload_attempt_timestamp_seconds",
                    "When a configuration reload was last tried", [], {(): reload.last_attempt_time})
    if reload.last_success_time is not None:
        yield made(gauge, "renderfarm_exporter_config_last_reload_success_timestamp_seconds",
                    "When the configuration was last loaded successfully (start-up or reload)", [],
                    {(): reload.last_success_time})
    yield made(counter, "renderfarm_exporter_config_reloads", "Configuration reloads tried, by result", ["result"],
                  {"success": reload.successes, "failure": reload.failures})


def _web_reload_families(reload: ReloadStatus, made: Made) -> Iterable[Metric]:
    yield made(gauge, "renderfarm_exporter_web_config_last_reload_successful",
                "1 if the last change of the web config file was loaded (or none was seen); 0: it was refused "
                "(invalid, or it would turn TLS or authentication off) and the previous settings stay",
                [], {(): int(reload.successful)})
    yield made(counter, "renderfarm_exporter_web_config_reloads", "Changes of the web config file (or files it names) "
                  "seen and tried", [], {(): reload.successes + reload.failures})
    yield made(counter, "renderfarm_exporter_web_config_reload_failures",
                  "Changes of the web config file refused; the previous settings stay", [], {(): reload.failures})


def _error_info(errors: Sequence[Tuple[FileKey, str]]) -> Metric:
    family = InfoMetricFamily("renderfarm_exporter_source_error",
                              "Why the file is down, as the status page says it (present only while it is down)",
                              labels=["kind", "path", "error"])
    for (kind, path), error in errors:
        family.add_metric([kind, path, error], {})
    return family


def _watch_info(watches: Sequence[WatchStatus]) -> Metric:
    family = InfoMetricFamily("renderfarm_exporter_watch", "How each watched folder is watched: events or poll",
                              labels=["directory", "mode", "fstype"])
    for w in sorted(watches, key=lambda w: w.directory):
        family.add_metric([label_value(w.directory), w.mode, w.fstype], {})
    return family
