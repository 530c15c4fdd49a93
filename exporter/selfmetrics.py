"""The exporter's own metrics (``renderfarm_exporter_*``): is each file read, and how.

Modelled on node_exporter's textfile collector: per file whether the last
read succeeded and when it last did, so users alert on ``up == 0`` or on
``time() - last_success_timestamp_seconds``.
"""

from __future__ import annotations

import platform
from typing import Iterable, Mapping, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.exposition import PlacedSection
from exporter.families import counter, gauge
from exporter.sources import FileStatus
from exporter.status import ReloadStatus, RuntimeStatus, WatchStatus, matched_files


def families(status: RuntimeStatus, sections: Mapping[str, PlacedSection]) -> Iterable[Metric]:
    files = status.files
    yield InfoMetricFamily(
        "renderfarm_exporter_build",
        "Version of the exporter and of the Python running it",
        value={"version": __version__, "python_version": platform.python_version()},
    )
    yield gauge("renderfarm_exporter_source_up", "1 if the last read of the file succeeded",
                ["kind", "path"], {k: int(v) for k, v in _per_file(files, "up").items()})
    yield gauge("renderfarm_exporter_source_last_success_timestamp_seconds",
                "When the file was last read successfully", ["kind", "path"],
                {(f.kind, f.path): f.last_success_time for f in files if f.last_success_time is not None})
    yield gauge("renderfarm_exporter_pattern_matched_files",
                "Files each configured pattern matches now; 0 means a wrong path or an unmounted share",
                ["kind", "pattern"], matched_files(status.patterns, files))
    yield counter("renderfarm_exporter_source_parse_errors",
                  "Reads of the file whose content was rejected (not loadable as a whole); the last good values are "
                  "kept", ["kind", "path"], _per_file(files, "parse_errors_total"))
    yield counter("renderfarm_exporter_source_read_failures",
                  "Reads of the file that failed for a reason other than its content: the reading helper crashed or "
                  "timed out, an I/O error, the reader unavailable; the last good values are kept",
                  ["kind", "path", "reason"],
                  {(f.kind, f.path, reason): n for f in files for reason, n in f.read_failures_by_reason().items()})
    yield counter("renderfarm_exporter_source_malformed_lines", "Lines of the file skipped as malformed",
                  ["kind", "path"], _per_file(files, "malformed_lines_total"))
    yield counter("renderfarm_exporter_source_read_bytes", "Bytes consumed from the file",
                  ["kind", "path"], _per_file(files, "bytes_read_total"))
    yield counter("renderfarm_exporter_source_read_lines", "Complete lines consumed from the file",
                  ["kind", "path"], _per_file(files, "lines_read_total"))
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
    yield gauge("renderfarm_exporter_checkpoint_restored_readers",
                "Readers of the source that started from a checkpoint (0: every file read from its start)",
                ["source"], status.checkpoint_restored)
    yield from _reload_families(status.reload)
    yield from _web_reload_families(status.web_reload)
    yield _watch_info(status.watches)
    yield gauge("renderfarm_exporter_watch_up", "1 if the folder is being watched now", ["directory"],
                {w.directory: int(w.up) for w in status.watches})
    yield gauge("renderfarm_exporter_exposition_series", "Series in each exposition section at its last render",
                ["section"], {name: s.series for name, s in sections.items()})
    yield gauge("renderfarm_exporter_exposition_render_seconds", "How long the last render of each section took",
                ["section"], {name: s.render_seconds for name, s in sections.items()})


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


def _per_file(files: Sequence[FileStatus], attribute: str) -> Mapping[Tuple[str, str], float]:
    return {(f.kind, f.path): getattr(f, attribute) for f in files}


def _watch_info(watches: Sequence[WatchStatus]) -> Metric:
    family = InfoMetricFamily("renderfarm_exporter_watch", "How each watched folder is watched: events or poll",
                              labels=["directory", "mode", "fstype"])
    for w in sorted(watches, key=lambda w: w.directory):
        family.add_metric([w.directory, w.mode, w.fstype], {})
    return family
