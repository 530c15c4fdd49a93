"""The exporter's own metrics (``renderfarm_exporter_*``): is each file read, and how.

Modelled on node_exporter's textfile collector: per file whether the last
read succeeded and when it last did, so users alert on ``up == 0`` or on
``time() - last_success_timestamp_seconds``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Tuple

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.exposition import Section
from exporter.families import counter, gauge
from exporter.sources import FileStatus


@dataclass(frozen=True)
class WatchStatus:
    directory: str
    mode: str  # "events" or "poll"
    fstype: str
    up: bool


@dataclass(frozen=True)
class RuntimeStatus:
    """What the ingest side reports about itself, as one immutable value."""

    files: Tuple[FileStatus, ...]
    watches: Tuple[WatchStatus, ...]
    reader_failures: Mapping[str, int]
    rescans: int
    watch_restarts: int


def families(status: RuntimeStatus, sections: Mapping[str, Section]) -> Iterable[Metric]:
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
    yield counter("renderfarm_exporter_source_parse_errors", "Failed reads of the file; the last good values are kept",
                  ["kind", "path"], _per_file(files, "errors_total"))
    yield counter("renderfarm_exporter_source_malformed_lines", "Lines of the file skipped as malformed",
                  ["kind", "path"], _per_file(files, "malformed_lines_total"))
    yield counter("renderfarm_exporter_source_read_bytes", "Bytes consumed from the file",
                  ["kind", "path"], _per_file(files, "bytes_read_total"))
    yield counter("renderfarm_exporter_source_read_lines", "Complete lines consumed from the file",
                  ["kind", "path"], _per_file(files, "lines_read_total"))
    yield counter("renderfarm_exporter_reader_failures", "Unexpected errors of a file kind's reader (a bug: please report)",
                  ["kind"], status.reader_failures)
    yield counter("renderfarm_exporter_rescans", "Full rescans of every configured pattern", [], {(): status.rescans})
    yield counter("renderfarm_exporter_watch_restarts",
                  "Watches re-established after their folder or watcher thread went away", [],
                  {(): status.watch_restarts})
    yield _watch_info(status.watches)
    yield gauge("renderfarm_exporter_watch_up", "1 if the folder is being watched now", ["directory"],
                {w.directory: int(w.up) for w in status.watches})
    yield gauge("renderfarm_exporter_exposition_series", "Series in each exposition section at its last render",
                ["section"], {name: s.series for name, s in sections.items()})
    yield gauge("renderfarm_exporter_exposition_render_seconds", "How long the last render of each section took",
                ["section"], {name: s.render_seconds for name, s in sections.items()})


def _per_file(files: Sequence[FileStatus], attribute: str) -> Mapping[Tuple[str, str], float]:
    return {(f.kind, f.path): getattr(f, attribute) for f in files}


def _watch_info(watches: Sequence[WatchStatus]) -> Metric:
    family = InfoMetricFamily("renderfarm_exporter_watch", "How each watched folder is watched: events or poll",
                              labels=["directory", "mode", "fstype"])
    for w in sorted(watches, key=lambda w: w.directory):
        family.add_metric([w.directory, w.mode, w.fstype], {})
    return family
