"""What every source has in common, and the registry of sources.

A *source* (Rush, Royal Render, or a plugin) owns one top-level config section and
creates *readers*, one per stats file kind. A reader owns the files its
patterns match; ``sync`` reads what changed and returns an immutable
snapshot, and ``families`` turns a snapshot into metric families. Readers
never touch metrics objects shared with the HTTP side.

Adding a source is a package with a ``Source`` registered under the entry
point group ``renderfarm_exporter.sources``; adding a file kind is one reader
module and one line in its source.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from itertools import compress
from operator import is_not
from typing import (
    Any,
    Callable,
    ClassVar,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    TextIO,
    Tuple,
    TypeVar,
    runtime_checkable,
)

from prometheus_client.metrics_core import Metric

from exporter.paths import PathPattern
from exporter.schema import Schema

#: A pass of reads still going after this long is published as far as it got, and again after each as long
#: (``Progressive``, ``ingest.SourceIngest.sync``): a first read of thousands of files is served as it goes, with
#: at most four renders a second of it, the first a quarter second in.
PROGRESS_SECONDS = 0.25

#: A file's last check (``FileStatus.last_check_time``) is renewed at most this often when nothing else about it
#: changed: a sync that finds nothing new hands out the same statuses (their rows are not touched), and the time
#: stays fresh enough to tell a reader that stopped (behind by a rescan interval, a minute) from a silent writer.
CHECK_RESOLUTION_SECONDS = 10.0

#: Why a read failed when the file's content is not to blame (``FileStatus.read_failures``): the helper that
#: reads it crashed (or broke its protocol) or hung past its timeout, the file system refused (``io``), the
#: reader could not run at all (``unavailable``: Royal Render's module did not load), or the path leads outside
#: the configured folders and was not read (``outside``: ``exporter.containment``).
READ_FAILURE_REASONS = ("crash", "timeout", "io", "unavailable", "outside")


class FileStatus(NamedTuple):
    """How reading one file went; the exporter's own per-file metrics (a named tuple: a reader makes one per
    changed file per sync, and a frozen dataclass of this size takes five times as long to make).

    ``errors_total`` counts every failed read. Of those, ``parse_errors_total``
    are reads that got the file but rejected its content (a whole-file parser
    or the vendor's ``loadFromFile`` refused it); ``read_failures`` counts
    others by reason (``READ_FAILURE_REASONS``). A reader that classifies
    nothing (a tailer, whose malformed lines are counted apart) leaves both
    at their defaults: its failed reads are I/O failures.
    """

    kind: str
    path: str
    up: bool
    last_success_time: Optional[float]
    errors_total: int
    malformed_lines_total: int
    bytes_read_total: int
    lines_read_total: int
    last_error: Optional[str] = None  # why the last read failed, while the file is down (the status page shows it)
    parse_errors_total: int = 0
    #: (reason, count), reasons from READ_FAILURE_REASONS; zeros included for the reasons the reader can meet
    read_failures: Tuple[Tuple[str, int], ...] = ()
    #: What the file looked like at the last check (a stat, at a read, a change or a rescan), so that a host that
    #: stopped writing (size and mtime still, checks recent) and a reader that stopped reading (checks old, or
    #: bytes left unread) look different; None where the reader does not know.
    size_bytes: Optional[int] = None
    modified_time: Optional[float] = None
    unread_bytes: Optional[int] = None  # bytes past what was read (a tailed file; whole files are read whole)
    last_check_time: Optional[float] = None
    #: Records dated more than the source's allowed skew ahead of the clock (counted, never taken as the latest)
    #: since the exporter started, and how far the newest record was ahead of the clock at the file's last read
    #: (0 when it is not); None for readers whose records carry no date.
    records_ahead_total: Optional[int] = None
    clock_ahead_seconds: Optional[float] = None
    #: Something wrong with a file that is read (up): what the status page lists among its problems.
    warning: Optional[str] = None

    def read_failures_by_reason(self) -> Dict[str, int]:
        """Failed reads not due to the content, by reason, zeros included; ``io`` always, with what the reader
        left unclassified."""
        failures = dict(self.read_failures)
        unclassified = self.errors_total - self.parse_errors_total - sum(failures.values())
        failures["io"] = failures.get("io", 0) + max(0, unclassified)
        return failures


def changed_in_place(files: Sequence[FileStatus], old: Sequence[FileStatus]) -> Optional[List[int]]:
    """Where ``files`` holds a new status object for the file ``old`` had there (found in C: readers hand out a
    new ``FileStatus`` only for a file they read); None when files came, went or moved."""
    if len(files) != len(old):
        return None
    at = list(compress(range(len(files)), map(is_not, files, old)))
    if any((files[index].kind, files[index].path) != (old[index].kind, old[index].path) for index in at):
        return None
    return at


class Snapshot(Protocol):
    """Immutable result of a reader's ``sync``; kind-specific data beside ``files``.

    A dataclass, so that the ingest can copy it with a file marked down (``dataclasses.replace``)."""

    __dataclass_fields__: ClassVar[Dict[str, Any]]
    files: Tuple[FileStatus, ...]


@runtime_checkable
class Described(Protocol):
    """A snapshot that also says how its source is set up, as (what, value) pairs for the status page."""

    notes: Tuple[Tuple[str, str], ...]


#: The snapshot type of one reader: ``families`` takes only what its own ``sync`` returns.
SnapshotT = TypeVar("SnapshotT", bound=Snapshot)


class Reader(Protocol[SnapshotT]):
    """Reads the files its ``patterns`` match; a reader without patterns reads no file and reports on its
    source (it is synced on every pass, after the source's other readers).

    ``Reader`` alone (``Reader[Any]``) is any reader, whatever its snapshot type."""

    kind: str

    @property
    def patterns(self) -> Sequence[PathPattern]:
        """Read-only for the contract, so a reader may hold them in a list."""

    def sync(self, paths: Optional[Collection[str]]) -> SnapshotT:
        """Reads the given changed paths, or rescans everything when ``paths`` is None."""

    def families(self, snapshot: SnapshotT) -> Iterable[Metric]:
        """The metric families of a snapshot; called off the ingest thread."""

    def close(self) -> None:
        ...


@runtime_checkable
class ReportsReading(Protocol):
    """A reader that says which file it is reading, for the ingest's stuck-read monitor (optional)."""

    #: (path, monotonic start) of the read in progress; None between reads.
    reading: Optional[Tuple[str, float]]


@runtime_checkable
class Interruptible(Protocol):
    """A reader whose long read can be cut short from another thread (optional): at a stop, when its ingest
    thread did not end in time, so that worker processes it waits on do not keep the daemon from exiting."""

    def interrupt(self) -> None:
        """Makes the read in progress (if any) end soon, by raising; later reads raise too."""


@runtime_checkable
class Progressive(Protocol):
    """A reader whose long sync hands out snapshots of what it has read so far (optional), about every
    ``PROGRESS_SECONDS``, so that a first read of thousands of files is served while it goes on; the ingest
    publishes them as they come."""

    def sync_steps(self, paths: Optional[Collection[str]]) -> Iterator[Snapshot]:
        """As ``sync``, yielding a snapshot now and then during a long sync; the last one is the whole sync's."""


@runtime_checkable
class Batched(Protocol):
    """A reader whose changes are read in batches (optional): its source's passes start at most every
    ``batch_seconds``, whatever changed meanwhile joining the next one. For files saved whole and seldom (an RR
    client's stats every 20-30 s) that thousands of writers change at their own pace: a pass and the render that
    follows cost about as much for fifty changed files as for one, and part of that cost grows with the files
    configured (copies and comparisons in C of every row of a family)."""

    batch_seconds: float


@runtime_checkable
class Checkpointed(Protocol):
    """A reader whose state can be saved and loaded (optional), so that a restart reads only the bytes
    written since (``exporter.checkpoint`` keeps one file per source and reader kind).

    The ingest thread calls these between syncs: ``restore`` before the first one."""

    def checkpoint_config(self) -> str:
        """What the state depends on (the reader's configuration): a checkpoint taken under another is ignored."""

    def checkpoint(self) -> bytes:
        """Everything needed so that totals after ``restore`` and a sync equal those of a full re-read; raises
        after ``close`` (a closed reader has nothing left to save)."""

    def restore(self, state: bytes) -> bool:
        """Loads what ``checkpoint`` returned; False, changing nothing, if the state is of another version;
        raises ValueError (saying why, without quoting the state), changing nothing, if it is not a state the
        reader could have written: its checksum has no secret, so it is validated like input."""


@dataclass(frozen=True)
class ConfigNotice:
    """Something in a valid configuration that will not do what its author wants.

    A warning (the default) may stop mattering by itself: a folder not mounted yet, a kind without a path.
    An ``error`` cannot work as written, whatever happens on the machine meanwhile (an interpreter that is
    missing or too old): ``--check-config`` exits 2 for it. Start-up logs both and runs, so the rest of the
    configuration works and the status page says why the rest does not (``--strict`` exits 2 on either).
    """

    key: str  # key path below the source's section, "" for the section itself
    message: str
    error: bool = False


@dataclass(frozen=True)
class ConfiguredPath:
    """A path a source's section names, for the checks every source shares (``config.notices``): a folder the
    service's sandbox hides, a pattern that matches no file now."""

    key: str  # key path below the source's section
    path: str  # absolute
    pattern: bool = False  # a file or glob read as statistics (else a folder or program the source uses)


def _no_paths(section: Any) -> Sequence[ConfiguredPath]:
    return ()


def _as_written(section: Any, base_dir: str) -> Any:
    return section


def _no_notices(section: Any) -> Sequence[ConfigNotice]:
    return ()


@dataclass(frozen=True)
class Source:
    """A render queue manager: its config section and how to build its readers.

    ``relative_to(section, folder)`` resolves the section's relative paths
    against the config file's folder; ``check(section)`` lists what is valid
    but will not work (``--check-config``, start-up and reloads warn about it);
    ``paths(section)`` the paths it names, which ``config.notices`` checks
    alike for every source;
    ``history(section, sink)`` writes the past for ``backfill``, and
    ``probe(section, out)`` prints a diagnosis of a real installation
    (``renderfarm-exporter probe``), for the sources that have them.
    """

    name: str
    schema: Schema
    readers: Callable[[Any], Sequence[Reader]]
    doc: str
    relative_to: Callable[[Any, str], Any] = _as_written
    check: Callable[[Any], Sequence[ConfigNotice]] = _no_notices
    paths: Callable[[Any], Sequence[ConfiguredPath]] = _no_paths
    history: Optional[Callable[[Any, HistorySink], Sequence[str]]] = None
    probe: Optional[Callable[[Any, TextIO], int]] = None


class HistorySink(Protocol):
    """Where a source's ``history(section, sink)`` writes the past its files hold (``backfill``).

    ``history`` returns the inputs it could not read, as "path: reason" lines.
    """

    step: float  # the resolution at which to rebuild counters

    def add(self, when: float, families: Iterable[Metric]) -> None:
        """Families whose samples all get the timestamp ``when``."""

    def progress(self, what: str) -> Callable[[float, float, int], None]:
        """A rate-limited progress reporter: ``report(done, total, records)``."""

    def note(self, line: str) -> None:
        """A summary line for the person running the backfill."""


#: Sources are plugins: a package registers its ``Source`` under this entry point group (Rush and Royal Render
#: are registered by this package's own pyproject.toml), so the core never imports a source by name.
ENTRY_POINT_GROUP = "renderfarm_exporter.sources"


@functools.cache
def registered_sources() -> Tuple[Source, ...]:
    """Every installed source, in name order (the exposition order); one per name."""
    points = importlib.metadata.entry_points()
    group = (points.select(group=ENTRY_POINT_GROUP) if hasattr(points, "select")
             else points.get(ENTRY_POINT_GROUP, ()))  # Python 3.9
    found: Dict[str, Source] = {}
    for point in group:
        source = point.load()
        found.setdefault(source.name, source)
    return tuple(found[name] for name in sorted(found))
