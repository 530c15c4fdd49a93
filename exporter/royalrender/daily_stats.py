"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``: each name's latest current slot.

For each user, project and render app: its latest set slot, stamped in
RR's zone (``times``) and exported only while current. Names are
unbounded, so each dimension has a ``budget.LabelBudget`` of
``series_budget`` series; later names are combined into ``__other__``.
How the dimensions, the day and the slot times are decided:
docs/royalrender.md.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple

from prometheus_client.metrics_core import Metric

from exporter.budget import OTHER, LabelBudget
from exporter.families import gauge
from exporter.royalrender.contract import Bound, Kind
from exporter.royalrender.times import NOT_A_TIME, Written, checked, current
from exporter.royalrender.vendor.daily_stats import DIMENSIONS, FIELDS
from exporter.schema import Field, Integer

STATES = ("waiting", "disabled", "idle", "rendering", "done")
SERIES_PER_NAME = 20
EXTRA_OPTIONS = {
    "series_budget": Field(Integer(minimum=SERIES_PER_NAME * 2), default=6000,
                           doc="most series per dimension (user, project, render app); the rest is __other__"),
}

_NOTE = " (from today's daily stats, latest current slot; cached between changes of the file)"
_PER_SLOT = (" during the slot that starts at royalrender_%s_slot_timestamp_seconds (15 min with 96 slots a day): "
             "a count per slot, not a running total")
#: a file whose newest slot would start this long after it was written describes the day before
_PREVIOUS_DAY_SECONDS = 12 * 3600
#: how ``__other__`` combines each value of the names past the budget (None: not exported for it)
_COMBINE = {
    "jobs_waiting": sum, "jobs_disabled": sum, "jobs_idle": sum, "jobs_rendering": sum, "jobs_done": sum,
    "ps_usage_average": None, "ps_usage_max": max, "ps_needed": sum, "render_licenses_needed": sum,
    "job_sends": sum, "job_finishes": sum, "memory_average": None, "memory_max": max,
    "frame_time_average": None, "frame_time_max": max, "frames_rendered": sum, "frames_left": sum,
}
assert set(_COMBINE) == {key for key, _, _ in FIELDS}, "every extracted value needs a rule for __other__"


def _day_start(data: Mapping[str, Any], written: Written) -> float:
    """Local midnight of the day the file describes: that of its modification time, unless its newest slot
    would then start half a day after the write (a file finished just after midnight)."""
    day = written.day_start()
    starts = [day + named["set"][0]["index"] * 86400.0 / named["slots"]
              for dimension in DIMENSIONS for named in data[dimension].values()]
    newest = written.unix(max(starts)) if starts else None
    return day - 86400 if newest is not None and newest > written.mtime + _PREVIOUS_DAY_SECONDS else day


def _timed(data: Mapping[str, Any], written: Written) -> Dict[str, Dict[str, List[Dict[str, Any]]]]:
    """Every set slot of every name with its start as Unix time, newest first."""
    day = _day_start(data, written)
    return {dimension: {name: [dict(slot, time=written.unix(day + slot["index"] * 86400.0 / named["slots"]),
                                    seconds=86400.0 / named["slots"]) for slot in named["set"]]
                        for name, named in data[dimension].items()}
            for dimension in DIMENSIONS}


def interpret(data: Mapping[str, Any], written: Written) -> Dict[str, Any]:
    """The worker's reply as each name's latest slot, names whose latest slot is not current left out."""
    timed = _timed(data, written)
    latest = {dimension: {name: slots[0] for name, slots in names.items()} for dimension, names in timed.items()}
    rows = [row for names in latest.values() for row in names.values()]
    newest = max((row for row in rows if row["time"] is not None), key=lambda row: row["time"], default=None)
    stated = NOT_A_TIME if newest is None and rows else None if newest is None else newest["time"]
    check = checked(stated, written, 0.0 if newest is None else newest["seconds"], False, "the newest set slot")
    current = {dimension: {name: row for name, row in names.items() if _current(row, written)}
               for dimension, names in latest.items()}
    withheld = sum(len(latest[d]) - len(current[d]) for d in DIMENSIONS)
    return dict(current, shape=data["shape"], check=dict(check, stale=withheld > 0))


def _current(row: Dict[str, Any], written: Written) -> bool:
    return current(row["time"], written.mtime, row["seconds"])


def interpret_history(data: Mapping[str, Any], written: Written) -> Dict[str, Any]:
    return _timed(data, written)


def history_families(data: Mapping[str, Dict[str, Any]],
                     options: Mapping[str, Any]) -> Iterable[Tuple[float, List[Metric]]]:
    """(time, families) for every slot time of every daily file, through one budget in time order."""
    by_time: Dict[float, Dict[str, Dict[str, Dict[str, Any]]]] = {}
    for stats in data.values():
        for dimension in DIMENSIONS:
            for name, slots in stats[dimension].items():
                for slot in slots:
                    if slot["time"] is not None:
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
    yield metric("job_sends", "job_sends", "Times a job was sent to a client" + _PER_SLOT % dimension)
    yield metric("job_finishes", "job_finishes", "Times a job finished" + _PER_SLOT % dimension)
    yield metric("memory_average_bytes", "memory_average", "Average memory usage")
    yield metric("memory_max_bytes", "memory_max", "Maximum memory usage")
    yield metric("frame_time_average_seconds", "frame_time_average", "Average frame time (RR's unit assumed to be "
                 "seconds; docs/royalrender.md says how to confirm it)")
    yield metric("frame_time_max_seconds", "frame_time_max", "Maximum frame time (RR's unit assumed to be seconds)")
    yield metric("frames_rendered", "frames_rendered", "Frames rendered" + _PER_SLOT % dimension)
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
    interpret=interpret,
    interpret_history=interpret_history,
)
