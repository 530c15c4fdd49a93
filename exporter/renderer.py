"""The renderer: turns changed sections into the cached exposition, when a scrape is about to read it.

Sections are marked dirty from any thread (``DirtySections``): a source's
section when it publishes new snapshots, the exporter's own section with
every change (its metrics describe the others), the process section when a
scrape finds it older than ``PROCESS_REFRESH_SECONDS``. Rendering pays only
when someone reads it, so it happens:

- on the *render* thread, once per scrape, ``AHEAD_SECONDS`` before the
  scrape it expects (``Scrapes``: from the pattern of the last gaps
  between scrapes), with the gzip bodies the scrapers asked for: the
  scrape then sends bytes made before it;
- in the scrape, for changes older than ``AHEAD_SECONDS`` that no render
  took (``exposition_for_scrape``: a scraper off any pattern, a person at
  a browser): an appended line is served at most half a second after its
  read, whoever scrapes;
- on the render thread, as the first full reads come in (at most once per
  ``RENDER_INTERVAL_SECONDS``; the pass after the last of them at once),
  until the exporter is ready.

An exporter nobody scrapes renders nothing after it is ready. After renders
the thread hands freed heap back to the system (``memory.HeapTrimmer``),
never inside a scrape or the render lock.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, Iterable, List, Optional, Protocol, Sequence, Set

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric

from exporter import memory, selfmetrics
from exporter.exposition import Exposition, ExpositionCache, PlacedSection, Section, SectionRenderer
from exporter.logs import fields
from exporter.memory import HeapTrimmer
from exporter.status import RuntimeStatus

log = logging.getLogger(__name__)

EXPORTER_SECTION = "exporter"
PROCESS_SECTION = "process"
#: Process metrics are re-rendered at most this often, and only when scraped.
PROCESS_REFRESH_SECONDS = 5.0
#: Until the exporter is ready, the render thread starts a pass at least this long after the previous one.
RENDER_INTERVAL_SECONDS = 1.0
#: Until ready, the render thread looks this often whether every first read is in (then it renders at once).
READY_POLL_SECONDS = 0.05
#: Once ready, the render thread renders this long before the scrape it expects, once per expected scrape, and a
#: scrape renders changes older than this: a farm that changes all the time costs one pass and one gzip per scrape
#: interval, not one per batch, and a scrape at 30,000 series sends bytes made before it instead of rendering and
#: compressing (5 + 7 ms, more on a busy machine). Prometheus scrapes at a fixed interval and phase, so the
#: expected time is right to milliseconds.
AHEAD_SECONDS = 0.5
#: The scrape rendered ahead of may come this much after the time expected (a busy machine, a scraper's jitter)
#: and still get what was rendered for it; a change then waits at most ``AHEAD_SECONDS + LATE_SECONDS``.
LATE_SECONDS = 0.2
#: Scrapes closer than this to the previous one (a person at a browser, a second scraper just after the first)
#: are not taken for the scrape interval.
SHORTEST_SCRAPE_INTERVAL = 2.0


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
        #: When the oldest pending mark was made (monotonic; None: nothing dirty).
        self._since: Optional[float] = None
        self._closed = False

    def changed(self, sources: Iterable[str] = ()) -> None:
        """The sources' data changed (none: only the exporter's status); the exporter's section always
        changes with them, since it reports on every source."""
        self.mark(set(sources) | {EXPORTER_SECTION})

    def mark(self, names: Iterable[str]) -> None:
        with self._cond:
            if self._since is None:
                self._since = time.monotonic()
            self._names.update(names)
            self._cond.notify()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._names)

    def since(self) -> Optional[float]:
        """When the oldest pending change was marked (None: nothing is dirty)."""
        return self._since

    def wait(self, timeout: Optional[float]) -> None:
        """Returns when a section is dirty, after ``timeout`` (None: no limit), or once closed."""
        with self._cond:
            if not self._names and not self._closed:
                self._cond.wait(timeout)

    def take(self) -> Set[str]:
        """The dirty sections, which are clean from now on."""
        with self._cond:
            names, self._names, self._since = self._names, set(), None
            return names

    def close(self) -> None:
        """Wakes the render thread for good (it is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify()


class Scrapes:
    """When scrapes came, to expect the next one from the pattern of the last gaps between them: a regular
    scraper (the last two gaps alike: the next comes one gap later), or two scraping at different phases
    (gaps alternate: the next comes after the gap before the last). Any other pattern (a person at a browser
    between two scrapes, three scrapers) expects nothing for a while: those scrapes render themselves."""

    def __init__(self) -> None:
        self._times: Deque[float] = deque(maxlen=4)

    def seen(self, now: float) -> None:
        if not self._times or now - self._times[-1] >= SHORTEST_SCRAPE_INTERVAL:
            self._times.append(now)

    def next_expected(self, now: float) -> Optional[float]:
        """When the next scrape is expected; None without a pattern, and once the expected one is well overdue
        (a scraper that stopped gets no renders ahead of scrapes that do not come)."""
        times = list(self._times)
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        if len(gaps) >= 2 and _alike(gaps[-1], gaps[-2]):
            gap = gaps[-1]
        elif len(gaps) >= 3 and _alike(gaps[-1], gaps[-3]):
            gap = gaps[-2]
        else:
            return None
        expected = times[-1] + gap
        return expected if now < expected + gap else None


def _alike(one: float, other: float) -> bool:
    return abs(one - other) <= max(0.05, 0.05 * other)


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
        self._scrapes = Scrapes()
        #: One render at a time: the render thread's and the scrapes' (whose handlers may run on a pool).
        self._render_lock = threading.Lock()
        self._last_pass = float("-inf")
        #: The expected scrape the thread last rendered ahead of (it waits for that scrape to come).
        self._rendered_ahead_of: Optional[float] = None
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
        """The exposition to serve a scrape, with changes older than ``AHEAD_SECONDS`` rendered first, or the
        render under way finished (the changes it took are pending no more, yet not published); a scrape also
        asks for process metrics older than 5 s again.

        Demand-driven: an exporter nobody scrapes does no periodic work, and
        process metrics lag by at most one scrape interval.
        """
        now = time.monotonic()
        self._scrapes.seen(now)
        if now - self._process_rendered_at >= PROCESS_REFRESH_SECONDS:
            self._process_rendered_at = now
            self._dirty.mark({PROCESS_SECTION})
        if self._stale(now):
            self._render_dirty()
        elif self._render_lock.locked():  # a render (the one ahead of this scrape) is being made: serve it, not
            with self._render_lock:      # the exposition of the scrape before
                pass
        return self._cache.current

    def _stale(self, now: float) -> bool:
        """Whether a change older than ``AHEAD_SECONDS`` waits for a render, unless this is the scrape the thread
        rendered ahead of, up to ``LATE_SECONDS`` late (it must not render what came after the render ahead)."""
        since = self._dirty.since()
        ahead = self._rendered_ahead_of
        if ahead is not None and ahead <= now <= ahead + LATE_SECONDS:
            return False
        return since is not None and now - since >= AHEAD_SECONDS

    def scrape_may_be_slow(self, openmetrics: bool, compressed: bool) -> bool:
        """Whether the next scrape of that format renders, waits for a render or compresses (then it is answered
        off the HTTP loop)."""
        return (self._stale(time.monotonic()) or self._render_lock.locked()
                or compressed and not self._cache.current.has_gzip(openmetrics))

    def render_now(self, sources: Iterable[str]) -> None:
        """Renders the sources' sections, the process and the exporter's in the calling thread (``--once``)."""
        with self._render_lock:
            self._render_pass(set(sources) | {PROCESS_SECTION, EXPORTER_SECTION})

    # -- the render thread -----------------------------------------------------

    def _loop(self) -> None:
        self._dirty.mark({PROCESS_SECTION})
        while not self._stop.is_set():
            due = self._render_due()
            if due is None and not self._dirty.pending():  # wait for a change (or a pending trim)
                self._dirty.wait(self._wait_timeout(None))
            elif due is None:  # changes, and no render ahead due: look again in a while (a scrape renders them)
                self._stop.wait(self._wait_timeout(RENDER_INTERVAL_SECONDS))
            elif due > time.monotonic():  # until ready, looked at again soon: the first reads may end meanwhile
                wait = due - time.monotonic()
                self._stop.wait(self._wait_timeout(wait if self._ready.is_set() else min(wait, READY_POLL_SECONDS)))
            if self._stop.is_set():
                return
            due = self._render_due()
            if due is not None and due <= time.monotonic():
                if self._ready.is_set():
                    self._render_ahead()
                else:
                    self._render_dirty()
            else:
                self._trimmer.trim_if_due()

    def _wait_timeout(self, seconds: Optional[float]) -> Optional[float]:
        """``seconds``, or less when a heap trim is due sooner (None: no limit)."""
        trim = self._trimmer.wait_timeout()
        return seconds if trim is None else trim if seconds is None else min(seconds, trim)

    def _render_due(self) -> Optional[float]:
        """When the render thread renders what is dirty: as it comes until ready (one pass per interval), then
        ``AHEAD_SECONDS`` before the expected scrape; None when nothing is dirty, no scrape is expected, or the
        thread rendered ahead of the expected one already."""
        if not self._dirty.pending():
            return None
        if not self._ready.is_set():  # the pass that makes it ready comes at once, not an interval later
            return time.monotonic() if self._content.ingested() else self._last_pass + RENDER_INTERVAL_SECONDS
        expected = self._scrapes.next_expected(time.monotonic())
        if expected is None or expected == self._rendered_ahead_of:
            return None
        return expected - AHEAD_SECONDS

    def _render_ahead(self) -> None:
        """Renders ahead of the expected scrape, and makes the gzip bodies the last exposition's scrapers asked
        for, so that the scrape only sends them."""
        self._rendered_ahead_of = self._scrapes.next_expected(time.monotonic())
        asked = self._cache.current.compressed_formats()
        self._render_dirty()
        current = self._cache.current
        for openmetrics in asked:
            current.gzip(openmetrics)
        self._trimmer.trim_if_due()  # half a second before the scrape, outside the render lock

    def _render_dirty(self) -> None:
        """Renders what is dirty (nothing when a render just took it), in the calling thread."""
        with self._render_lock:
            dirty = self._dirty.take()
            if dirty:
                self._last_pass = time.monotonic()
                self._render_pass(dirty)
                self._trimmer.rendered()
            if not self._ready.is_set() and not self._dirty.pending() and self._content.ingested():
                memory.freeze_long_lived()
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
