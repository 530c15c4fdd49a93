"""Per-frame stats of one job through ``_frameStatJob``: frames, render times, peak memory."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from exporter.royalrender.vendor.calls import MIB, Calls, count

CLASS = "_frameStatJob"


def _indexed_parts(c: Calls, job: Any, frames: int) -> Optional[str]:
    """None when ``part(i)`` works (asked once per file, of the first frame); else why not, and every frame's
    one part is then read as the reference writes the call: ``part()``, without an argument."""
    first = c.guarded(c.call, job, "frame", 0) if frames else None
    if first is None:
        return None
    _, error = c.attempt(first, "part", 0)
    return error


def _parts(c: Calls, frame: Any, indexed: bool) -> List[Any]:
    if not indexed:
        return [c.call(frame, "part")]
    return [c.call(frame, "part", idx) for idx in range(c.call(frame, "partMax", expect=count))]


def _peak_memory(c: Calls, frame: Any, indexed: bool) -> List[float]:
    used = []
    for part in _parts(c, frame, indexed):
        memory = c.value(part, "jobMemoryMB")
        if memory:
            used.append(memory * MIB)
    return used


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    job = c.load(CLASS, path)
    frames = c.guarded(c.call, job, "frameCount", expect=count, default=0)
    part_error = _indexed_parts(c, job, frames)
    seconds: List[float] = []
    memory: List[float] = []
    for idx in range(frames):
        frame = c.guarded(c.call, job, "frame", idx)
        if frame is None:
            continue
        render = c.value(frame, "renderTime5Sec")
        if render is not None:
            seconds.append(render * 5)
        memory += c.guarded(_peak_memory, c, frame, part_error is None, default=[])
    parts_read_by = "part(i)" if part_error is None else "part(), as part(0) failed: " + part_error
    return {"frames": frames, "parts_read_by": parts_read_by,
            "render_seconds_mean": sum(seconds) / len(seconds) if seconds else None,
            "render_seconds_max": max(seconds) if seconds else None, "memory_max": max(memory) if memory else None}
