"""Per-frame stats of one job through ``_frameStatJob``: frames, render times, peak memory."""

from __future__ import annotations

from typing import Any, Dict, List

from exporter.royalrender.vendor.calls import MIB, Calls, count

CLASS = "_frameStatJob"


def _peak_memory(c: Calls, frame: Any) -> List[float]:
    used = []
    for part in range(c.call(frame, "partMax", expect=count)):
        memory = c.value(c.call(frame, "part", part), "jobMemoryMB")
        if memory:
            used.append(memory * MIB)
    return used


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    job = c.load(CLASS, path)
    frames = c.guarded(c.call, job, "frameCount", expect=count, default=0)
    seconds: List[float] = []
    memory: List[float] = []
    for idx in range(frames):
        frame = c.guarded(c.call, job, "frame", idx)
        if frame is None:
            continue
        render = c.value(frame, "renderTime5Sec")
        if render is not None:
            seconds.append(render * 5)
        memory += c.guarded(_peak_memory, c, frame, default=[])
    return {"frames": frames, "render_seconds_mean": sum(seconds) / len(seconds) if seconds else None,
            "render_seconds_max": max(seconds) if seconds else None, "memory_max": max(memory) if memory else None}
