"""The exporter's own metrics (``renderfarm_exporter_*``): is each file read, and how.

Modelled on node_exporter's textfile collector: per file whether the last
read succeeded and when it last did, so users alert on ``up == 0`` or on
``time() - last_success_timestamp_seconds``.

A farm has thousands of files and a render pass follows every few changed
ones, so the per-file rows are kept (``FileRows``) and updated for the files
whose status changed: readers hand out a new ``FileStatus`` only for a file
they read, so the others are found unchanged by identity, in C.
"""

from __future__ import annotations

import platform
from itertools import compress
from operator import attrgetter, is_not
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__, paths
from exporter.exposition import PlacedSection
from exporter.families import LiveRows, counter, gauge, label_value
from exporter.paths import PathPattern
from exporter.sources import READ_FAILURE_REASONS, FileStatus
from exporter.status import CHECKPOINT_DISCARD_REASONS, ReloadStatus, RuntimeStatus, WatchStatus, matched_files


class FileRows:
    """The per-file rows of the exporter's metrics, updated for the files whose status is a new object."""

    def __init__(self) -> None:
        self._files: Tuple[FileStatus, ...] = ()
        self._patterns: Tuple[Tuple[str, PathPattern], ...] = ()
        self.up: LiveRows[Tuple[str, str]] = LiveRows()
        self.last_success: LiveRows[Tuple[str, str]] = LiveRows()
        self.parse_errors: LiveRows[Tuple[str, str]] = LiveRows()
        self.read_failures: LiveRows[Tuple[str, str, str]] = LiveRows()
        self.malformed_lines: LiveRows[Tuple[str, str]] = LiveRows()
        self.read_bytes: LiveRows[Tuple[str, str]] = LiveRows()
        self.read_lines: LiveRows[Tuple[str, str]] = LiveRows()
        #: The optional per-file readings (``_OPTIONAL``), each kept only for the files whose reader gives it.
        self.optional: Dict[str, LiveRows[Tuple[str, str]]] = {name: LiveRows() for name, _ in _OPTIONAL}
        #: Why each file that is down is down, as a label value (only the down files: a few).
        self.errors: Dict[Tuple[str, str], str] = {}
        self.matched: Mapping[Tuple[str, str], int] = {}
        #: Whether two of the files have one (kind, path); the last of them then wins, as in a fresh mapping.
        self._duplicates = False

    def update(self, files: Tuple[FileStatus, ...], patterns: Tuple[Tuple[str, PathPattern], ...]) -> None:
        """Takes in the files' statuses now; a file not among them any more loses its rows."""
        changed: Optional[Sequence[FileStatus]] = None if self._duplicates else _changed_in_place(files, self._files)
        moved = changed is None
        if changed is None:
            before = {_key(f): f for f in self._files}
            keys = {_key(f) for f in files}
            for gone in before.keys() - keys:
                self._forget(gone)
            self._duplicates = len(keys) != len(files)
            # files came or went (a first read published as it goes): the others' rows stay unless new objects
            changed = files if self._duplicates else [f for f in files if before.get(_key(f)) is not f]
        for status in changed:
            self._set(status)
        if moved or patterns != self._patterns:
            self.matched = {(kind, label_value(pattern)): count
                            for (kind, pattern), count in matched_files(patterns, files).items()}
        self._files, self._patterns = files, patterns

    def _set(self, status: FileStatus) -> None:
        key = _key(status)
        self.up.set(key, int(status.up))
        if status.last_success_time is None:
            self.last_success.discard(key)
        else:
            self.last_success.set(key, status.last_success_time)
        self.parse_errors.set(key, status.parse_errors_total)
        failures = status.read_failures_by_reason()
        for reason, count in failures.items():
            self.read_failures.set((*key, reason), count)
        for reason in set(READ_FAILURE_REASONS) - set(failures):
            self.read_failures.discard((*key, reason))
        self.malformed_lines.set(key, status.malformed_lines_total)
        self.read_bytes.set(key, status.bytes_read_total)
        self.read_lines.set(key, status.lines_read_total)
        if status.up or not status.last_error:
            self.errors.pop(key, None)
        else:
            self.errors[key] = label_value(status.last_error)
        for name, reading in _OPTIONAL:
            value = reading(status)
            if value is None:
                self.optional[name].discard(key)
            else:
                self.optional[name].set(key, value)

    def _forget(self, key: Tuple[str, str]) -> None:
        for rows in (self.up, self.last_success, self.parse_errors, self.malformed_lines, self.read_bytes,
                     self.read_lines):
            rows.discard(key)
        for reason in READ_FAILURE_REASONS:
            self.read_failures.discard((*key, reason))
        for rows in self.optional.values():
            rows.discard(key)
        self.errors.pop(key, None)


#: The per-file readings that not every reader gives (None: not given), by family name: what a file looked like
#: at its last check, and its records dated ahead of the clock.
_OPTIONAL: Tuple[Tuple[str, Callable[[FileStatus], Optional[float]]], ...] = (
    ("renderfarm_exporter_source_size_bytes", attrgetter("size_bytes")),
    ("renderfarm_exporter_source_modified_timestamp_seconds", attrgetter("modified_time")),
    ("renderfarm_exporter_source_unread_bytes", attrgetter("unread_bytes")),
    ("renderfarm_exporter_source_last_check_timestamp_seconds", attrgetter("last_check_time")),
    ("renderfarm_exporter_source_records_ahead", attrgetter("records_ahead_total")),
    ("renderfarm_exporter_source_clock_ahead_seconds", attrgetter("clock_ahead_seconds")),
)


def _key(status: FileStatus) -> Tuple[str, str]:
    """The file's labels: a path is a name from outside, made a valid label value (``families.label_value``)."""
    return status.kind, label_value(status.path)


def _changed_in_place(files: Sequence[FileStatus], old: Sequence[FileStatus]) -> Optional[List[FileStatus]]:
    """The statuses that are new objects for the same files in the same places (found in C); None when files
    came, went or moved."""
    if len(files) != len(old):
        return None
    at = list(compress(range(len(files)), map(is_not, files, old)))
    if any(_key(files[index]) != _key(old[index]) for index in at):
        return None
    return [files[index] for index in at]


class SelfMetrics:
    """Makes the exporter's own families, keeping the per-file rows between calls."""

    def __init__(self) -> None:
        self._files = FileRows()

    def families(self, status: RuntimeStatus, sections: Mapping[str, PlacedSection]) -> List[Metric]:
        self._files.update(status.files, status.patterns)
        return list(_families(status, sections, self._files))


def _families(status: RuntimeStatus, sections: Mapping[str, PlacedSection], files: FileRows) -> Iterable[Metric]:
    """The exporter's own families, the per-file ones from ``files`` (updated to ``status.files``)."""
    yield InfoMetricFamily(
        "renderfarm_exporter_build",
        "Version of the exporter and of the Python running it",
        value={"version": __version__, "python_version": platform.python_version()},
    )
    yield gauge("renderfarm_exporter_source_up", "1 if the last read of the file succeeded",
                ["kind", "path"], files.up.frozen())
    yield gauge("renderfarm_exporter_source_last_success_timestamp_seconds",
                "When the file was last read successfully", ["kind", "path"], files.last_success.frozen())
    yield gauge("renderfarm_exporter_pattern_matched_files",
                "Files each configured pattern matches now; 0 means a wrong path or an unmounted share",
                ["kind", "pattern"], files.matched)
    yield gauge("renderfarm_exporter_pattern_match_limit_reached",
                "1 if the pattern's last scan matched more files than the limit (%d) and was cut there: only the "
                "first found are read" % paths.MAX_MATCHES, ["kind", "pattern"],
                {(kind, pattern.pattern): int(pattern.pattern in status.capped_patterns)
                 for kind, pattern in status.patterns})
    yield counter("renderfarm_exporter_source_parse_errors",
                  "Reads of the file whose content was rejected (not loadable as a whole), once per incident (a "
                  "retry of the same version with the same error is not counted again); the last good values are "
                  "kept", ["kind", "path"], files.parse_errors.frozen())
    yield counter("renderfarm_exporter_source_read_failures",
                  "Reads of the file that failed for a reason other than its content: the reading helper crashed or "
                  "timed out, an I/O error, the reader unavailable; once per incident (the retries of a file down "
                  "with the same error are not counted again); the last good values are kept",
                  ["kind", "path", "reason"], files.read_failures.frozen())
    yield counter("renderfarm_exporter_source_malformed_lines", "Lines of the file skipped as malformed",
                  ["kind", "path"], files.malformed_lines.frozen())
    yield counter("renderfarm_exporter_source_read_bytes", "Bytes consumed from the file",
                  ["kind", "path"], files.read_bytes.frozen())
    yield counter("renderfarm_exporter_source_read_lines", "Complete lines consumed from the file",
                  ["kind", "path"], files.read_lines.frozen())
    yield from _optional_families(files)
    errors = InfoMetricFamily("renderfarm_exporter_source_error",
                              "Why the file is down, as the status page says it (present only while it is down)",
                              labels=["kind", "path", "error"])
    for (kind, path), error in sorted(files.errors.items()):
        errors.add_metric([kind, path, error], {})
    yield errors
    yield counter("renderfarm_exporter_reader_failures",
                  "Unexpected errors of a file kind's reader (a bug: please report)", ["kind"], status.reader_failures)
    yield counter("renderfarm_exporter_rescans", "Full rescans of every configured pattern", [], {(): status.rescans})
    yield counter("renderfarm_exporter_watch_restarts",
                  "Watches re-established after their folder or watcher thread went away", [],
                  {(): status.watch_restarts})
    yield counter("renderfarm_exporter_watch_overflows",
                  "inotify queue overflows: events were lost; each burst costs one fresh watch and one rescan", [],
                  {(): status.watch_overflows})
    yield counter("renderfarm_exporter_checkpoint_writes", "Checkpoints written to --storage.path", [],
                  {(): status.checkpoint_writes})
    yield counter("renderfarm_exporter_checkpoint_write_failures",
                  "Checkpoints that could not be written (a restart then reads more; never a wrong total)", [],
                  {(): status.checkpoint_write_failures})
    yield counter("renderfarm_exporter_checkpoint_discards",
                  "Checkpoints discarded at a start, by reason (the files were read from the start instead): "
                  "unreadable, corrupt, outdated (another version or configuration), invalid (content the "
                  "exporter could not have written: forged or broken)", ["reason"],
                  {reason: status.checkpoint_discarded.get(reason, 0) for reason in CHECKPOINT_DISCARD_REASONS})
    yield gauge("renderfarm_exporter_checkpoint_restored_readers",
                "Readers of the source that started from a checkpoint (0: every file read from its start)",
                ["source"], status.checkpoint_restored)
    yield from _reload_families(status.reload)
    yield from _web_reload_families(status.web_reload)
    yield _watch_info(status.watches)
    yield gauge("renderfarm_exporter_watch_up", "1 if the folder is being watched now", ["directory"],
                {label_value(w.directory): int(w.up) for w in status.watches})
    yield gauge("renderfarm_exporter_exposition_series", "Series in each exposition section at its last render",
                ["section"], {name: s.series for name, s in sections.items()})
    yield gauge("renderfarm_exporter_exposition_render_seconds", "How long the last render of each section took",
                ["section"], {name: s.render_seconds for name, s in sections.items()})
    yield gauge("renderfarm_exporter_exposition_dropped_series",
                "Series left out of each section's last render because they could not be rendered (a bug: please "
                "report it with the log); the rest of the section is served", ["section"],
                {name: sum(count for _, count in s.dropped) for name, s in sections.items()})


def _optional_families(files: FileRows) -> Iterable[Metric]:
    """The per-file readings that tell a host that stopped writing from a reader that stopped reading, and
    records dated ahead of the clock; a file has a row in those its reader gives."""
    rows = {name: rows.frozen() for name, rows in files.optional.items()}
    labels = ["kind", "path"]
    yield gauge("renderfarm_exporter_source_size_bytes", "Size of the file at its last check", labels,
                rows["renderfarm_exporter_source_size_bytes"])
    yield gauge("renderfarm_exporter_source_modified_timestamp_seconds",
                "Modification time of the file at its last check: still while its writer is silent", labels,
                rows["renderfarm_exporter_source_modified_timestamp_seconds"])
    yield gauge("renderfarm_exporter_source_unread_bytes",
                "Bytes of the file past what was read, at its last check (a tailed file); above 0 for long: the "
                "exporter is behind", labels, rows["renderfarm_exporter_source_unread_bytes"])
    yield gauge("renderfarm_exporter_source_last_check_timestamp_seconds",
                "When the exporter last looked at the file (a read, or a read that failed); at least every "
                "watch.rescan_interval, so an old one means the exporter stopped reading it", labels,
                rows["renderfarm_exporter_source_last_check_timestamp_seconds"])
    yield counter("renderfarm_exporter_source_records_ahead",
                  "Records of the file dated more than the allowed skew (rush.max_clock_skew) ahead of this "
                  "machine's clock, since the exporter started: counted, never taken as the latest", labels,
                  rows["renderfarm_exporter_source_records_ahead"])
    yield gauge("renderfarm_exporter_source_clock_ahead_seconds",
                "How far the newest record of the file's last read with records was ahead of this machine's "
                "clock, when more than the allowed skew (rush.max_clock_skew); 0 otherwise", labels,
                rows["renderfarm_exporter_source_clock_ahead_seconds"])


def _reload_families(reload: ReloadStatus) -> Iterable[Metric]:
    yield gauge("renderfarm_exporter_config_last_reload_successful",
                "1 if the last configuration reload succeeded (or none was tried); 0: the old config still runs",
                [], {(): int(reload.successful)})
    if reload.last_attempt_time is not None:
        yield gauge("renderfarm_exporter_config_last_reload_attempt_timestamp_seconds",
                    "When a configuration reload was last tried", [], {(): reload.last_attempt_time})
    if reload.last_success_time is not None:
        yield gauge("renderfarm_exporter_config_last_reload_success_timestamp_seconds",
                    "When the configuration was last loaded successfully (start-up or reload)", [],
                    {(): reload.last_success_time})
    yield counter("renderfarm_exporter_config_reloads", "Configuration reloads tried, by result", ["result"],
                  {"success": reload.successes, "failure": reload.failures})


def _web_reload_families(reload: ReloadStatus) -> Iterable[Metric]:
    yield gauge("renderfarm_exporter_web_config_last_reload_successful",
                "1 if the last change of the web config file was loaded (or none was seen); 0: it was refused "
                "(invalid, or it would turn TLS or authentication off) and the previous settings stay",
                [], {(): int(reload.successful)})
    yield counter("renderfarm_exporter_web_config_reloads", "Changes of the web config file (or files it names) "
                  "seen and tried", [], {(): reload.successes + reload.failures})
    yield counter("renderfarm_exporter_web_config_reload_failures",
                  "Changes of the web config file refused; the previous settings stay", [], {(): reload.failures})


def _watch_info(watches: Sequence[WatchStatus]) -> Metric:
    family = InfoMetricFamily("renderfarm_exporter_watch", "How each watched folder is watched: events or poll",
                              labels=["directory", "mode", "fstype"])
    for w in sorted(watches, key=lambda w: w.directory):
        family.add_metric([label_value(w.directory), w.mode, w.fstype], {})
    return family
