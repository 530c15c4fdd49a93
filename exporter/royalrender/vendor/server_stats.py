"""``server_stats.db`` through ``_rrGlobalStatsLS``: its latest used day slot, and every slot for backfill.

The reference gives ``lastSaveDay`` two time bases (local time / slot
length, and local time / 90), so the latest used slot is looked up for
each reading; the daemon keeps the one that puts the last save nearest the
file's modification time and turns indexes into times
(``exporter.royalrender.server_stats``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, STALE_SLOTS, Calls, count, flag, local_time, scaled

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


def _day_slots(c: Calls, stats: Any, size: int, newest: int, steps: int) -> List[Tuple[int, Any]]:
    """(steps back from index ``newest``, item) of the used day slots among the ``steps`` latest, newest first."""
    found = []
    for back in range(steps):
        item = c.call(stats, "day", (newest - back) % size)
        if _used(c, item):
            found.append((back, item))
    return found


def _walk(c: Calls, stats: Any, size: int, last_save: int, step: float) -> Dict[str, Any]:
    """If ``lastSaveDay`` counts in ``step`` seconds: the used day slots walking back from the last save's, as
    far as the daemon may take one as current (``STALE_SLOTS``, and an hour more: the hour a spring switch skips
    still holds yesterday's slots), newest first, with how far back each is; when there is none, how far back
    the newest used one is (``older``: the values there are not current, but stale ones exist)."""
    slot = 86400.0 / size
    newest = last_save_index(last_save, step, slot)
    steps = min(size, STALE_SLOTS + int(3600 // slot) + 1)
    found = c.guarded(_day_slots, c, stats, size, newest, steps, default=[])
    return {"step": step, "used": [{"back": back, "slot": dict(_slot_values(c, item, slot),
                                                               index=(newest - back) % size)} for back, item in found],
            "older": None if found else c.guarded(_first_used, c, stats, size, newest, steps)}


def _first_used(c: Calls, stats: Any, size: int, newest: int, start: int) -> Optional[int]:
    """How far back the newest used day slot beyond the first ``start`` is (None: the array holds none)."""
    for back in range(start, size):
        if _used(c, c.call(stats, "day", (newest - back) % size)):
            return back
    return None


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    stats = c.load(CLASS, path)
    sizes = {name: _size(c, stats, name) for name in ("dayMax", "monthMax", "yearMax")}
    size = sizes["dayMax"]
    result: Dict[str, Any] = {"slot_seconds": None, "last_save": None, "walks": [], "sizes": sizes}
    if size is None:
        return result
    slot = 86400.0 / size
    last_save = c.value(stats, "lastSaveDay", expect=local_time(slot))
    if last_save is None:
        return result
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
        size = _size(c, stats, max_name)
        if size is None:
            continue
        slot = seconds or 86400.0 / size
        last_save = c.value(stats, last_save_name, expect=local_time(slot))
        if last_save is None:
            continue
        arrays[array] = {"size": size, "slot_seconds": slot, "last_save": int(last_save),
                         "used": c.guarded(_used_slots, c, stats, array, size, slot, default=[])}
    return arrays
