"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``.

For each user, project and render app: its latest set 15-minute slot
(``slotSet``). The file name pattern is not public, so the newest file
matched by the configured glob is read, and the day it describes is the
local day of its modification time. ``getJobsByType`` ids are 0..2 in RR 8
and 1..3 in RR 9: every job has a user, so ids 0..2 are taken when id 0
returns entries.

Names are unbounded: past ``series_budget`` a dimension's further names are
summed into ``__other__`` (averages are not exported for it).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping

from prometheus_client.metrics_core import Metric

from exporter.budget import OTHER
from exporter.families import gauge
from exporter.royalrender.access import MIB, load, local_midnight
from exporter.schema import Field, Integer

NAME = "daily_stats"
VENDOR_CLASS = "_dailyStats_data"
DEFAULT_PATH = "sub/stats/server/*"
SELECT = "newest"
DIMENSIONS = ("user", "project", "render_app")
STATES = ("waiting", "disabled", "idle", "rendering", "done")
SERIES_PER_NAME = 20
EXTRA_OPTIONS = {
    "series_budget": Field(Integer(minimum=SERIES_PER_NAME * 2), default=6000,
                           doc="most series per dimension (user, project, render app); the rest is __other__"),
}
SLOT_SECONDS = 900

_NOTE = " (from today's daily stats, latest set 15-minute slot; cached between changes of the file)"
#: (exported key, vendor field, scale, how __other__ combines it)
_FIELDS = (
    ("jobs_waiting", "jobsWaiting", 1, sum), ("jobs_disabled", "jobsDisabled", 1, sum),
    ("jobs_idle", "jobsIdle", 1, sum), ("jobs_rendering", "jobsRendering", 1, sum),
    ("jobs_done", "jobsDone", 1, sum), ("ps_usage_average", "avPSUsage", 1, None),
    ("ps_usage_max", "maxPSUsage", 1, max), ("ps_needed", "PSneeded", 1, sum),
    ("render_licenses_needed", "renderLicNeeded", 1, sum), ("job_sends", "timesSended", 1, sum),
    ("job_finishes", "timesFinished", 1, sum), ("memory_average", "avMemUsageMB", MIB, None),
    ("memory_max", "maxMemUsageMB", MIB, max), ("frame_time_average", "avFrameTime", 1, None),
    ("frame_time_max", "maxFrameTime", 1, max), ("frames_rendered", "framesRendered", 1, sum),
    ("frames_left", "framesLeft", 1, sum),
)


def _slot_values(slot, time: float) -> Dict[str, Any]:
    values: Dict[str, Any] = {"time": time}
    for key, name, scale, _ in _FIELDS:
        raw = getattr(slot, name, None)
        values[key] = None if raw is None else raw * scale
    return values


def _set_slots(entry, day_start: float, newest_only: bool) -> List[Dict[str, Any]]:
    """The entry's set slots, newest first (only the newest when ``newest_only``)."""
    found = []
    for idx in range(entry.timeSlotCount() - 1, -1, -1):
        slot = entry.getTimeSlot(idx)
        if slot.slotSet:
            found.append(_slot_values(slot, day_start + idx * SLOT_SECONDS))
            if newest_only:
                break
    return found


def _entries(rr, path: str):
    """(dimension, entries) with RR 8's or RR 9's type ids, the day's start, and sizes for rr-probe."""
    stats = load(rr, VENDOR_CLASS, path, True)
    lists = {type_id: list(stats.getJobsByType(type_id)) for type_id in range(4)}
    first = 0 if lists[0] else 1
    sizes = {"jobTypeCount": stats.jobTypeCount(), "entries_by_type_id": {str(i): len(lists[i]) for i in lists},
             "type_ids_used": "0..2 (RR 8)" if first == 0 else "1..3 (RR 9)"}
    dimensions = [(dimension, lists[first + offset]) for offset, dimension in enumerate(DIMENSIONS)]
    return dimensions, local_midnight(os.stat(path).st_mtime), sizes


def extract(rr, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    dimensions, day_start, sizes = _entries(rr, path)
    result: Dict[str, Any] = {"sizes": sizes}
    for dimension, entries in dimensions:
        latest = {str(entry.name): _set_slots(entry, day_start, newest_only=True) for entry in entries}
        result[dimension] = {name: slots[0] for name, slots in latest.items() if slots}
    return result


def history(rr, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Every set slot of the day, per dimension and name, for backfill."""
    dimensions, day_start, _ = _entries(rr, path)
    return {dimension: {str(entry.name): _set_slots(entry, day_start, newest_only=False) for entry in entries}
            for dimension, entries in dimensions}


def history_families(data: Mapping[str, Dict[str, Any]], options: Dict[str, Any]) -> Iterable:
    """(time, families) for every slot time of every daily file."""
    by_time: Dict[float, Dict[str, Dict[str, Dict[str, Any]]]] = {}
    for stats in data.values():
        for dimension in DIMENSIONS:
            for name, slots in stats[dimension].items():
                for slot in slots:
                    by_time.setdefault(slot["time"], {d: {} for d in DIMENSIONS})[dimension][name] = slot
    for when in sorted(by_time):
        yield when, [f for dimension in DIMENSIONS
                     for f in _dimension_families(dimension, _within_budget(by_time[when][dimension],
                                                                             options["series_budget"]))
                     if not f.name.endswith("_slot_timestamp_seconds")]


def _within_budget(rows: Dict[str, Dict[str, Any]], budget: int) -> Dict[str, Dict[str, Any]]:
    capacity = max(0, budget // SERIES_PER_NAME - 1)
    names = sorted(rows)
    kept = {name: rows[name] for name in names[:capacity]}
    rest = [rows[name] for name in names[capacity:]]
    if rest:
        other: Dict[str, Any] = {"time": max(r["time"] for r in rest)}
        for key, _, _, combine in _FIELDS:
            values = [r[key] for r in rest if r.get(key) is not None]
            other[key] = combine(values) if combine and values else None
        kept[OTHER] = other
    return kept


def families(data: Mapping[str, Dict[str, Any]], options: Dict[str, Any]) -> Iterable[Metric]:
    for stats in data.values():  # SELECT = newest: one file
        for dimension in DIMENSIONS:
            yield from _dimension_families(dimension, _within_budget(stats[dimension], options["series_budget"]))


def _values(rows: Dict[str, Dict[str, Any]], key: str) -> Dict[str, Any]:
    return {name: row[key] for name, row in rows.items() if row.get(key) is not None}


def _dimension_families(dimension: str, rows: Dict[str, Dict[str, Any]]) -> Iterable[Metric]:
    prefix = "royalrender_%s_" % dimension
    label = [dimension]

    def metric(suffix: str, key: str, doc: str) -> Metric:
        return gauge(prefix + suffix, doc + _NOTE, label, _values(rows, key))

    yield gauge(prefix + "jobs", "Jobs by state" + _NOTE, label + ["state"],
                {(name, state): row["jobs_" + state] for name, row in rows.items() for state in STATES
                 if row.get("jobs_" + state) is not None})
    yield metric("ps_usage_average", "ps_usage_average", "Average PS usage")
    yield metric("ps_usage_max", "ps_usage_max", "Maximum PS usage")
    yield metric("ps_needed", "ps_needed", "Estimated PS needed for all unassigned segments")
    yield metric("render_licenses_needed", "render_licenses_needed", "Estimated render licenses needed")
    yield metric("job_sends", "job_sends", "Times a job was sent to a client in the slot")
    yield metric("job_finishes", "job_finishes", "Times a job finished in the slot")
    yield metric("memory_average_bytes", "memory_average", "Average memory usage")
    yield metric("memory_max_bytes", "memory_max", "Maximum memory usage")
    yield metric("frame_time_average_seconds", "frame_time_average", "Average frame time")
    yield metric("frame_time_max_seconds", "frame_time_max", "Maximum frame time")
    yield metric("frames_rendered", "frames_rendered", "Frames rendered in the 15-minute slot")
    yield metric("frames_left", "frames_left", "Frames left to render")
    yield metric("slot_timestamp_seconds", "time", "Start of the slot the values are from")
