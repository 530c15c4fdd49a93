"""Per-frame stats of jobs through ``_frameStatJob`` (opt-in, capped).

One file per job; where they live is not public: configure the glob. Job
ids are unbounded, so this kind is off by default and reads only the
``max_jobs`` most recently changed files. Per job: frames recorded, mean and
maximum render time, and the largest memory seen while rendering.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind
from exporter.royalrender.naming import name_from_path
from exporter.schema import Field, GroupRegex, Integer

EXTRA_OPTIONS = {
    "max_jobs": Field(Integer(minimum=1), default=20, doc="read only this many most recently changed job files"),
    "job_from_path": Field(GroupRegex("job"), doc="regex with (?P<job>...) searched in the path; default: file name"),
}

_NOTE = " (from the job's frame stats; cached between changes of the file)"


def newest_count(options: Mapping[str, Any]) -> int:
    return options["max_jobs"]


def job_name(path: str, options: Mapping[str, Any]) -> str:
    return name_from_path(path, options.get("job_from_path"), "job")


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    jobs = {job_name(path, options): stats for path, stats in data.items()}

    def per_job(key: str) -> Dict:
        return {job: stats[key] for job, stats in jobs.items() if stats[key] is not None}

    yield gauge("royalrender_job_frames_recorded", "Frames with stats in the job's frame stats file" + _NOTE, ["job"],
                per_job("frames"))
    yield gauge("royalrender_job_frame_render_seconds_mean", "Mean render time of the job's frames" + _NOTE,
                ["job"], per_job("render_seconds_mean"))
    yield gauge("royalrender_job_frame_render_seconds_max", "Longest render time of the job's frames" + _NOTE,
                ["job"], per_job("render_seconds_max"))
    yield gauge("royalrender_job_memory_max_bytes", "Largest memory use seen while the job rendered" + _NOTE,
                ["job"], per_job("memory_max"))


KIND = Kind(
    name="frame_stats",
    vendor_class="_frameStatJob",
    default_path=None,
    select="newest",
    families=families,
    extra_options=EXTRA_OPTIONS,
    newest_count=newest_count,
)
