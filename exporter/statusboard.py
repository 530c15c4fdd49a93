"""The status board: what the exporter knows about itself, written only through its methods.

Each writer tells the board about what it owns:

- the pipeline, which ingests and which watcher are counted, and when a
  reload retires one (its counts then move into the retired totals in one
  step, so the global counters never go down);
- the reloader, how the configuration was loaded and each reload went;
- the web config file, how its last re-read went.

``status`` joins these with the readings of the running readers into one
immutable ``RuntimeStatus``, which the exporter's own metrics and the status
page read. The writes that change what ``status`` returns call ``changed``,
so the exporter's section is rendered again.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace
from itertools import chain
from typing import Callable, List, Mapping, Optional, Protocol, Tuple

from exporter.checkpoint import CheckpointCounts
from exporter.paths import PathPattern, capped_patterns
from exporter.sources import FileStatus
from exporter.status import CHECKPOINT_DISCARD_REASONS, Notice, ReloadStatus, RuntimeStatus, WatchStatus


class CountedIngest(Protocol):
    """What the board reads of a source's ingest: its counters."""

    @property
    def failures(self) -> Mapping[str, int]:
        """Unexpected reader failures by kind."""

    @property
    def rescans(self) -> int:
        ...

    @property
    def section(self) -> str:
        """The source it reads."""

    @property
    def checkpoint_counts(self) -> CheckpointCounts:
        ...


class CountedWatcher(Protocol):
    """What the board reads of the watcher: its restarts and the state of each watch."""

    @property
    def restarts(self) -> int:
        ...

    @property
    def overflows(self) -> int:
        ...

    def statuses(self) -> Tuple[WatchStatus, ...]:
        ...


@dataclass(frozen=True)
class Readings:
    """What the running readers report now: their files, their patterns and their sources' set-up."""

    #: Each reader's files (its snapshot's ``files``: the same tuple while none of them changed).
    groups: Tuple[Tuple[FileStatus, ...], ...]
    patterns: Tuple[Tuple[str, PathPattern], ...]  # (kind, pattern)
    notes: Tuple[Tuple[str, str], ...]  # (what, value)

    @property
    def files(self) -> Tuple[FileStatus, ...]:
        """Every reader's files, one after the other."""
        return tuple(chain.from_iterable(self.groups))


class StatusBoard:
    def __init__(self, changed: Callable[[], None] = lambda: None):
        self._changed = changed
        self._lock = threading.Lock()  # one consistent view of what is counted live and what is retired
        self._reload = ReloadStatus()
        self._web_reload = ReloadStatus()
        self._counted: List[CountedIngest] = []
        self._watcher: Optional[CountedWatcher] = None
        self._retired_failures: Counter[str] = Counter()
        self._retired_rescans = 0
        self._retired_watch_restarts = 0
        self._retired_watch_overflows = 0
        self._retired_checkpoints = CheckpointCounts(0, 0, 0, {})
        self._storage_path = ""

    # -- the reloader's and the web config's -----------------------------------

    def config_loaded(self, when: float, notices: Tuple[Notice, ...] = ()) -> None:
        """The configuration now running was loaded at start-up, at ``when``, with these notices."""
        self._update_reload(lambda _: ReloadStatus(last_success_time=when, notices=notices))

    def reload_succeeded(self, when: float, notices: Tuple[Notice, ...] = ()) -> None:
        self._update_reload(lambda reload: reload.succeeded(when, notices))

    def reload_failed(self, when: float, error: str = "") -> None:
        self._update_reload(lambda reload: reload.failed(when, error))

    def reload_stuck(self, what: str) -> None:
        """A reload has run past its deadline and is stuck on ``what`` ("": none is any more)."""
        self._update_reload(lambda reload: replace(reload, stuck=what))

    def web_config_read(self, status: ReloadStatus) -> None:
        """The web config file's own account of its re-reads (it counts them itself)."""
        with self._lock:
            self._web_reload = status
        self._changed()

    def _update_reload(self, change: Callable[[ReloadStatus], ReloadStatus]) -> None:
        """One change of the reload status, made under the lock (the reloader and a stuck attempt's end race)."""
        with self._lock:
            self._reload = change(self._reload)
        self._changed()

    def storing(self, path: str) -> None:
        """Checkpoints are kept in ``path`` ("": none), for the status page."""
        self._storage_path = path

    # -- the pipeline's --------------------------------------------------------
    # These only move counts between live and retired, so the totals stay and ``changed`` is not called.

    def counting(self, ingest: CountedIngest) -> None:
        """Counts the ingest's failures and rescans from now on, until it is ``retired``."""
        with self._lock:
            self._counted.append(ingest)

    def retired(self, ingest: CountedIngest) -> None:
        """The ingest stopped for good: its counts join the retired totals in the same step."""
        with self._lock:
            self._counted.remove(ingest)
            self._retired_failures.update(ingest.failures)
            self._retired_rescans += ingest.rescans
            self._retired_checkpoints = _plus(self._retired_checkpoints, ingest.checkpoint_counts)

    def watching(self, watcher: CountedWatcher) -> None:
        """The watcher now running; the restarts of the one it replaces join the retired total."""
        with self._lock:
            if self._watcher is not None:
                self._retired_watch_restarts += self._watcher.restarts
                self._retired_watch_overflows += self._watcher.overflows
            self._watcher = watcher

    # -- readers ---------------------------------------------------------------

    def status(self, readings: Readings) -> RuntimeStatus:
        """Everything the board knows, with ``readings`` of the running readers, as one immutable value."""
        with self._lock:
            counted = list(self._counted)
            failures: Counter[str] = Counter(self._retired_failures)
            rescans = self._retired_rescans
            watcher, watch_restarts = self._watcher, self._retired_watch_restarts
            watch_overflows, checkpoints = self._retired_watch_overflows, self._retired_checkpoints
            reload, web_reload = self._reload, self._web_reload
        restored: Counter[str] = Counter()
        failing = []
        for ingest in counted:
            failures.update(ingest.failures)
            rescans += ingest.rescans
            counts = ingest.checkpoint_counts
            checkpoints = _plus(checkpoints, counts)
            restored[ingest.section] += counts.restored
            failing += [counts.failing] if counts.failing else []
        if watcher is not None:
            watch_restarts += watcher.restarts
            watch_overflows += watcher.overflows
        return RuntimeStatus(
            files=readings.files,
            file_groups=readings.groups,
            watches=watcher.statuses() if watcher is not None else (),
            reader_failures=dict(failures),
            rescans=rescans,
            watch_restarts=watch_restarts,
            watch_overflows=watch_overflows,
            checkpoint_writes=checkpoints.writes,
            checkpoint_write_failures=checkpoints.write_failures,
            checkpoint_restored=dict(restored),
            checkpoint_discarded=dict(checkpoints.discarded),
            reload=reload,
            web_reload=web_reload,
            patterns=readings.patterns,
            notes=readings.notes,
            capped_patterns=capped_patterns() & {pattern.pattern for _, pattern in readings.patterns},
            storage_path=self._storage_path,
            checkpoint_failing="; ".join(failing),
        )


def _plus(a: CheckpointCounts, b: CheckpointCounts) -> CheckpointCounts:
    """Totals of two counts; ``restored`` is not a total (it is per live source) and keeps ``a``'s."""
    discarded = Counter({reason: 0 for reason in CHECKPOINT_DISCARD_REASONS})
    discarded.update(a.discarded)
    discarded.update(b.discarded)
    return CheckpointCounts(a.writes + b.writes, a.write_failures + b.write_failures, a.restored, discarded)
