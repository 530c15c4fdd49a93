"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``: set slots per user, project, app.

``getJobsByType`` takes 0..2 in the RR 8 reference and 1..3 on RR 9's page
(user, project, render app). Only ids documented for the detected shape
are called:

- a module with RR 9's ``_dailyStats_timeline`` class: ids 1..3;
- otherwise the reference's ids 0..2; when id 0 gives nothing while the
  entries of ids 1 and 2 say by their own ``type`` field that they are users
  and projects (type = id - 1), the file is numbered 1..3, and id 3 (render
  apps) is called as a risky call, so a module that crashes on it is not
  asked again.

The day a file describes is the local day of its modification time (the
file name pattern is not public).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def _types(c: Calls, entries: Optional[Sequence[Any]]) -> set:
    return {c.value(entry, "type", expect=count) for entry in entries or ()}


def _type_ids(c: Calls, stats: Any) -> Tuple[Tuple[int, ...], Dict[int, Optional[list]]]:
    """The ids of user, project and render app in this file, and the lists fetched so far."""
    def fetch(type_id: int, risky: bool = False) -> Optional[list]:
        method = c.risky if risky else c.call
        return c.guarded(method, stats, "getJobsByType", type_id, expect=sequence)

    if hasattr(c.rr, "_dailyStats_timeline"):
        return RR9_IDS, {i: fetch(i) for i in RR9_IDS}
    lists = {i: fetch(i) for i in RR8_IDS}
    if not lists[0] and lists[1] and _types(c, lists[1]) == {0} and _types(c, lists[2]) <= {1}:
        lists[3] = fetch(3, risky=True)
        return RR9_IDS, lists
    return RR8_IDS, lists


def _entries(c: Calls, path: str) -> Tuple[List[Tuple[str, list]], float, Dict[str, Any]]:
    """(dimension, entries), the day's start, and sizes for rr-probe."""
    stats = c.load(CLASS, path, True)
    ids, lists = _type_ids(c, stats)
    sizes = {"jobTypeCount": c.guarded(c.call, stats, "jobTypeCount", expect=count),
             "entries_by_type_id": {str(i): (None if v is None else len(v)) for i, v in sorted(lists.items())},
             "type_ids_used": "0..2 (RR 8)" if ids == RR8_IDS else "1..3 (RR 9)"}
    dimensions = [(dimension, lists.get(type_id) or []) for dimension, type_id in zip(DIMENSIONS, ids)]
    return dimensions, local_midnight(os.stat(path).st_mtime), sizes


def _named(c: Calls, entries: list, day_start: float, newest_only: bool) -> Dict[str, List[Dict[str, Any]]]:
    """Set slots per entry name; an entry whose name or slots cannot be read is left out."""
    named = {}
    for entry in entries:
        name = c.value(entry, "name", expect=text)
        slots = c.guarded(_set_slots, c, entry, day_start, newest_only)
        if name is not None and slots:
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
