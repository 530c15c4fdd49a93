"""Per-client stats files through ``_rrClientStats_data``: the client's latest item.

``days(daysMax()-1)`` is the last day written; its newest item with
``hasData()`` gives CPU, GPU, memory, whether a user is logged in and each
job thread; the hourly array gives the current hour's frames, crashes,
aborts and successes summed over job threads. Item length is 86400 /
``dataMax()`` (20 s in RR 8, 30 s in RR 9); the item's start is returned
as RR's local seconds, for the daemon to convert.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from exporter.royalrender.vendor.calls import MIB, Calls, count, flag, local_time, scaled

CLASS = "_rrClientStats_data"
HOUR_FIELDS = (("frames_done", "framesDone"), ("crashes", "jobCrashed"), ("aborts", "jobAborted"),
               ("successes", "jobSuccessful"))


def _latest_item(c: Calls, day: Any, size: int) -> Tuple[int, Any]:
    for idx in range(size - 1, -1, -1):
        item = c.call(day, "data", idx)
        if c.call(item, "hasData", expect=flag):
            return idx, item
    return -1, None


def _threads(c: Calls, item: Any) -> List[Dict[str, Any]]:
    threads = []
    for idx in range(c.call(item, "jobThreadCount", expect=count)):
        thread = c.call(item, "jobThread", idx)
        threads.append({"status": c.value(thread, "status"), "cpu": c.value(thread, "cpuRender"),
                        "memory": scaled(c.value(thread, "memRender10MB"), 10 * MIB)})
    return threads


def _hour_totals(c: Calls, hour: Any) -> Dict[str, Optional[int]]:
    """Sums over the hour's job threads; a field that fails on any thread is dropped, not summed short."""
    totals: Dict[str, Optional[int]] = {key: 0 for key, _ in HOUR_FIELDS}
    for idx in range(c.call(hour, "jobThreadCount", expect=count)):
        thread = c.call(hour, "jobThread", idx)
        for key, name in HOUR_FIELDS:
            value = c.value(thread, name)
            totals[key] = None if value is None or totals[key] is None else totals[key] + value
    return totals


def _item(c: Calls, day: Any, day_number: int, size: int) -> Optional[Dict[str, Any]]:
    idx, item = _latest_item(c, day, size)
    if item is None:
        return None
    item_seconds = 86400.0 / size
    logged_in = c.value(item, "userLoggedIn", expect=flag)
    hour = c.guarded(c.call, day, "dataHourly", int(idx * item_seconds // 3600))
    return {
        "index": idx,
        "local_time": day_number * 86400 + idx * item_seconds,
        "item_seconds": item_seconds,
        "cpu": c.value(item, "cpuTotal"),
        "gpu": c.value(item, "gpuTotal"),
        "memory": scaled(c.value(item, "memTotal10MB"), 10 * MIB),
        "user_logged_in": None if logged_in is None else int(logged_in),
        "threads": c.guarded(_threads, c, item, default=[]),
        "hour": c.guarded(_hour_totals, c, hour) if hour is not None else None,
    }


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    stats = c.load(CLASS, path)
    days = c.guarded(c.call, stats, "daysMax", expect=count)
    day = c.guarded(c.call, stats, "days", days - 1) if days else None
    if day is None:
        return {"item": None, "sizes": {"daysMax": days}}
    size = c.guarded(c.call, day, "dataMax", expect=count)
    sizes = {"daysMax": days, "dataMax": size, "dataHourlyMax": c.guarded(c.call, day, "dataHourlyMax", expect=count)}
    day_number = c.value(day, "day", expect=local_time(86400))
    if not c.value(day, "daySet", expect=flag) or not size or day_number is None:
        return {"item": None, "sizes": sizes}
    return {"item": c.guarded(_item, c, day, day_number, size), "sizes": sizes}
