"""Today's file in ``[RR]/sub/stats/server/`` through ``_dailyStats_data``: set slots per user, project, app.

``getJobsByType`` takes 0..2 in the RR 8 reference and 1..3 on RR 9's page;
which one this module uses is decided per read from evidence (``_shape``),
and reported with it. Slot indexes are returned as they are: the daemon
turns them into times (``exporter.royalrender.times``). The rules are in
docs/royalrender.md.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, Calls, count, flag, sequence, text

CLASS = "_dailyStats_data"
DIMENSIONS = ("user", "project", "render_app")
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


def _slot_values(c: Calls, slot: Any, index: int) -> Dict[str, Any]:
    values: Dict[str, Any] = {"index": index}
    for key, name, scale in FIELDS:
        raw = c.value(slot, name)
        values[key] = None if raw is None else raw * scale
    return values


def _set_slots(c: Calls, entry: Any, newest_only: bool) -> Dict[str, Any]:
    """The entry's slot count and its set slots, newest first (only the newest when ``newest_only``)."""
    size = c.call(entry, "timeSlotCount", expect=count)
    found = []
    for idx in range(size - 1, -1, -1):
        slot = c.call(entry, "getTimeSlot", idx)
        if c.value(slot, "slotSet", expect=flag):
            found.append(_slot_values(c, slot, idx))
            if newest_only:
                break
    return {"slots": size, "set": found}


def _fetch(c: Calls, stats: Any, type_id: int, risky: bool) -> Optional[list]:
    method = c.risky if risky else c.call
    return c.guarded(method, stats, "getJobsByType", type_id, expect=sequence)


def _types(c: Calls, entries: Optional[list]) -> List[Optional[int]]:
    return [c.value(entry, "type", expect=count) for entry in entries or ()]


def _typed(c: Calls, entries: Optional[list]) -> set:
    """The ``type`` values of a list's entries that have one."""
    return set(_types(c, entries)) - {None}


def _shape(c: Calls, stats: Any, lists: Dict[int, Optional[list]]) -> Tuple[Tuple[int, ...], int, str]:
    """The ids of user, project and render app, the first ``type`` value, and the evidence they were chosen
    from; fetches the third list.

    RR 9's numbering when every entry of id 1 is typed 0 and every one of
    id 2 typed 1 (users under id 1), when the module has RR 9's timeline
    class and answers id 3, or when id 0 fails (raises, crashed the worker
    before, returns no list) or is empty while ids 1 and 2 are not; RR 8's
    (the reference's) otherwise. One entry's type alone decides nothing. Id 0
    is asked only when nothing else decided, as a risky call whose failure is
    the answer.
    """
    if _typed(c, lists[1]) == {0} and _typed(c, lists[2]) <= {1}:
        return _rr9(c, stats, lists, 0, "every entry of id 1 is typed 0 (users), of id 2 typed 1")
    prefix = ""
    if hasattr(c.rr, "_dailyStats_timeline"):
        lists[3] = _fetch(c, stats, 3, True)
        if lists[3] is not None:
            return RR9_IDS, 1, "the module has RR 9's _dailyStats_timeline"
        prefix = "getJobsByType(3) failed although the module has RR 9's _dailyStats_timeline, and "
    zero, error = c.attempt(stats, "getJobsByType", 0, expect=sequence)
    if error is not None:
        return _rr9(c, stats, lists, 1, prefix + "getJobsByType(0) failed: %s" % error)
    if not zero and (lists[1] or lists[2]):
        return _rr9(c, stats, lists, 1, prefix + "getJobsByType(0) was empty while ids 1 and 2 had entries")
    lists[0] = zero
    if zero:
        return RR8_IDS, 0, prefix + "getJobsByType(0) had entries"
    return RR8_IDS, 0, prefix + "no list had entries (the reference's 0..2 assumed)"


def _rr9(c: Calls, stats: Any, lists: Dict[int, Optional[list]], first_type: int,
         evidence: str) -> Tuple[Tuple[int, ...], int, str]:
    if 3 not in lists:
        lists[3] = _fetch(c, stats, 3, True)
    return RR9_IDS, first_type, evidence


def _by_dimension(c: Calls, ids: Tuple[int, ...], first_type: int,
                  lists: Dict[int, Optional[list]]) -> Dict[str, list]:
    """Every entry under its list's dimension; a ``type`` that says otherwise is counted as a failure of
    ``_jobStatDay.type`` (the numbering was decided from all the evidence: one entry does not overrule it)."""
    placed: Dict[str, list] = {dimension: [] for dimension in DIMENSIONS}
    for type_id, entries in lists.items():
        if type_id not in ids:
            continue
        expected = first_type + ids.index(type_id)
        for entry, type_value in zip(entries or (), _types(c, entries)):
            if type_value is not None and type_value != expected:
                c.failures.setdefault("_jobStatDay.type", "type %s listed under id %s" % (type_value, type_id))
            placed[DIMENSIONS[ids.index(type_id)]].append(entry)
    return placed


def _entries(c: Calls, path: str) -> Tuple[List[Tuple[str, list]], Dict[str, Any]]:
    """(dimension, entries), and the shape: type ids, why, and sizes for rr-probe."""
    stats = c.load(CLASS, path, True)
    lists = {1: _fetch(c, stats, 1, False), 2: _fetch(c, stats, 2, False)}
    ids, first_type, evidence = _shape(c, stats, lists)
    shape = {"type_ids": "0..2" if ids == RR8_IDS else "1..3", "evidence": evidence,
             "jobTypeCount": c.guarded(c.call, stats, "jobTypeCount", expect=count),
             "entries_by_type_id": {str(i): (None if v is None else len(v)) for i, v in sorted(lists.items())}}
    placed = _by_dimension(c, ids, first_type, lists)
    return [(dimension, placed[dimension]) for dimension in DIMENSIONS], shape


def _named(c: Calls, entries: list, newest_only: bool) -> Dict[str, Dict[str, Any]]:
    """Slot count and set slots per entry name; an entry whose name or slots cannot be read is left out."""
    named: Dict[str, Dict[str, Any]] = {}
    for entry in entries:
        name = c.value(entry, "name", expect=text)
        if name is None or name in named:
            continue
        slots = c.guarded(_set_slots, c, entry, newest_only)
        if slots and slots["set"]:
            named[name] = slots
    return named


def _read(c: Calls, path: str, newest_only: bool) -> Dict[str, Any]:
    dimensions, shape = _entries(c, path)
    result: Dict[str, Any] = {"shape": shape}
    for dimension, entries in dimensions:
        result[dimension] = _named(c, entries, newest_only)
    return result


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Each name's latest set slot."""
    return _read(c, path, True)


def history(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Every set slot of the day, per dimension and name, for backfill."""
    return _read(c, path, False)
