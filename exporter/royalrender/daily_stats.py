"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``.

For each user, project and render app: its latest set 15-minute slot
(``slotSet``). The file name pattern is not public, so the newest file
matched by the configured glob is read, and the day it describes is the
local day of its modification time (in ``royalrender.timezone``). How the
type ids of RR 8 and RR 9 are told apart: ``vendor.daily_stats``.

Names are unbounded, so each dimension has a ``budget.LabelBudget`` of
``series_budget`` series: a name keeps its series from the first read that
saw it while there was room, and later names are combined into
``__other__`` (averages are not exported for it). Names first seen in the
same read are offered most recently active first (their latest slot), then
by name.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple

from prometheus_client.metrics_core import Metric

from exporter.budget import OTHER, LabelBudget
from exporter.families import gauge
from exporter.royalrender.contract import Bound, Kind
from exporter.royalrender.vendor.daily_stats import DIMENSIONS, FIELDS
from exporter.schema import Field, Integer

STATES = ("waiting", "disabled", "idle", "rendering", "done")
SERIES_PER_NAME = 20
EXTRA_OPTIONS = {
    "series_budget": Field(Integer(minimum=SERIES_PER_NAME * 2), default=6000,
                           doc="most series per dimension (user, project, render app); the rest is __other__"),
}

_NOTE = " (from today's daily stats, latest set 15-minute slot; cached between changes of the file)"
#: how ``__other__`` combines each value of the names past the budget (None: not exported for it)
_COMBINE = {
    "jobs_waiting": sum, "jobs_disabled": sum, "jobs_idle": sum, "jobs_rendering": sum, "jobs_done": sum,
    "ps_usage_average": None, "ps_usage_max": max, "ps_needed": sum, "render_licenses_needed": sum,
    "job_sends": sum, "job_finishes": sum, "memory_average": None, "memory_max": max,
    "frame_time_average": None, "frame_time_max": max, "frames_rendered": sum, "frames_left": sum,
}
assert set(_COMBINE) == {key for key, _, _ in FIELDS}, "every extracted value needs a rule for __other__"


def history_families(data: Mapping[str, Dict[str, Any]],
                     options: Mapping[str, Any]) -> Iterable[Tuple[float, List[Metric]]]:
    """(time, families) for every slot time of every daily file, through one budget in time order."""
    by_time: Dict[float, Dict[str, Dict[str, Dict[str, Any]]]] = {}
    for stats in data.values():
        for dimension in DIMENSIONS:
            for name, slots in stats[dimension].items():
                for slot in slots:
                    by_time.setdefault(slot["time"], {d: {} for d in DIMENSIONS})[dimension][name] = slot
    bound = bounded(options)
    for when in sorted(by_time):
        yield when, [f for dimension, rows in bound(by_time[when]).items()
                     for f in _dimension_families(dimension, rows)
                     if not f.name.endswith("_slot_timestamp_seconds")]


def bounded(options: Mapping[str, Any]) -> Bound:
    """One budget per dimension for a reader's life; applied to each file's data as it is read."""
    budgets = {dimension: LabelBudget(options["series_budget"], SERIES_PER_NAME) for dimension in DIMENSIONS}

    def bound(stats: Mapping[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
        return dict(stats, **{dimension: _within(budgets[dimension], stats[dimension]) for dimension in DIMENSIONS})

    return bound


def _within(budget: LabelBudget, rows: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The admitted names' rows, and one ``__other__`` row combining the rest (``_COMBINE``)."""
    kept: Dict[str, Dict[str, Any]] = {}
    rest: List[Dict[str, Any]] = []
    for name in sorted(rows, key=lambda name: (-(rows[name]["time"] or 0), name)):
        if budget.admits(name):
            kept[name] = rows[name]
        else:
            rest.append(rows[name])
    if rest:
        other: Dict[str, Any] = {"time": max(r["time"] or 0 for r in rest)}
        for key, combine in _COMBINE.items():
            values = [r[key] for r in rest if r.get(key) is not None]
            other[key] = combine(values) if combine and values else None
        kept[OTHER] = other
    return kept


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    """The families of data the reader has already passed through ``bounded``."""
    for stats in data.values():  # select="newest": one file
        for dimension in DIMENSIONS:
            yield from _dimension_families(dimension, stats[dimension])


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


KIND = Kind(
    name="daily_stats",
    vendor_class="_dailyStats_data",
    default_path="sub/stats/server/*",
    select="newest",
    families=families,
    extra_options=EXTRA_OPTIONS,
    bounded=bounded,
    history_families=history_families,
)
