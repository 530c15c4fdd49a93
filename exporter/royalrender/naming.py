"""Names taken from a file's path, for kinds whose files name a client or a job (daemon side)."""

from __future__ import annotations

import os
from typing import Optional, Pattern

from exporter.families import label_value


def name_from_path(path: str, regex: Optional[Pattern[str]], group: str) -> str:
    """The ``group`` of ``regex`` searched in ``path``, else the file name without its extension; a label value
    (``families.label_value``: bytes of the path that are not UTF-8 escaped)."""
    match = regex.search(path) if regex else None
    if match and match.group(group):
        return label_value(match.group(group))
    return label_value(os.path.splitext(os.path.basename(path))[0])
