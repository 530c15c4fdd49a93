"""What every source has in common, and the registry of sources.

A *source* (Rush, later Royal Render) owns one top-level config section and
creates *readers*, one per stats file kind. A reader owns the files its
patterns match; ``sync`` reads what changed and returns an immutable
snapshot, and ``families`` turns a snapshot into metric families. Readers
never touch metrics objects shared with the HTTP side.

Adding a source is one module with a ``SOURCE`` and one line in ``SOURCES``;
adding a file kind is one reader module and one line in its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Optional, Protocol, Sequence, Tuple, runtime_checkable

from prometheus_client.metrics_core import Metric

from exporter.paths import PathPattern
from exporter.schema import Schema


@dataclass(frozen=True)
class FileStatus:
    """How reading one file went; the exporter's own per-file metrics."""

    kind: str
    path: str
    up: bool
    last_success_time: Optional[float]
    errors_total: int
    malformed_lines_total: int
    bytes_read_total: int
    lines_read_total: int
    last_error: Optional[str] = None  # why the last read failed, while the file is down (the status page shows it)


class Snapshot(Protocol):
    """Immutable result of a reader's ``sync``; kind-specific data beside ``files``."""

    files: Tuple[FileStatus, ...]


@runtime_checkable
class Described(Protocol):
    """A snapshot that also says how its source is set up, as (what, value) pairs for the status page."""

    notes: Tuple[Tuple[str, str], ...]


class Reader(Protocol):
    """Reads the files its ``patterns`` match; a reader without patterns reads no file and reports on its
    source (it is synced on every pass, after the source's other readers)."""

    kind: str
    patterns: Sequence[PathPattern]

    def sync(self, paths: Optional[Collection[str]]) -> Snapshot:
        """Reads the given changed paths, or rescans everything when ``paths`` is None."""

    def families(self, snapshot: Snapshot) -> Iterable[Metric]:
        """The metric families of a snapshot; called off the ingest thread."""

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class ConfigNotice:
    """Something in a valid configuration that will not do what its author wants (a missing folder ...)."""

    key: str  # key path below the source's section, "" for the section itself
    message: str


def _as_written(section: Any, base_dir: str) -> Any:
    return section


def _no_notices(section: Any) -> Sequence[ConfigNotice]:
    return ()


@dataclass(frozen=True)
class Source:
    """A render queue manager: its config section and how to build its readers.

    ``relative_to(section, folder)`` resolves the section's relative paths
    against the config file's folder; ``check(section)`` lists what is valid
    but will not work (``--check-config`` and start-up warn about it).
    """

    name: str
    schema: Schema
    readers: Callable[[Any], Sequence[Reader]]
    doc: str
    relative_to: Callable[[Any, str], Any] = _as_written
    check: Callable[[Any], Sequence[ConfigNotice]] = _no_notices


def registered_sources() -> Sequence[Source]:
    """Every source the exporter knows, in exposition order."""
    from exporter.royalrender.source import SOURCE as royalrender
    from exporter.rush import SOURCE as rush

    return (royalrender, rush)
