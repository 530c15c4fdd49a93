"""The renderer: turns changed sections into the cached exposition, on a thread of its own.

Sections are marked dirty from any thread (``DirtySections``): a source's
section when it publishes new snapshots, the exporter's own section with
every change (its metrics describe the others), the process section when a
scrape finds it older than ``PROCESS_REFRESH_SECONDS``. The *render* thread
re-renders what is dirty, at most once per ``RENDER_INTERVAL_SECONDS``, and
publishes it into the ``ExpositionCache`` that every scrape is served from.
After renders it hands freed heap back to the system (``memory.HeapTrimmer``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Set

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric

from exporter import selfmetrics
from exporter.exposition import Exposition, ExpositionCache, PlacedSection, Section, SectionRenderer
from exporter.logs import fields
from exporter.memory import HeapTrimmer
from exporter.status import RuntimeStatus

log = logging.getLogger(__name__)

EXPORTER_SECTION = "exporter"
PROCESS_SECTION = "process"
#: Process metrics are re-rendered at most this often, and only when scraped.
PROCESS_REFRESH_SECONDS = 5.0
#: A render pass starts at least this long after the previous one; what becomes dirty meanwhile joins it.
#:
#: Why: on a busy farm (200 files each appending a line a second) a source publishes after nearly every
#: debounced batch, and each publish also dirties the exporter's section, whose per-file metrics cost as
#: much to render as the source's own. Rendering on every mark would mean hundreds of renders a second;
#: with this interval it is at most 12. Why this long and no longer: the freshness target is p99 <= 250 ms
#: from an appended line to the scrape; before the render come ``watch.debounce`` (20 ms) or, while a file
#: keeps changing, ``watch.debounce_max_wait`` (100 ms), and the read; 80 ms here plus a render of a few
#: tens of milliseconds stays within the target. A change after a quiet spell is rendered at once.
RENDER_INTERVAL_SECONDS = 0.08


class SectionContent(Protocol):
    """Where the source sections come from (the pipeline)."""

    def families(self, source: str) -> List[Metric]:
        """The metric families of the source's newest snapshots."""

    def ingested(self) -> bool:
        """Whether every source has finished its first full read."""


class DirtySections:
    """The sections waiting for a render: marked by any thread, taken by the render thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._names: Set[str] = set()
        self._closed = False

    def changed(self, sources: Iterable[str] = ()) -> None:
        """The sources' data changed (none: only the exporter's status); the exporter's section always
        changes with them, since it reports on every source."""
        self.mark(set(sources) | {EXPORTER_SECTION})

    def mark(self, names: Iterable[str]) -> None:
        with self._cond:
            self._names.update(names)
            self._cond.notify()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._names)

    def wait(self, timeout: Optional[float]) -> None:
        """Returns when a section is dirty, after ``timeout`` (None: no limit), or once closed."""
        with self._cond:
            if not self._names and not self._closed:
                self._cond.wait(timeout)

    def take(self) -> Set[str]:
        """The dirty sections, which are clean from now on."""
        with self._cond:
            names, self._names = self._names, set()
            return names

    def close(self) -> None:
        """Wakes the render thread for good (it is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify()


class Renderer:
    def __init__(self, sources: Sequence[str], content: SectionContent, status: Callable[[], RuntimeStatus],
                 dirty: DirtySections):
        """``sources`` fixes the order of their sections in the exposition; ``status`` is rendered as the
        exporter's section."""
        self._content = content
        self._status = status
        self._dirty = dirty
        self._cache = ExpositionCache(list(sources) + [EXPORTER_SECTION, PROCESS_SECTION])
        self._section_renderers: Dict[str, SectionRenderer] = {}
        self._self_metrics = selfmetrics.SelfMetrics()
        self._process_registry = CollectorRegistry(auto_describe=False)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self._process_registry)
        self._process_rendered_at = time.monotonic()
        self._trimmer = HeapTrimmer()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="render", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.close()
        if self._thread.is_alive():  # never started with --once
            self._thread.join(timeout=1.0)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def is_ready(self) -> bool:
        """Whether every source's first full read has been rendered (``/-/ready``)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- what HTTP serves ------------------------------------------------------

    def current(self) -> Exposition:
        """The exposition as last rendered."""
        return self._cache.current

    def sections(self) -> Dict[str, PlacedSection]:
        """Each rendered section's stats (series, render time), in exposition order."""
        return dict(self._cache.sections())

    def exposition_for_scrape(self) -> Exposition:
        """The exposition to serve a scrape; a scrape also asks for process metrics older than 5 s again.

        Demand-driven: an exporter nobody scrapes does no periodic work, and
        process metrics lag by at most one scrape interval.
        """
        if time.monotonic() - self._process_rendered_at >= PROCESS_REFRESH_SECONDS:
            self._process_rendered_at = time.monotonic()
            self._dirty.mark({PROCESS_SECTION})
        return self._cache.current

    def render_now(self, sources: Iterable[str]) -> None:
        """Renders the sources' sections, the process and the exporter's in the calling thread (``--once``)."""
        self._render_pass(set(sources) | {PROCESS_SECTION, EXPORTER_SECTION})

    # -- the render thread -----------------------------------------------------

    def _loop(self) -> None:
        self._dirty.mark({PROCESS_SECTION})
        last_pass = float("-inf")
        while True:
            self._dirty.wait(self._trimmer.wait_timeout())
            if self._dirty.pending():
                # Coalesce: what else becomes dirty before the interval is over joins this pass.
                self._stop.wait(max(0.0, last_pass + RENDER_INTERVAL_SECONDS - time.monotonic()))
            if self._stop.is_set():
                return
            dirty = self._dirty.take()
            if dirty:
                last_pass = time.monotonic()
                self._render_pass(dirty)
                self._trimmer.rendered()
            else:
                self._trimmer.trim_if_due()
            if not self._ready.is_set() and not self._dirty.pending() and self._content.ingested():
                self._ready.set()

    def _render_pass(self, names: Set[str]) -> None:
        """Renders the sections and publishes them in one update, so a scrape never sees a source's new
        values beside the exporter's older account of them. The exporter's section is rendered last: it
        reports the other sections' renders, these ones included."""
        rendered: Dict[str, Section] = {}
        for name in sorted(names - {EXPORTER_SECTION}):
            self._render_into(rendered, name, functools.partial(self._families, name))
        if EXPORTER_SECTION in names:
            sections: Dict[str, PlacedSection] = {**self._cache.sections(), **rendered}
            self._render_into(rendered, EXPORTER_SECTION,
                              lambda: self._self_metrics.families(self._status(), sections))
        if rendered:
            self._cache.update(rendered)

    def _render_into(self, rendered: Dict[str, Section], name: str, families: Callable[[], List[Metric]]) -> None:
        """Adds the section's render to ``rendered``; a section whose render fails keeps its last."""
        try:
            renderer = self._section_renderers.setdefault(name, SectionRenderer())
            rendered[name] = renderer.render(families())
        except Exception:  # one bad section must not break the scrape
            log.exception("rendering a section failed; serving its previous render", extra=fields(section=name))

    def _families(self, section: str) -> List[Metric]:
        if section == PROCESS_SECTION:
            return list(self._process_registry.collect())
        return self._content.families(section)
