"""Per-client stats files through ``_rrClientStats_data``: the client's latest item.

``days(daysMax()-1)`` is the last day written; its newest item with
``hasData()`` gives CPU, GPU, memory, whether a user is logged in and each
job thread; the hourly array gives the current hour's frames, crashes,
aborts and successes summed over job threads. Item length is 86400 /
``dataMax()`` (20 s in RR 8, 30 s in RR 9).

Where these files live is not public: configure the glob. The client's name
is the ``(?P<client>...)`` group of ``client_from_path`` searched in the path
(default: the file name without its extension).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Tuple

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind
from exporter.royalrender.naming import name_from_path
from exporter.royalrender.times import NOT_A_TIME, Written, checked, current
from exporter.schema import Field, GroupRegex

EXTRA_OPTIONS = {
    "client_from_path": Field(GroupRegex("client"), doc="regex with (?P<client>...) searched in the file's path"),
}

_NOTE = " (from the client's stats file, latest item; cached between changes of the file)"
_PER_HOUR = (" in the local clock hour of the latest item, so far: a count that restarts every hour, not a running "
             "total")


def client_name(path: str, options: Mapping[str, Any]) -> str:
    return name_from_path(path, options.get("client_from_path"), "client")


def interpret(data: Mapping[str, Any], written: Written) -> Dict[str, Any]:
    """The latest item stamped in RR's zone; left out unless current (``times.current``)."""
    item = data["item"]
    if item is None:
        return dict(data, check={"offset": None, "implausible": None, "stale": False})
    when = written.unix(item["local_time"])
    check = checked(NOT_A_TIME if when is None else when, written, item["item_seconds"], True,
                    "the client's latest item")
    fresh = current(when, written.mtime, item["item_seconds"])
    return dict(data, item=dict(item, time=when) if fresh else None, check=dict(check, stale=not fresh))


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    items = {client_name(path, options): d["item"] for path, d in sorted(data.items()) if d["item"] is not None}

    def per_client(key: str) -> Dict[str, Any]:
        return {client: item[key] for client, item in items.items() if item[key] is not None}

    def per_hour(key: str) -> Dict[str, Any]:
        return {client: item["hour"][key] for client, item in items.items()
                if item["hour"] is not None and item["hour"][key] is not None}

    def per_thread(key: str) -> Dict[Tuple[str, str], Any]:
        return {(client, str(n)): t[key] for client, item in items.items()
                for n, t in enumerate(item["threads"]) if t[key] is not None}

    yield gauge("royalrender_client_stats_timestamp_seconds", "Time of the client's latest stats item" + _NOTE,
                ["client"], per_client("time"))
    yield gauge("royalrender_client_cpu_ratio", "CPU usage of the client machine, 0..1" + _NOTE, ["client"],
                per_client("cpu"))
    yield gauge("royalrender_client_gpu_ratio", "GPU usage of the client machine, 0..1" + _NOTE, ["client"],
                per_client("gpu"))
    yield gauge("royalrender_client_memory_bytes", "Memory used on the client machine" + _NOTE, ["client"],
                per_client("memory"))
    yield gauge("royalrender_client_user_logged_in", "1 if a user was logged in" + _NOTE, ["client"],
                per_client("user_logged_in"))
    yield gauge("royalrender_client_job_threads", "Job threads running" + _NOTE, ["client"],
                {client: len(item["threads"]) for client, item in items.items()})
    yield gauge("royalrender_client_job_thread_cpu_ratio", "CPU usage of each job thread's render, 0..1" + _NOTE,
                ["client", "thread"], per_thread("cpu"))
    yield gauge("royalrender_client_job_thread_memory_bytes", "Memory of each job thread's render" + _NOTE,
                ["client", "thread"], per_thread("memory"))
    yield gauge("royalrender_client_job_thread_status", "RR's status code of each job thread (enumeration _Status)"
                + _NOTE, ["client", "thread"], per_thread("status"))
    yield gauge("royalrender_client_hour_frames_done", "Frames done" + _PER_HOUR + _NOTE, ["client"],
                per_hour("frames_done"))
    yield gauge("royalrender_client_hour_job_crashes", "Job crashes" + _PER_HOUR + _NOTE, ["client"],
                per_hour("crashes"))
    yield gauge("royalrender_client_hour_job_aborts", "Job aborts" + _PER_HOUR + _NOTE, ["client"],
                per_hour("aborts"))
    yield gauge("royalrender_client_hour_job_successes", "Successful job renders" + _PER_HOUR + _NOTE,
                ["client"], per_hour("successes"))


KIND = Kind(
    name="client_stats",
    vendor_class="_rrClientStats_data",
    default_path=None,
    select="all",
    families=families,
    extra_options=EXTRA_OPTIONS,
    interpret=interpret,
)
