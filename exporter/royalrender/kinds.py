"""The Royal Render file kinds: one module each, registered here with one line.

A kind module has ``NAME``, ``VENDOR_CLASS``, ``DEFAULT_PATH`` (relative to
RR's folder, or None where the location is not public), ``SELECT``
(``all``: every match; ``newest``: the most recently changed file, or
``newest_count(options)`` of them), ``EXTRA_OPTIONS`` (config keys beyond
``enabled`` and ``path``), ``families(data_by_path, options)`` and, for kinds with a history,
``history_families``. The plain data comes from the kind's extractor of the
same name in ``vendor``, which runs in the worker.
"""

from __future__ import annotations

from types import ModuleType
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

KINDS: Tuple[ModuleType, ...] = (
    server_stats,
    daily_stats,
    client_stats,
    client_info,
    frame_stats,
    render_time,
    licenses,
    client_groups,
)



def with_history() -> Tuple[ModuleType, ...]:
    """The kinds whose files keep a history that ``backfill`` can write (they have ``history_families``)."""
    return tuple(kind for kind in KINDS if hasattr(kind, "history_families"))
