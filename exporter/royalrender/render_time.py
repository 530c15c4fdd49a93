"""Render time stats through ``_StatsRenderTime``: frame times of recent jobs per project and layer.

RR keeps, per layer of each project, the average frame time of the last 100
finished jobs (latest first), in PS·s (processor-seconds). Exported per
project and layer: the latest job's and the mean of the list. Where the file
lives is not public: configure its path.

(project, layer) pairs are unbounded, so they have a ``budget.LabelBudget``
of ``series_budget`` series: a layer keeps its series from the first read
that saw it while there was room (layers first seen in the same read: the
most recently used projects first, then by name), and later layers are one
``__other__`` layer of project ``__other__`` (jobs added summed, frame times
not exported for it), counted in ``royalrender_render_time_layers_dropped``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Tuple

from prometheus_client.metrics_core import Metric

from exporter.budget import OTHER, LabelBudget
from exporter.families import gauge
from exporter.royalrender.contract import Bound, Kind
from exporter.schema import Field, Integer

SERIES_PER_LAYER = 3
EXTRA_OPTIONS = {
    "series_budget": Field(Integer(minimum=SERIES_PER_LAYER), default=3000,
                           doc="most series; layers first seen once it is spent are counted as __other__"),
}

_NOTE = " (from the render time stats; cached between changes of the file)"


def bounded(options: Mapping[str, Any]) -> Bound:
    """One budget of (project, layer) pairs for a reader's life; applied to each file's data as it is read."""
    budget = LabelBudget(options["series_budget"], SERIES_PER_LAYER)

    def bound(stats: Mapping[str, Any]) -> Dict[str, Any]:
        projects, over = _within(budget, stats["projects"])
        return dict(stats, projects=projects, layers_over_budget=over)

    return bound


def _within(budget: LabelBudget, projects: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], int]:
    """The projects with their admitted layers, and one ``__other__`` project for the rest; how many those are."""
    kept: List[Dict[str, Any]] = []
    rest: List[Dict[str, Any]] = []
    for project in sorted(projects, key=lambda p: (-p["last_used_time"], p["name"])):
        admitted: List[Dict[str, Any]] = []
        for layer in project["layers"]:
            (admitted if budget.admits((project["name"], layer["name"])) else rest).append(layer)
        if admitted:
            kept.append(dict(project, layers=admitted))
    if rest:
        jobs = [layer["jobs_added"] for layer in rest if layer["jobs_added"] is not None]
        other = {"name": OTHER, "latest": None, "mean": None, "jobs_added": sum(jobs) if jobs else None}
        kept.append({"name": OTHER, "last_used_time": 0, "layers": [other]})
    return kept, len(rest)


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    for stats in data.values():  # select="newest": one file
        rows = [(project["name"], layer) for project in stats["projects"] for layer in project["layers"]]

        def per_layer(key: str) -> Dict:
            return {(project, layer["name"]): layer[key]
                    for project, layer in rows if layer[key] is not None}  # noqa: B023 - called in this iteration

        yield gauge("royalrender_render_time_latest_job_frame_ps_seconds",
                    "Average frame time of the layer's latest finished job, in processor-seconds" + _NOTE,
                    ["project", "layer"], per_layer("latest"))
        yield gauge("royalrender_render_time_mean_frame_ps_seconds",
                    "Mean of the average frame times of the layer's recent jobs, in processor-seconds" + _NOTE,
                    ["project", "layer"], per_layer("mean"))
        yield gauge("royalrender_render_time_jobs_added",
                    "Jobs added to the layer's list so far (RR's int16: a sharp drop is a wrap at 32767, not a reset)"
                    + _NOTE,
                    ["project", "layer"], per_layer("jobs_added"))
        yield gauge("royalrender_render_time_layers_dropped", "Layers over the series budget, exported as the "
                    "__other__ layer of project __other__", [], {(): stats.get("layers_over_budget", 0)})


KIND = Kind(
    name="render_time",
    vendor_class="_StatsRenderTime",
    default_path=None,
    select="newest",
    families=families,
    extra_options=EXTRA_OPTIONS,
    bounded=bounded,
)
