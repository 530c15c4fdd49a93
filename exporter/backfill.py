"""``renderfarm-exporter backfill``: the statistics files' past as OpenMetrics for promtool.

Writes what ``promtool tsdb create-blocks-from openmetrics FILE DIR``
accepts: families sorted by name, each series' samples in time order with
their timestamps, no duplicate timestamp per series, ``# EOF``. Names and
labels are the live exporter's, so dashboards show history and live data as
one. Each source writes its own history through ``Source.history`` (Rush
replays ``cpu.acct`` and ``Ocpu.acct``; Royal Render reads the server stats
arrays and every daily stats file through the vendor's module).
"""

from __future__ import annotations

import calendar
import re
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

from prometheus_client.metrics_core import Metric

from exporter import containment
from exporter.config import Config
from exporter.sources import registered_sources

PROGRESS_SECONDS = 2.0
_RELATIVE = re.compile(r"^([0-9]+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: Optional[float] = None) -> float:
    """Unix seconds from ``2026-11-01``, ``2026-11-01T12:00:00Z``, Unix seconds, or ``30d`` (ago)."""
    now = time.time() if now is None else now
    match = _RELATIVE.match(text)
    if match:
        return now - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    for layout in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, layout)))
        except ValueError:
            continue
    raise ValueError("expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC), Unix seconds or an age like 30d, "
                     "got %r" % text)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class SampleStore:
    """Timestamped samples by family and series; the last value wins for a repeated timestamp."""

    def __init__(self, since: float, until: float):
        self.since, self.until = since, until
        self._families: Dict[str, Tuple[str, str]] = {}
        self._series: Dict[str, Dict[Tuple[str, Tuple[Tuple[str, str], ...]], Dict[float, float]]] = {}

    def add(self, when: float, families: Iterable[Metric]) -> None:
        if not self.since <= when <= self.until:
            return
        for family in families:
            self._families.setdefault(family.name, (family.type, family.documentation))
            series = self._series.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series.setdefault(key, {})[when] = sample.value

    def summary(self) -> Tuple[int, int, Optional[float], Optional[float]]:
        """(series, samples, first time, last time)."""
        points = [ts for by_series in self._series.values() for values in by_series.values() for ts in values]
        count = sum(len(by_series) for by_series in self._series.values())
        return count, len(points), (min(points) if points else None), (max(points) if points else None)

    def write(self, out: TextIO) -> None:
        for name in sorted(self._series):
            series = self._series[name]
            if not series:
                continue
            kind, doc = self._families[name]
            out.write("# TYPE %s %s\n# HELP %s %s\n" % (name, kind, name, _escape(doc)))
            for sample_name, labels in sorted(series):
                text = ",".join('%s="%s"' % (k, _escape(v)) for k, v in labels)
                prefix = "%s{%s}" % (sample_name, text) if text else sample_name
                for when, value in sorted(series[(sample_name, labels)].items()):
                    out.write("%s %r %r\n" % (prefix, float(value), float(when)))
        out.write("# EOF\n")


class Progress:
    """Rate-limited progress lines on stderr: share done, records (or files) done, rate, time left."""

    def __init__(self, what: str, err: TextIO):
        self._what, self._err = what, err
        self._started = self._last = time.monotonic()

    def __call__(self, done: float, total: float, records: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS or not total:
            return
        self._last = now
        elapsed = now - self._started
        rate = records / elapsed if elapsed else 0.0
        left = elapsed * (total - done) / done if done else 0.0
        self._err.write("%s: %.0f%% read, %d done, %.0f/s, about %.0f s left\n" % (
            self._what, 100.0 * done / total, records, rate, left))
        self._err.flush()


class _Sink:
    """The ``HistorySink`` a source's ``history`` writes to: the sample store, progress and notes on stderr."""

    def __init__(self, store: SampleStore, step: float, err: TextIO):
        self.step, self._store, self._err = step, store, err

    def add(self, when: float, families: Iterable[Metric]) -> None:
        self._store.add(when, families)

    def progress(self, what: str) -> Progress:
        return Progress(what, self._err)

    def note(self, line: str) -> None:
        self._err.write(line + "\n")


def with_history() -> List[str]:
    """The names of the installed sources that can write their history."""
    return [source.name for source in registered_sources() if source.history is not None]


def run(config: Config, output: str, since: float, until: float, sources: Sequence[str], step: float,
        strict: bool, err: TextIO = sys.stderr) -> int:
    """Writes the backfill file; 0 on success, 1 if inputs were skipped, 2 when ``strict`` stopped it."""
    containment.follow_outside(config.watch.follow_symlinks_outside)  # as the daemon reads them
    store = SampleStore(since, until)
    sink = _Sink(store, step, err)
    problems: List[str] = []
    for source in registered_sources():
        section = config.sources.get(source.name)
        if source.name not in sources or source.history is None or section is None:
            continue
        found = list(source.history(section, sink))
        if found and strict:
            err.write("backfill stopped (--strict): cannot read %s\n" % found[0])
            return 2
        problems += found
    with open(output, "w", encoding="utf-8") as out:
        store.write(out)
    series, samples, first, last = store.summary()
    span = "%s to %s" % (_utc(first), _utc(last)) if first is not None and last is not None else "no samples"
    err.write("wrote %s: %d series, %d samples, %s\n" % (output, series, samples, span))
    for problem in problems:
        err.write("skipped: %s\n" % problem)
    return 1 if problems else 0


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
