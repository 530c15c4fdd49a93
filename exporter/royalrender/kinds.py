"""The Royal Render file kinds: one module each, exporting a ``contract.Kind``, registered here with one line.

The plain data a kind turns into families comes from its extractor of the
same name in ``vendor``, which runs in the worker.
"""

from __future__ import annotations

from typing import Tuple

from exporter.royalrender import (
    client_groups,
    client_info,
    client_stats,
    daily_stats,
    frame_stats,
    licenses,
    render_time,
    server_stats,
)
from exporter.royalrender.contract import Kind

KINDS: Tuple[Kind, ...] = (
    server_stats.KIND,
    daily_stats.KIND,
    client_stats.KIND,
    client_info.KIND,
    frame_stats.KIND,
    render_time.KIND,
    licenses.KIND,
    client_groups.KIND,
)


def with_history() -> Tuple[Kind, ...]:
    """The kinds whose files keep a history that ``backfill`` can write."""
    return tuple(kind for kind in KINDS if kind.history_families is not None)
