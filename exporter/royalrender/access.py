"""Helpers for extractors: calling the documented classes defensively.

Extractors run in the worker process and turn vendor objects into plain
data. A field that the installed RR version lacks drops that value (None),
never the whole file; a failed ``loadFromFile`` raises ``LoadFailed`` with
the vendor's ``getError()`` text.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Optional

MIB = 1024 * 1024


class LoadFailed(Exception):
    """``loadFromFile`` returned False; the message is the vendor's ``getError()``."""


def load(rr, class_name: str, path: str, *load_args: Any, method: str = "loadFromFile"):
    """An instance of the documented class with ``path`` loaded into it by ``method``."""
    cls = getattr(rr, class_name, None)
    if cls is None:
        raise LoadFailed("the Royal Render module has no class %s" % class_name)
    stats = cls()
    if not getattr(stats, method)(path, *load_args):
        raise LoadFailed("%s failed: %s" % (method, stats.getError() or "no error text"))
    return stats


def field(obj, *names: str) -> Optional[Any]:
    """The first of ``names`` (a documented field and its aliases) that ``obj`` has."""
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def name_from_path(path: str, regex, group: str) -> str:
    """The ``group`` of ``regex`` searched in ``path``, else the file name without its extension."""
    match = re.search(regex, path) if regex else None
    if match and match.group(group):
        return match.group(group)
    return os.path.splitext(os.path.basename(path))[0]


def scaled(value: Optional[float], factor: float) -> Optional[float]:
    return None if value is None else value * factor


def local_to_unix(local_seconds: float) -> float:
    """RR stores local wall-clock seconds; Prometheus wants Unix time."""
    whole = int(local_seconds)
    broken_down = time.gmtime(whole)[:8] + (-1,)
    return time.mktime(broken_down) + (local_seconds - whole)


def local_midnight(unix_seconds: float) -> float:
    """Unix time of the local midnight that starts the day of ``unix_seconds``."""
    day = time.localtime(unix_seconds)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
