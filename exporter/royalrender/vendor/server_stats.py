"""``server_stats.db`` through ``_rrGlobalStatsLS``: its latest used day slot, and every slot for backfill.

The reference gives ``lastSaveDay`` two time bases (local time / slot
length, and local time / 90), so the latest used slot is looked up for
each reading; the daemon keeps the one that puts the last save nearest the
file's modification time and turns indexes into times
(``exporter.royalrender.server_stats``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, Calls, count, flag, number, scaled

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


#: the readings of ``lastSaveDay`` besides the slot length: the reference says "divided by 90", and 60 s slots
LAST_SAVE_STEPS = (90.0, 60.0)


def last_save_steps(slot_seconds: float) -> List[float]:
    """Every step ``lastSaveDay`` may count in: the day array's slot length first, then the reference's others."""
    return list(dict.fromkeys((slot_seconds,) + LAST_SAVE_STEPS))


def last_save_index(last_save: int, step: float, slot_seconds: float) -> int:
    """The day slot holding the last save, if ``lastSaveDay`` counts in ``step`` seconds of local time."""
    return int(last_save * step % 86400 // slot_seconds)


def _day_slots(c: Calls, stats: Any, size: int, newest: int, newest_only: bool) -> List[Tuple[int, Any]]:
    """(steps back from index ``newest``, item) of used day slots, newest first."""
    found = []
    for back in range(size):
        item = c.call(stats, "day", (newest - back) % size)
        if _used(c, item):
            found.append((back, item))
            if newest_only:
                break
    return found


def _walk(c: Calls, stats: Any, size: int, last_save: int, step: float) -> Dict[str, Any]:
    """The newest used day slot if ``lastSaveDay`` counts in ``step`` seconds: how far back, and its values."""
    slot = 86400.0 / size
    newest = last_save_index(last_save, step, slot)
    found = c.guarded(_day_slots, c, stats, size, newest, True, default=[])
    if not found:
        return {"step": step, "back": None, "slot": None}
    back, item = found[0]
    return {"step": step, "back": back, "slot": dict(_slot_values(c, item, slot), index=(newest - back) % size)}


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    stats = c.load(CLASS, path)
    sizes = {name: _size(c, stats, name) for name in ("dayMax", "monthMax", "yearMax")}
    size, last_save = sizes["dayMax"], c.value(stats, "lastSaveDay")
    result: Dict[str, Any] = {"slot_seconds": None, "last_save": None, "walks": [], "sizes": sizes}
    if size is None or last_save is None:
        return result
    slot = 86400.0 / size
    result.update(slot_seconds=slot, last_save=int(last_save),
                  walks=[_walk(c, stats, size, int(last_save), step) for step in last_save_steps(slot)])
    return result


#: (pushed-down array, its Max() function, its slot seconds, its lastSave attribute)
_HISTORY_ARRAYS = (("month", "monthMax", 1800.0, "lastSaveMonth"), ("year", "yearMax", 21600.0, "lastSaveYear"))


def _used_slots(c: Calls, stats: Any, array: str, size: int, seconds: float) -> List[Tuple[int, Dict[str, Any]]]:
    """(index, values) of every used slot of one array."""
    slots = []
    for idx in range(size):
        item = c.call(stats, array, idx)
        if _used(c, item):
            slots.append((idx, _slot_values(c, item, seconds)))
    return slots


def history(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    """Every used slot of the day, month and year arrays by index, with the array's size and last save."""
    stats = c.load(CLASS, path)
    arrays: Dict[str, Any] = {}
    for array, max_name, seconds, last_save_name in (("day", "dayMax", None, "lastSaveDay"),) + _HISTORY_ARRAYS:
        size, last_save = _size(c, stats, max_name), c.value(stats, last_save_name, expect=number)
        if size is None or last_save is None:
            continue
        slot = seconds or 86400.0 / size
        arrays[array] = {"size": size, "slot_seconds": slot, "last_save": int(last_save),
                         "used": c.guarded(_used_slots, c, stats, array, size, slot, default=[])}
    return arrays
