"""The extractor of each Royal Render file kind, by the kind's name (the daemon's kind modules use the same)."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Collection, Dict, Optional, Tuple

from exporter.royalrender.vendor import (
    client_groups,
    client_info,
    client_stats,
    daily_stats,
    frame_stats,
    licenses,
    render_time,
    server_stats,
)
from exporter.royalrender.vendor.calls import Calls

BY_KIND: Dict[str, ModuleType] = {
    "server_stats": server_stats,
    "daily_stats": daily_stats,
    "client_stats": client_stats,
    "client_info": client_info,
    "frame_stats": frame_stats,
    "render_time": render_time,
    "licenses": licenses,
    "client_groups": client_groups,
}
#: what a request may ask of an extractor: the latest values, or every slot for backfill
OPERATIONS = ("extract", "history")


def run(rr: Any, kind: str, operation: str, path: str, options: Dict[str, Any], avoid: Collection[str] = (),
        announce: Callable[[Optional[str]], None] = lambda step: None) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """(plain data, member failures) of one file; raises ``LoadFailed`` when the file does not load."""
    if operation not in OPERATIONS:
        raise ValueError("unknown operation %r" % operation)
    calls = Calls(rr, avoid, announce)
    data = getattr(BY_KIND[kind], operation)(calls, path, options)
    return data, calls.failures
