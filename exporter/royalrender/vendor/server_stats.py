"""``server_stats.db`` through ``_rrGlobalStatsLS``: its latest used day slot, and every slot for backfill.

The latest slot's index comes from ``lastSaveDay`` (local time divided by
the slot length; the slot length is 86400 / ``dayMax()``: 90 s in RR 8,
60 s in RR 9); if that slot is not ``slot_used`` the newest used one before
it is taken.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, Calls, count, flag, local_to_unix, number, scaled

CLASS = "_rrGlobalStatsLS"

#: (exported key, documented field and its aliases in older RR versions, scale: None means per-minute)
_FIELDS = (
    ("clients_free", ("clients_free",), 1),
    ("clients_rendering", ("clients_rendering", "client_rendering"), 1),
    ("clients_disabled", ("clients_disabled",), 1),
    ("clients_needed", ("clients_needed",), 1),
    ("frames_per_minute", ("framesPerMin", "framesPer90s"), None),
    ("frames_per_minute_3d", ("framesPerMin_3D", "framesPer90s_3D"), None),
    ("frames_per_minute_comp", ("framesPerMin_Comp", "framesPer90s_Comp"), None),
    ("frames_per_minute_archive", ("framesPerMin_Archive", "framesPer90s_Archive"), None),
    ("cpu_process", ("CpuProcess",), 0.01),
    ("cpu_machine", ("CpuMachine",), 0.01),
    ("server_temperature", ("serverTemperature",), 1),
    ("clients_temperature", ("clients_avTemperature", "avclientTemperature"), 1),
    ("jobs_unfinished", ("jobs_unfinished",), 1),
    ("jobs_rendering", ("jobs_rendering",), 1),
    ("jobs_total", ("jobs_total",), 1),
    ("memory_machine", ("serverMemUsage_Machine", "MemUsageMachine"), MIB),
    ("memory_process", ("serverMemUsage_Process", "MemUsageProcess"), MIB),
    ("memory_tcp_socket", ("serverMemUsage_TCPSocket", "TCPMemUsageSocket"), MIB),
    ("memory_tcp_data", ("serverMemUsage_TCPData", "TCPMemUsageData"), MIB),
    ("memory_job_data", ("serverMemUsage_JobBuffer", "JobBufferMemUsageJobs"), MIB),
    ("memory_tcp_compressed_max", ("serverMemUsage_TCPDataCompressed", "TCPMemUsageDataCompressed"), MIB),
    ("average_frame_seconds", ("frameTime", "av_frame_time"), 1),
    ("frames_left", ("framesLeft", "frames_to_do"), 1),
)


def _slot_values(c: Calls, item: Any, slot_seconds: float) -> Dict[str, Any]:
    """One slot's values in base units (the same for the day, month and year arrays)."""
    return {key: scaled(c.value(item, *names), 60.0 / slot_seconds if scale is None else scale)
            for key, names, scale in _FIELDS}


def _size(c: Calls, stats: Any, max_name: str) -> Optional[int]:
    size = c.guarded(c.call, stats, max_name, expect=count)
    return size or None


def _used(c: Calls, item: Any) -> bool:
    return bool(c.value(item, "slot_used", expect=flag))


def _day_slots(c: Calls, stats: Any, size: int, last_save: int, newest_only: bool) -> List[Tuple[int, Any]]:
    """(steps back from the last save, item) of used day slots, newest first."""
    found = []
    for back in range(size):
        item = c.call(stats, "day", (last_save - back) % size)
        if _used(c, item):
            found.append((back, item))
            if newest_only:
                break
    return found


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    stats = c.load(CLASS, path)
    sizes = {name: _size(c, stats, name) for name in ("dayMax", "monthMax", "yearMax")}
    size, last_save = sizes["dayMax"], c.value(stats, "lastSaveDay")
    result: Dict[str, Any] = {"slot_seconds": None, "last_save_time": None, "slot": None, "sizes": sizes}
    if size is None or last_save is None:
        return result
    last_save = int(last_save)
    slot = 86400.0 / size
    result.update(slot_seconds=slot, last_save_time=local_to_unix(last_save * slot))
    for back, item in c.guarded(_day_slots, c, stats, size, last_save, True, default=[]):
        result["slot"] = dict(_slot_values(c, item, slot), index=(last_save - back) % size,
                              time=local_to_unix((last_save - back) * slot))
    return result


#: (pushed-down array, its Max() function, its slot seconds, its lastSave attribute)
_HISTORY_ARRAYS = (("month", "monthMax", 1800.0, "lastSaveMonth"), ("year", "yearMax", 21600.0, "lastSaveYear"))


def _pushed_down_slots(c: Calls, stats: Any, array: str, size: int, seconds: float, last_save: int,
                       before: float) -> List[Dict[str, Any]]:
    slots = []
    for idx in range(size):
        item = c.call(stats, array, idx)
        start = local_to_unix((last_save - 1 - (size - 1 - idx)) * seconds)
        if start is not None and start < before and _used(c, item):
            slots.append(dict(_slot_values(c, item, seconds), time=start))
    return slots


def history(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Every used slot of the day, month and year arrays with its real start time, for backfill.

    The day array is indexed by time of day; the month and year arrays are
    pushed down, the last index holding the last completed slot. A finer
    array wins where arrays overlap: month slots are kept only before the
    first day slot, year slots only before the first month slot.
    """
    stats = c.load(CLASS, path)
    size, last_save = _size(c, stats, "dayMax"), c.value(stats, "lastSaveDay")
    slots: List[Dict[str, Any]] = []
    if size is not None and last_save is not None:
        slot = 86400.0 / size
        for back, item in c.guarded(_day_slots, c, stats, size, int(last_save), False, default=[]):
            slots.append(dict(_slot_values(c, item, slot), time=local_to_unix((int(last_save) - back) * slot)))
    for array, max_name, seconds, last_save_name in _HISTORY_ARRAYS:
        array_size, array_last = _size(c, stats, max_name), c.value(stats, last_save_name, expect=number)
        if array_size is None or array_last is None:
            continue
        earliest = min((s["time"] for s in slots if s["time"] is not None), default=float("inf"))
        slots += c.guarded(_pushed_down_slots, c, stats, array, array_size, seconds, int(array_last), earliest,
                           default=[])
    return {"slots": sorted((s for s in slots if s["time"] is not None), key=lambda s: s["time"])}
