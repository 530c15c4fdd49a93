"""What a source plugin may import from the exporter, and nothing else (docs/plugins.md).

Everything here is public API: a plugin under ``tests/plugins/`` importing any other ``exporter`` module fails
``tests/test_plugin_api.py``. Two shapes of file are offered: files rewritten whole (``WholeFileReader``) and
appended logs (``Tailer``, whose sink gets a ``FileKey`` per physical file).
"""

from exporter.budget import OTHER, TRUNCATED_SUFFIX, LabelBudget
from exporter.containment import Containment, OutsideRoots
from exporter.families import label_value
from exporter.paths import PathPattern
from exporter.schema import (
    Boolean,
    Duration,
    Either,
    Field,
    Glob,
    GroupRegex,
    HostRegex,
    Integer,
    ListOf,
    MapOf,
    OneOf,
    Schema,
    String,
    Struct,
)
from exporter.sources import (
    CHECK_RESOLUTION_SECONDS,
    ENTRY_POINT_GROUP,
    READ_FAILURE_REASONS,
    Checkpointed,
    ConfigNotice,
    ConfiguredPath,
    Described,
    FileStatus,
    HistorySink,
    Reader,
    Snapshot,
    Source,
)
from exporter.tailer import FileKey, NotRegularFile, Seen, Tailer
from exporter.wholefile import ReadFailed, WholeFileReader, WholeFileSnapshot

__all__ = [
    "CHECK_RESOLUTION_SECONDS", "ENTRY_POINT_GROUP", "OTHER", "READ_FAILURE_REASONS", "TRUNCATED_SUFFIX", "Boolean",
    "Checkpointed", "ConfigNotice", "ConfiguredPath", "Containment", "Described", "Duration", "Either", "Field",
    "FileKey", "FileStatus", "Glob", "GroupRegex", "HistorySink", "HostRegex", "Integer", "LabelBudget", "ListOf",
    "MapOf", "NotRegularFile", "OneOf", "OutsideRoots", "PathPattern", "ReadFailed", "Reader", "Schema", "Seen",
    "Snapshot", "Source", "String", "Struct", "Tailer", "WholeFileReader", "WholeFileSnapshot", "label_value",
]
