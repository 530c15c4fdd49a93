"""The file format of the stand-in RR module: JSON, clearly not Royal Render's.

Royal Render's binary layout is not public, so the stand-in module (used by
the tests, the demo and ``module: simulated``) stores the same information
in its own format. Only the stand-in reads it and only the simulator writes
it; production reads RR's own files through RR's own module.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, Optional

MAGIC = "renderfarm-exporter stand-in statistics; not a Royal Render file"
FORMAT_VERSION = 1


class SimFormatError(Exception):
    """The file is missing, half written, or not of the expected class."""


def write(path: str, cls: str, payload: Dict[str, Any], atomic: bool = True, mtime: Optional[float] = None) -> None:
    """Writes one stats file; ``atomic=False`` writes in place as a crashing writer might. ``mtime``: the
    writer's clock (a simulated one), since the exporter checks RR's times against the file's."""
    text = json.dumps({"magic": MAGIC, "format_version": FORMAT_VERSION, "class": cls, "data": payload},
                      separators=(",", ":"))
    if not atomic:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        _stamp(path, mtime)
        return
    folder = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".sim-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        _stamp(temp, mtime)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _stamp(path: str, mtime: Optional[float]) -> None:
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def read(path: str, cls: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise SimFormatError("file not found: %s" % path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SimFormatError("cannot load %s: %s" % (path, exc)) from None
    if not isinstance(document, dict) or document.get("magic") != MAGIC:
        raise SimFormatError("%s is not a stand-in statistics file" % path)
    if document.get("format_version") != FORMAT_VERSION:
        raise SimFormatError("%s has format version %r, expected %d" % (path, document.get("format_version"),
                                                                       FORMAT_VERSION))
    if document.get("class") != cls:
        raise SimFormatError("%s holds %s data, not %s" % (path, document.get("class"), cls))
    return document["data"]
