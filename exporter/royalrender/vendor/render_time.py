"""Render time stats through ``_StatsRenderTime``: frame times of recent jobs per project and layer (PS·s)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from exporter.royalrender.vendor.calls import Calls, count, number, text

CLASS = "_StatsRenderTime"


def _layer(c: Calls, layer: Any) -> Optional[Dict[str, Any]]:
    name = c.value(layer, "name", expect=text)
    if name is None:
        return None
    times = [c.call(layer, "getFrameTime", i, expect=number) for i in range(c.call(layer, "timesCount", expect=count))]
    return {"name": name, "jobs_added": c.value(layer, "jobsAdded"),
            "latest": times[0] if times else None, "mean": sum(times) / len(times) if times else None}


def _project(c: Calls, project: Any) -> Optional[Dict[str, Any]]:
    name = c.value(project, "name", expect=text)
    if name is None:
        return None
    layers = [c.guarded(lambda i: _layer(c, c.call(project, "getLayer", i)), idx)
              for idx in range(c.call(project, "layerCount", expect=count))]
    return {"name": name, "last_used_time": c.value(project, "lastUsed") or 0,
            "layers": [layer for layer in layers if layer is not None]}


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    stats = c.load(CLASS, path, method="loadFile")
    projects = c.value(stats, "count", expect=count) or 0
    found = [c.guarded(lambda i: _project(c, c.call(stats, "getProject", i)), idx) for idx in range(projects)]
    return {"projects": [p for p in found if p is not None], "sizes": {"count": projects}}
