"""The landing page: links, and how every source and file is doing, in plain HTML.

No JavaScript and no external resources, so it works in any browser on a
locked-down network. Built per request from the runtime's immutable status.
"""

from __future__ import annotations

import html
import time
from typing import Iterable, Mapping, Optional, Sequence

from exporter import __version__
from exporter.exposition import PlacedSection
from exporter.selfmetrics import RuntimeStatus, WatchStatus

_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#eee}"
    "td.down{background:#fdd;font-weight:bold}td.up{background:#dfd}td.num{text-align:right}"
)


def _esc(value) -> str:
    return html.escape(str(value))


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%.1f h" % (seconds / 3600)


def _when(unix: Optional[float]) -> str:
    return "never" if unix is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix))


def _watch_of(path: str, watches: Sequence[WatchStatus]) -> str:
    """How the folder holding ``path`` is watched (the deepest watched folder containing it)."""
    best: Optional[WatchStatus] = None
    for watch in watches:
        if path.startswith(watch.directory.rstrip("/") + "/") and (
                best is None or len(watch.directory) > len(best.directory)):
            best = watch
    if best is None:
        return "rescan only"
    mode = "polling" if best.mode == "poll" else "events"
    return mode if best.up else mode + " (not watched now)"


def _table(headers: Iterable[str], rows: Iterable[str], caption: str) -> str:
    head = "".join("<th>%s</th>" % _esc(h) for h in headers)
    return "<table><caption>%s</caption><tr>%s</tr>%s</table>" % (_esc(caption), head, "".join(rows))


def render(status: RuntimeStatus, sections: Mapping[str, PlacedSection], telemetry_path: str, ready: bool,
           now: Optional[float] = None) -> bytes:
    now = time.time() if now is None else now
    section_rows = [
        "<tr><td>%s</td><td class='num'>%d</td><td class='num'>%.1f ms</td></tr>"
        % (_esc(name), s.series, 1000 * s.render_seconds) for name, s in sections.items()
    ]
    file_rows = []
    for f in sorted(status.files, key=lambda f: (f.kind, f.path)):
        age = None if f.last_success_time is None else now - f.last_success_time
        file_rows.append(
            "<tr><td>%s</td><td>%s</td><td class='%s'>%s</td><td>%s</td><td class='num'>%s</td>"
            "<td class='num'>%d</td><td class='num'>%d</td><td>%s</td></tr>" % (
                _esc(f.kind), _esc(f.path), "up" if f.up else "down", "up" if f.up else "DOWN",
                _esc(_when(f.last_success_time)), _esc(_age(age)), f.errors_total, f.malformed_lines_total,
                _esc(_watch_of(f.path, status.watches))))
    if not file_rows:
        file_rows.append("<tr><td colspan='8'>No statistics files found yet.</td></tr>")
    note_rows = ["<tr><td>%s</td><td>%s</td></tr>" % (_esc(what), _esc(value)) for what, value in status.notes]
    path = _esc(telemetry_path)
    body = (
        "<h1>renderfarm-exporter</h1><p>Version %s. %s</p>"
        "<ul><li><a href='%s'>Metrics</a></li><li><a href='/-/healthy'>Health</a></li>"
        "<li><a href='/-/ready'>Readiness</a></li></ul>" % (
            _esc(__version__), "Ready." if ready else "Not ready: first read of the sources in progress.",
            path, )
        + (_table(["Setting", "Value"], note_rows, "Sources") if note_rows else "")
        + _table(["Section", "Series", "Last render"], section_rows, "Exposition")
        + _table(["Kind", "File", "Status", "Last successful read", "Age", "Errors", "Malformed lines", "Watch"],
                 file_rows, "Statistics files")
    )
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>renderfarm-exporter</title>"
            "<style>%s</style></head><body>%s</body></html>\n" % (_STYLE, body)).encode()
