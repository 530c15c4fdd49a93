"""Render time stats through ``_StatsRenderTime``: frame times of recent jobs per project and layer.

RR keeps, per layer of each project, the average frame time of the last 100
finished jobs (latest first), in PS·s (processor-seconds). Exported per
project and layer: the latest job's and the mean of the list. Where the file
lives is not public: configure its path. Layers are capped by
``series_budget``: the most recently used projects come first, the rest are
dropped and counted.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind
from exporter.schema import Field, Integer

SERIES_PER_LAYER = 3
EXTRA_OPTIONS = {
    "series_budget": Field(Integer(minimum=SERIES_PER_LAYER), default=3000,
                           doc="most series; layers of the least recently used projects are dropped first"),
}

_NOTE = " (from the render time stats; cached between changes of the file)"


def _rows(projects: List[Dict[str, Any]], budget: int):
    """(project, layer) rows within the budget, most recently used projects first; and how many were dropped."""
    capacity = budget // SERIES_PER_LAYER
    rows = [(p["name"], layer) for p in sorted(projects, key=lambda p: -p["last_used_time"]) for layer in p["layers"]]
    return rows[:capacity], max(0, len(rows) - capacity)


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    for stats in data.values():  # select="newest": one file
        rows, dropped = _rows(stats["projects"], options["series_budget"])

        def per_layer(key: str) -> Dict:
            return {(project, layer["name"]): layer[key]
                    for project, layer in rows if layer[key] is not None}  # noqa: B023 - called in this iteration

        yield gauge("royalrender_render_time_latest_job_frame_ps_seconds",
                    "Average frame time of the layer's latest finished job, in processor-seconds" + _NOTE,
                    ["project", "layer"], per_layer("latest"))
        yield gauge("royalrender_render_time_mean_frame_ps_seconds",
                    "Mean of the average frame times of the layer's recent jobs, in processor-seconds" + _NOTE,
                    ["project", "layer"], per_layer("mean"))
        yield gauge("royalrender_render_time_jobs_added", "Jobs added to the layer's list so far" + _NOTE,
                    ["project", "layer"], per_layer("jobs_added"))
        yield gauge("royalrender_render_time_layers_dropped", "Layers not exported because of the series budget",
                    [], {(): dropped})


KIND = Kind(
    name="render_time",
    vendor_class="_StatsRenderTime",
    default_path=None,
    select="newest",
    families=families,
    extra_options=EXTRA_OPTIONS,
)
