"""The landing page, built for triage: a summary, then the problems with their reasons, then everything.

No JavaScript and no external resources, so it works in any browser on a
locked-down network. The file list is filtered on the server from a plain
GET form (``?status=down&kind=...&q=...``). Built per request from the
status board's immutable ``RuntimeStatus``.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from exporter import __version__, paths
from exporter.exposition import PlacedSection
from exporter.families import label_value
from exporter.logs import one_line
from exporter.sources import FileStatus
from exporter.status import RuntimeStatus, WatchStatus, matched_files, running_as

_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;white-space:pre-line}"
    "th{background:#eee}"
    "caption{text-align:left;font-weight:bold;padding:.3em 0}"
    "td.down,td.bad{background:#fdd;font-weight:bold}td.up,td.good{background:#dfd}td.num{text-align:right}"
    "p.verdict{font-size:1.3em;font-weight:bold}p.verdict.bad{color:#a00}p.verdict.good{color:#060}"
    "form{margin:.5em 0}"
)
STATUS_CHOICES = ("all", "down", "up")


@dataclass(frozen=True)
class Filter:
    """Which files the page lists, from the query string."""

    status: str = "all"
    kind: str = ""
    text: str = ""

    @classmethod
    def parse(cls, query: str) -> Filter:
        params = urllib.parse.parse_qs(query)  # bounded by the request head's size limit

        def first(name: str) -> str:
            return params.get(name, [""])[0][:500]

        status = first("status")
        return cls(status if status in STATUS_CHOICES else "all", first("kind"), first("q"))

    def keeps(self, f: FileStatus) -> bool:
        return ((self.status == "all" or (self.status == "up") == f.up)
                and (not self.kind or f.kind == self.kind) and (not self.text or self.text in label_value(f.path)))


def _esc(value) -> str:
    """HTML-escaped, control characters shown as the log shows them (``\\x1b``), so that a folder name from a
    share cannot recolour the terminal of whoever reads the page with curl; the lines of a reason on several
    lines stay lines."""
    return html.escape("\n".join(one_line(line) for line in str(value).split("\n")))


def _name(name: str) -> str:
    """A file, folder or pattern name as its label value in the metrics (bytes that are not UTF-8 escaped), on
    one line."""
    return html.escape(one_line(label_value(name)))


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


def _bytes(count: Optional[int]) -> str:
    """A size as people read it ("" when the reader does not know it)."""
    if count is None:
        return ""
    if count < 1024:
        return "%d B" % count
    scaled, unit = next((count / 1024 ** power, unit) for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB"))
                        if count >= 1024 ** power)
    return "%.1f %s" % (scaled, unit)


_PERMISSION = ("Permission denied", "Operation not permitted")


def _reason(f: FileStatus, user: str) -> str:
    """Why the file is down; a permission error says who was refused."""
    reason = f.last_error or "(no reason recorded)"
    if any(text in reason for text in _PERMISSION):
        reason += " (the exporter runs as %s)" % user
    return reason


def _table(headers: Sequence[str], rows: Iterable[str], caption: str, table_id: str) -> str:
    head = "<tr>%s</tr>" % "".join("<th>%s</th>" % _esc(h) for h in headers) if headers else ""
    return "<table id='%s'><caption>%s</caption>%s%s</table>" % (table_id, _esc(caption), head, "".join(rows))


def _row(*cells: str, classes: Sequence[str] = ()) -> str:
    return "<tr>%s</tr>" % "".join("<td%s>%s</td>" % (" class='%s'" % c if c else "", cell)
                                   for cell, c in zip(cells, list(classes) + [""] * len(cells)))


def _unmatched(status: RuntimeStatus) -> List[Tuple[str, str]]:
    return sorted(key for key, count in matched_files(status.patterns, status.files).items() if count == 0)


def _reload_text(status: RuntimeStatus) -> Tuple[str, str]:
    reload = status.reload
    stuck = "; STUCK: %s" % reload.stuck if reload.stuck else ""
    if reload.last_attempt_time is None:
        return "none since start" + stuck, "bad" if stuck else ""
    warned = ", with %d warning%s (Configuration warnings)" % (len(reload.notices), "s"[:len(reload.notices) > 1]) \
        if reload.notices else ""
    verdict = ("successful" + warned if reload.successful else "FAILED (the previous configuration is still in "
               "use): %s" % (reload.last_error or "the log says why"))
    return "%s at %s (%d ok, %d failed)%s" % (verdict, _when(reload.last_attempt_time), reload.successes,
                                              reload.failures, stuck), "good" if reload.successful and not stuck \
        and not reload.notices else "bad"


def _degradations(status: RuntimeStatus) -> List[str]:
    """Summary rows of what degrades silently: configuration notices, checkpoints, watches, the web config."""
    notices = status.reload.notices
    unwatched = [w.directory for w in status.watches if not w.up]
    web = status.web_reload
    checkpoints = ("off: no --storage.path, a restart reads every file from its start" if not status.storage_path
                   else "FAILING in %s: %s; a restart will read more" % (status.storage_path, status.checkpoint_failing)
                   if status.checkpoint_failing else "in %s: %d written, %d failed since start"
                   % (status.storage_path, status.checkpoint_writes, status.checkpoint_write_failures))
    return [
        _row("Configuration warnings", _esc("%d%s" % (len(notices), ": " + "; ".join(notices) if notices else "")),
             classes=("", "bad" if notices else "good")),
        _row("Checkpoints", _esc(checkpoints), classes=("", "bad" if status.checkpoint_failing else "")),
        _row("Folders watched", _esc("%d of %d%s" % (len(status.watches) - len(unwatched), len(status.watches),
                                                     "; NOT WATCHED (changes seen only at rescans): " +
                                                     ", ".join(map(label_value, unwatched)) if unwatched else "")),
             classes=("", "bad" if unwatched else "good")),
        _row("Web config changes", _esc("last change REFUSED, the settings in force before stay: %s"
                                        % (web.last_error or "the log says why") if not web.successful
                                        else "%d applied" % web.successes),
             classes=("", "good" if web.successful else "bad")),
    ]


def _summary(status: RuntimeStatus, unmatched: List[Tuple[str, str]], config_path: Optional[str],
             ready: bool) -> str:
    down = [f for f in status.files if not f.up]
    warned = any(f.up and f.warning for f in status.files)
    healthy = (ready and not down and not warned and not unmatched and not status.capped_patterns
               and status.reload.successful and not status.reload.stuck and status.web_reload.successful
               and not status.reload.notices and not status.checkpoint_failing and all(w.up for w in status.watches))
    verdict = ("All files are read." if healthy else "Not ready: first read of the sources in progress."
               if not ready else "Needs attention: see Problems below.")
    reload_text, reload_class = _reload_text(status)
    rows = [
        _row("Files", "%d up, %d down" % (len(status.files) - len(down), len(down)),
             classes=("", "bad" if down else "good")),
        _row("Patterns matching no file", _esc(len(unmatched)), classes=("", "bad" if unmatched else "good")),
        _row("Last configuration reload", _esc(reload_text), classes=("", reload_class)),
        _row("Configuration file", _esc(config_path or "(none: demo or --once)")),
        _row("Runs as", _esc(running_as())),
    ] + _degradations(status) + [_row(_esc(what), _esc(value)) for what, value in status.notes]
    return ("<p class='verdict %s'>%s</p>" % ("good" if healthy else "bad", _esc(verdict))
            + _table([], rows, "Summary", "summary"))


def _problems(status: RuntimeStatus, unmatched: List[Tuple[str, str]], sections: Mapping[str, PlacedSection],
              now: float) -> str:
    user = running_as()
    ordered = sorted(status.files, key=lambda f: (f.kind, f.path))
    rows = [_row(_esc(f.kind), _name(f.path), "DOWN", _esc(_age(None if f.last_success_time is None
                                                             else now - f.last_success_time)),
                 _esc(f.errors_total), _esc(_reason(f, user)), classes=("", "", "down"))
            for f in ordered if not f.up]
    rows += [_row(_esc(f.kind), _name(f.path), "WARNING", _esc(_age(None if f.last_success_time is None
                                                                else now - f.last_success_time)),
                  "", _esc(f.warning), classes=("", "", "down")) for f in ordered if f.up and f.warning]
    rows += [_row(_esc(kind), _name(pattern), "NO FILE", "", "", "the pattern matches no file: a wrong path, or "
                  "a share that is not mounted", classes=("", "", "down")) for kind, pattern in unmatched]
    rows += [_row("exposition", _esc("%s: %s" % (section, family)), "LEFT OUT", "", _esc(count),
                  "%d series of this family cannot be rendered and are left out of the metrics; the log says why "
                  "(\"series left out of the exposition\"): please report it" % count, classes=("", "", "down"))
             for section, placed in sections.items() for family, count in placed.dropped]
    if not status.reload.successful:
        rows.append(_row("configuration", "", "REJECTED", "", _esc(status.reload.failures), _esc(
            "the last reload was rejected; the previous configuration is still in use: %s"
            % (status.reload.last_error or "the log says why (\"configuration reload failed\")")),
            classes=("", "", "down")))
    rows += [_row(_esc(kind), _esc(pattern.pattern), "LIMIT", "", "", _esc(
        "the pattern matches more than %d files: only the first found are read; narrow it" % paths.MAX_MATCHES),
        classes=("", "", "down")) for kind, pattern in status.patterns if pattern.pattern in status.capped_patterns]
    if status.reload.stuck:
        rows.append(_row("configuration", "", "STUCK", "", "", _esc("a reload is stuck past its deadline: %s"
                                                                   % status.reload.stuck), classes=("", "", "down")))
    if not status.web_reload.successful:
        rows.append(_row("web config", "", "REFUSED", "", _esc(status.web_reload.failures), _esc(
            "the last change of the web config file was not applied; the settings in force before it stay: %s"
            % (status.web_reload.last_error or "the log says why (\"web config change REFUSED\")")),
            classes=("", "", "down")))
    rows += _degradation_problems(status)
    if not rows:
        return "<p id='problems'>No problems.</p>"
    return _table(["Kind", "File or pattern", "Status", "Last good read", "Errors", "Reason"], rows,
                  "Problems (%d)" % len(rows), "problems")


def _degradation_problems(status: RuntimeStatus) -> List[str]:
    """Problem rows of configuration notices, failing checkpoint writes and folders not watched."""
    rows = [_row("configuration", "", "WARNING", "", "", _esc(notice + " (--check-config says the same)"),
                 classes=("", "", "down")) for notice in status.reload.notices]
    if status.checkpoint_failing:
        rows.append(_row("checkpoints", _name(status.storage_path), "FAILING", "",
                         _esc(status.checkpoint_write_failures), _esc(
                             "checkpoints cannot be written (%s): metrics are right, but a restart will read the "
                             "files again from older positions; free space or fix the folder's permissions (runbook: "
                             "docs/alerts.md#renderfarmexportercheckpointwritesfailing)"
                             % status.checkpoint_failing), classes=("", "", "down")))
    rows += [_row("watch", _name(w.directory), "NOT WATCHED", "", "", "changes are seen only at rescans (every "
                  "watch.rescan_interval); the folder is missing or cannot be watched: the log says why (runbook: "
                  "docs/alerts.md#renderfarmexporterfoldernotwatched)",
                  classes=("", "", "down")) for w in status.watches if not w.up]
    return rows


def _filter_form(status: RuntimeStatus, chosen: Filter) -> str:
    kinds = sorted({f.kind for f in status.files})
    status_options = "".join("<option%s>%s</option>" % (" selected" if s == chosen.status else "", s)
                             for s in STATUS_CHOICES)
    kind_options = "<option value=''>every kind</option>" + "".join(
        "<option%s>%s</option>" % (" selected" if k == chosen.kind else "", _esc(k)) for k in kinds)
    return ("<form method='get' action='/'>Show <select name='status'>%s</select> files of "
            "<select name='kind'>%s</select> whose path contains <input name='q' value='%s'> "
            "<button type='submit'>Filter</button></form>" % (status_options, kind_options, _esc(chosen.text)))


def _files(status: RuntimeStatus, chosen: Filter, now: float) -> str:
    shown = [f for f in sorted(status.files, key=lambda f: (f.up, f.kind, f.path)) if chosen.keeps(f)]
    rows = [_row(_esc(f.kind), _name(f.path), "up" if f.up else "DOWN", _esc(_when(f.last_success_time)),
                 _esc(_age(None if f.last_success_time is None else now - f.last_success_time)),
                 _esc(f.errors_total), _esc(f.malformed_lines_total), _esc(_watch_of(f.path, status.watches)),
                 _esc(_bytes(f.size_bytes)), _esc(_when(f.modified_time) if f.modified_time is not None else ""),
                 _esc(_bytes(f.unread_bytes)),
                 _esc(_age(None if f.last_check_time is None else now - f.last_check_time) + " ago"
                      if f.last_check_time is not None else ""),
                 classes=("", "", "up" if f.up else "down", "", "num", "num", "num", "", "num", "",
                          "num bad" if f.unread_bytes else "num", "num"))
            for f in shown]
    if not rows:
        rows.append("<tr><td colspan='12'>%s</td></tr>" % ("No statistics files found yet." if not status.files
                                                           else "No file matches the filter."))
    return _filter_form(status, chosen) + _table(
        ["Kind", "File", "Status", "Last successful read", "Age", "Errors", "Malformed lines", "Watch", "Size",
         "Modified", "Unread", "Last check"], rows,
        "Files (%d of %d)" % (len(shown), len(status.files)), "files")


def render(status: RuntimeStatus, sections: Mapping[str, PlacedSection], telemetry_path: str, ready: bool,
           config_path: Optional[str] = None, query: str = "", now: Optional[float] = None) -> bytes:
    now = time.time() if now is None else now
    unmatched = _unmatched(status)  # matching every file against every pattern: once per page
    section_rows = [_row(_esc(name), "%d" % s.series, "%d" % sum(count for _, count in s.dropped),
                         "%.1f ms" % (1000 * s.render_seconds),
                         classes=("", "num", "num bad" if s.dropped else "num", "num")) for name, s in sections.items()]
    body = (
        "<h1>renderfarm-exporter</h1><p>Version %s. <a href='%s'>Metrics</a> · <a href='/-/healthy'>Health</a> · "
        "<a href='/-/ready'>Readiness</a></p>" % (_esc(__version__), _esc(telemetry_path))
        + _summary(status, unmatched, config_path, ready)
        + _problems(status, unmatched, sections, now)
        + _files(status, Filter.parse(query), now)
        + _table(["Section", "Series", "Left out", "Last render"], section_rows, "Exposition", "exposition")
    )
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>renderfarm-exporter</title>"
            "<style>%s</style></head><body>%s</body></html>\n" % (_STYLE, body)).encode("utf-8", "backslashreplace")
