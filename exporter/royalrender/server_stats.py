"""``server_stats.db`` through ``_rrGlobalStatsLS``: the farm overview of rrControl's Global Info.

The latest valid slot of the day array is exported. Its index comes from
``lastSaveDay`` (local time divided by the slot length; the slot length is
86400 / ``dayMax()``: 90 s in RR 8, 60 s in RR 9); if that slot is not
``slot_used`` the newest used one before it is taken. ``lastSaveDay`` also
says when the server last saved: a stale value means the RR server stopped.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind

_NOTE = " (from server_stats.db, latest valid slot; cached between changes of the file)"


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
                    "When the RR server last saved server_stats.db; stale means the server stopped", [],
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
    yield gauge("royalrender_server_process_memory_bytes", "Memory used by the rrServer process" + _NOTE, [],
                one("memory_process"))
    yield gauge("royalrender_server_buffer_memory_bytes", "Memory of the rrServer's buffers" + _NOTE, ["buffer"],
                _present((b, s["memory_" + b]) for b in ("tcp_socket", "tcp_data", "job_data")))
    yield gauge("royalrender_server_tcp_buffer_compressed_max_bytes", "Largest TCP buffer after compression"
                + _NOTE, [], one("memory_tcp_compressed_max"))
    yield gauge("royalrender_average_frame_time_seconds", "Average frame time of all jobs" + _NOTE, [],
                one("average_frame_seconds"))
    yield gauge("royalrender_frames_left", "Frames still to render in all jobs" + _NOTE, [], one("frames_left"))


KIND = Kind(
    name="server_stats",
    vendor_class="_rrGlobalStatsLS",
    default_path="sub/stats/server_stats.db",
    select="newest",
    families=families,
    history_families=history_families,
)
