"""``server_stats.db`` through ``_rrGlobalStatsLS``: the farm overview of rrControl's Global Info.

The latest used slot of the day array is exported while current, stamped
in RR's zone (``times``); ``lastSaveDay`` says when the server last saved:
a stale value means the RR server stopped. Which time base ``lastSaveDay``
counts in is chosen from the file's modification time (docs/royalrender.md).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind
from exporter.royalrender.times import NOT_A_TIME, Written, checked, current
from exporter.royalrender.vendor.server_stats import last_save_index, last_save_steps

_NOTE = " (from server_stats.db, latest valid slot; cached between changes of the file)"


def _last_save(last_save: int, steps: Iterable[float], written: Written) -> Tuple[float, Optional[float]]:
    """The step ``lastSaveDay`` counts in (the one putting the last save nearest the write), and that time."""
    def distance(step: float) -> float:
        when = written.unix(last_save * step)
        return math.inf if when is None else abs(when - written.mtime)

    step = min(steps, key=distance)
    return step, written.unix(last_save * step)


def _slot_start(last_save: int, step: float, slot_seconds: float, back: int) -> float:
    """Local seconds of the start of the day slot ``back`` slots before the one holding the last save."""
    return (last_save * step // slot_seconds - back) * slot_seconds


def interpret(data: Mapping[str, Any], written: Written) -> Dict[str, Any]:
    """The newest used slot that is current (``times.current`` against the last save), stamped."""
    interpreted: Dict[str, Any] = {"slot_seconds": None, "last_save_time": None, "last_save_step": None, "slot": None,
                                   "check": {"offset": None, "implausible": None, "stale": False}}
    if data["last_save"] is None or not data["walks"]:
        return interpreted
    walks = {walk["step"]: walk for walk in data["walks"]}
    step, last_save_time = _last_save(data["last_save"], walks, written)
    slot_seconds = data["slot_seconds"]
    stamped = [dict(used["slot"], time=written.unix(_slot_start(data["last_save"], step, slot_seconds, used["back"])))
               for used in walks[step]["used"]]
    fresh = [slot for slot in stamped
             if last_save_time is not None and current(slot["time"], last_save_time, slot_seconds, True)]
    interpreted.update(slot_seconds=slot_seconds, last_save_time=last_save_time, last_save_step=step,
                       slot=fresh[0] if fresh else None, check=dict(
                           checked(NOT_A_TIME if last_save_time is None else last_save_time, written, slot_seconds,
                                   True, "the last save (lastSaveDay)"),
                           stale=not fresh and (bool(stamped) or walks[step]["older"] is not None)))
    return interpreted


def interpret_history(data: Mapping[str, Any], written: Written) -> Dict[str, Any]:
    """Every used slot with its start: day slots back from the last save (none after it: the hour a spring
    switch skips still holds yesterday's), then the pushed-down month and year arrays, each slot a fixed
    real duration before the array's last save, where no finer array covers."""
    slots: List[Dict[str, Any]] = []
    day = data.get("day")
    if day is not None:
        size, slot_seconds = day["size"], day["slot_seconds"]
        step, last_save_time = _last_save(day["last_save"], last_save_steps(slot_seconds), written)
        newest = last_save_index(day["last_save"], step, slot_seconds)
        for idx, values in day["used"]:
            start = written.unix(_slot_start(day["last_save"], step, slot_seconds, (newest - idx) % size))
            if start is not None and last_save_time is not None and start <= last_save_time:
                slots.append(dict(values, time=start))
    for array in ("month", "year"):
        pushed = data.get(array)
        if pushed is None:
            continue
        earliest = min((s["time"] for s in slots), default=math.inf)
        size, seconds = pushed["size"], pushed["slot_seconds"]
        last = written.unix(pushed["last_save"] * seconds)
        if last is None:
            continue
        for idx, values in pushed["used"]:
            start = last - (size - idx) * seconds
            if start < earliest:
                slots.append(dict(values, time=start))
    return {"slots": sorted(slots, key=lambda s: s["time"])}


def history_families(data: Mapping[str, Dict[str, Any]],
                     options: Mapping[str, Any]) -> Iterable[Tuple[float, List[Metric]]]:
    """One set of families per slot, to be stamped with the slot's time."""
    for stats in data.values():
        for slot in stats["slots"]:
            yield slot["time"], [f for f in _slot_families(slot)
                                 if f.name != "royalrender_server_stats_slot_timestamp_seconds"]


def _present(pairs) -> Dict:
    return {key: value for key, value in pairs if value is not None}


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    for stats in data.values():  # select="newest": one file
        yield gauge("royalrender_server_stats_last_save_timestamp_seconds",
                    "When the RR server last saved server_stats.db (lastSaveDay in RR's zone); stale means "
                    "the server stopped", [],
                    _present([((), stats["last_save_time"])]))
        slot = stats["slot"]
        if slot is None:
            continue
        yield from _slot_families(slot)


def _slot_families(s: Dict[str, Any]) -> Iterable[Metric]:
    def one(key: str) -> Dict:
        return _present([((), s[key])])

    yield gauge("royalrender_server_stats_slot_timestamp_seconds", "Start of the slot the values below are from",
                [], _present([((), s["time"])]))
    yield gauge("royalrender_clients", "Clients by state" + _NOTE, ["state"],
                _present((state, s["clients_" + state]) for state in ("free", "rendering", "disabled")))
    yield gauge("royalrender_clients_needed", "Estimate of clients needed to start all unassigned segments"
                + _NOTE, [], one("clients_needed"))
    yield gauge("royalrender_frames_per_minute", "Frames rendered per minute, all jobs" + _NOTE, [],
                one("frames_per_minute"))
    yield gauge("royalrender_job_type_frames_per_minute", "Frames rendered per minute by job type" + _NOTE,
                ["job_type"], _present((t, s["frames_per_minute_" + t]) for t in ("3d", "comp", "archive")))
    yield gauge("royalrender_server_cpu_ratio", "CPU usage of the rrServer process and of its machine, 0..1"
                + _NOTE, ["scope"], _present((scope, s["cpu_" + scope]) for scope in ("process", "machine")))
    yield gauge("royalrender_server_temperature_celsius", "Temperature of the rrServer machine's first disk"
                + _NOTE, [], one("server_temperature"))
    yield gauge("royalrender_clients_average_temperature_celsius", "Average temperature of the clients' first disks"
                + _NOTE, [], one("clients_temperature"))
    yield gauge("royalrender_jobs_unfinished", "Jobs not finished" + _NOTE, [], one("jobs_unfinished"))
    yield gauge("royalrender_jobs_rendering", "Jobs rendering" + _NOTE, [], one("jobs_rendering"))
    yield gauge("royalrender_jobs", "Jobs in the queue" + _NOTE, [], one("jobs_total"))
    yield gauge("royalrender_server_machine_memory_bytes", "Memory used on the rrServer machine (RR reports "
                "MiB, assumed)" + _NOTE, [], one("memory_machine"))
    yield gauge("royalrender_server_process_memory_bytes", "Memory used by the rrServer process (RR reports MiB, "
                "assumed)" + _NOTE, [],
                one("memory_process"))
    yield gauge("royalrender_server_buffer_memory_bytes", "Memory of the rrServer's buffers" + _NOTE, ["buffer"],
                _present((b, s["memory_" + b]) for b in ("tcp_socket", "tcp_data", "job_data")))
    yield gauge("royalrender_server_tcp_buffer_compressed_max_bytes", "Largest TCP buffer after compression"
                + _NOTE, [], one("memory_tcp_compressed_max"))
    yield gauge("royalrender_average_frame_time_seconds", "Average frame time of all jobs (RR's unit assumed to be "
                "seconds; it may be processor-seconds, docs/royalrender.md)" + _NOTE, [],
                one("average_frame_seconds"))
    yield gauge("royalrender_frames_left", "Frames still to render in all jobs" + _NOTE, [], one("frames_left"))


KIND = Kind(
    name="server_stats",
    vendor_class="_rrGlobalStatsLS",
    default_path="sub/stats/server_stats.db",
    select="newest",
    families=families,
    history_families=history_families,
    interpret=interpret,
    interpret_history=interpret_history,
)
