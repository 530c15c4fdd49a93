"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``: set slots per user, project, app.

``getJobsByType`` takes 0..2 in the RR 8 reference and 1..3 on RR 9's page
(user, project, render app), and the two pages may disagree with the
installed module. So the lists are fetched by id, but every entry is put
under the dimension its own ``type`` field names:

- ids 1 and 2 (documented in both) are plain calls; the third id is a
  *risky* call, announced so a module that crashes on it is never asked
  again: 0 first on RR 8's shape, 3 first on RR 9's (a module with the
  ``_dailyStats_timeline`` class), the other one only when the first gave
  nothing and the entries say the lists are numbered that other way;
- the ``type`` values are 0-based when any entry says 0, 1-based when any
  says 3, otherwise numbered like the ids used;
- an entry whose ``type`` does not fit its list's id is counted as a failure
  of ``_jobStatDay.type`` (and put where its type says); one without a
  readable ``type`` goes where its list's id says; a name seen twice in one
  dimension is taken once.

The day a file describes is the local day of its modification time (the
file name pattern is not public).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, Calls, count, flag, local_midnight, sequence, text

CLASS = "_dailyStats_data"
DIMENSIONS = ("user", "project", "render_app")
SLOT_SECONDS = 900
RR8_IDS = (0, 1, 2)
RR9_IDS = (1, 2, 3)
#: (exported key, vendor field, scale)
FIELDS = (
    ("jobs_waiting", "jobsWaiting", 1), ("jobs_disabled", "jobsDisabled", 1), ("jobs_idle", "jobsIdle", 1),
    ("jobs_rendering", "jobsRendering", 1), ("jobs_done", "jobsDone", 1), ("ps_usage_average", "avPSUsage", 1),
    ("ps_usage_max", "maxPSUsage", 1), ("ps_needed", "PSneeded", 1), ("render_licenses_needed", "renderLicNeeded", 1),
    ("job_sends", "timesSended", 1), ("job_finishes", "timesFinished", 1), ("memory_average", "avMemUsageMB", MIB),
    ("memory_max", "maxMemUsageMB", MIB), ("frame_time_average", "avFrameTime", 1),
    ("frame_time_max", "maxFrameTime", 1), ("frames_rendered", "framesRendered", 1), ("frames_left", "framesLeft", 1),
)


def _slot_values(c: Calls, slot: Any, time: float) -> Dict[str, Any]:
    values: Dict[str, Any] = {"time": time}
    for key, name, scale in FIELDS:
        raw = c.value(slot, name)
        values[key] = None if raw is None else raw * scale
    return values


def _set_slots(c: Calls, entry: Any, day_start: float, newest_only: bool) -> List[Dict[str, Any]]:
    """The entry's set slots, newest first (only the newest when ``newest_only``)."""
    found = []
    for idx in range(c.call(entry, "timeSlotCount", expect=count) - 1, -1, -1):
        slot = c.call(entry, "getTimeSlot", idx)
        if c.value(slot, "slotSet", expect=flag):
            found.append(_slot_values(c, slot, day_start + idx * SLOT_SECONDS))
            if newest_only:
                break
    return found


def _fetch(c: Calls, stats: Any, type_id: int, risky: bool) -> Optional[list]:
    method = c.risky if risky else c.call
    return c.guarded(method, stats, "getJobsByType", type_id, expect=sequence)


def _types(c: Calls, lists: Dict[int, Optional[list]]) -> Dict[int, List[Optional[int]]]:
    return {type_id: [c.value(entry, "type", expect=count) for entry in entries or ()]
            for type_id, entries in lists.items()}


def _lists(c: Calls, stats: Any) -> Tuple[Tuple[int, ...], Dict[int, Optional[list]]]:
    """The ids of user, project and render app in this file, and the list each gave."""
    lists = {1: _fetch(c, stats, 1, False), 2: _fetch(c, stats, 2, False)}
    first, other = (3, 0) if hasattr(c.rr, "_dailyStats_timeline") else (0, 3)
    lists[first] = _fetch(c, stats, first, True)
    numbered_the_other_way = False
    if not lists[first]:
        # RR 8's ids give users of type 0 under id 0; RR 9's give them under id 1
        types_of_1 = set(_types(c, {1: lists[1]})[1])
        numbered_the_other_way = types_of_1 == {0} if other == 3 else bool(types_of_1) and types_of_1 <= {1}
        if numbered_the_other_way:
            lists[other] = _fetch(c, stats, other, True)
    used = other if numbered_the_other_way else first
    return (RR9_IDS if used == 3 else RR8_IDS), lists


def _dimension_of(type_value: Optional[int], type_base: int) -> Optional[str]:
    index = None if type_value is None else type_value - type_base
    return DIMENSIONS[index] if index is not None and 0 <= index < len(DIMENSIONS) else None


def _by_dimension(c: Calls, ids: Tuple[int, ...], lists: Dict[int, Optional[list]]) -> Dict[str, list]:
    """Every entry under the dimension its own type names (its list's id where it has none)."""
    types = _types(c, lists)
    seen = {t for values in types.values() for t in values if t is not None}
    type_base = 0 if 0 in seen else 1 if 3 in seen else ids[0]
    placed: Dict[str, list] = {dimension: [] for dimension in DIMENSIONS}
    for type_id, entries in lists.items():
        by_id = _dimension_of(type_id, ids[0])
        for entry, type_value in zip(entries or (), types[type_id]):
            by_type = _dimension_of(type_value, type_base)
            if by_type is not None and by_id is not None and by_type != by_id:
                c.failures.setdefault("_jobStatDay.type", "type %s listed under id %s" % (type_value, type_id))
            dimension = by_type or by_id
            if dimension is not None:
                placed[dimension].append(entry)
    return placed


def _entries(c: Calls, path: str) -> Tuple[List[Tuple[str, list]], float, Dict[str, Any]]:
    """(dimension, entries), the day's start, and sizes for rr-probe."""
    stats = c.load(CLASS, path, True)
    ids, lists = _lists(c, stats)
    sizes = {"jobTypeCount": c.guarded(c.call, stats, "jobTypeCount", expect=count),
             "entries_by_type_id": {str(i): (None if v is None else len(v)) for i, v in sorted(lists.items())},
             "type_ids_used": "0..2 (RR 8)" if ids == RR8_IDS else "1..3 (RR 9)"}
    placed = _by_dimension(c, ids, lists)
    return [(dimension, placed[dimension]) for dimension in DIMENSIONS], local_midnight(os.stat(path).st_mtime), sizes


def _named(c: Calls, entries: list, day_start: float, newest_only: bool) -> Dict[str, List[Dict[str, Any]]]:
    """Set slots per entry name; an entry whose name or slots cannot be read is left out."""
    named: Dict[str, List[Dict[str, Any]]] = {}
    for entry in entries:
        name = c.value(entry, "name", expect=text)
        if name is None or name in named:
            continue
        slots = c.guarded(_set_slots, c, entry, day_start, newest_only)
        if slots:
            named[name] = slots
    return named


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    dimensions, day_start, sizes = _entries(c, path)
    result: Dict[str, Any] = {"sizes": sizes}
    for dimension, entries in dimensions:
        result[dimension] = {name: slots[0] for name, slots in _named(c, entries, day_start, True).items()}
    return result


def history(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Every set slot of the day, per dimension and name, for backfill."""
    dimensions, day_start, _ = _entries(c, path)
    return {dimension: _named(c, entries, day_start, False) for dimension, entries in dimensions}
