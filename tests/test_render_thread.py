"""The renderer in-process: renders at the scrape and ahead of the expected one, section order, failures, readiness.

The content is a counting stand-in for the pipeline, so each render of a
source's section is counted where it happens.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from typing import List

import pytest
from conftest import parse_samples, value, wait_until
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.memory import HeapTrimmer
from exporter.renderer import (
    AHEAD_SECONDS,
    RENDER_INTERVAL_SECONDS,
    SHORTEST_SCRAPE_INTERVAL,
    DirtySections,
    Renderer,
    Scrapes,
)
from exporter.status import RuntimeStatus

pytestmark = pytest.mark.inprocess

SOURCE = "farm"


class CountingContent:
    """A source section whose value and size the test sets; counts how often it is rendered."""

    def __init__(self) -> None:
        self.version = 0
        self.series = 1
        self.broken = False
        self.renders: Counter = Counter()
        self.ingested_once = threading.Event()

    def families(self, source: str) -> List[Metric]:
        self.renders[source] += 1
        if self.broken:
            raise RuntimeError("a family that cannot be built, on purpose")
        family = GaugeMetricFamily("test_version", "The content's version", labels=["copy"])
        for copy in range(self.series):
            family.add_metric([str(copy)], self.version)
        return [family]

    def ingested(self) -> bool:
        return self.ingested_once.is_set()


def no_status() -> RuntimeStatus:
    return RuntimeStatus(files=(), watches=(), reader_failures={}, rescans=0, watch_restarts=0)


@pytest.fixture
def parts():
    content = CountingContent()
    dirty = DirtySections()
    renderer = Renderer([SOURCE], content, no_status, dirty)
    yield content, dirty, renderer
    renderer.stop()


def served(renderer: Renderer):
    """What was last rendered, without asking for a render."""
    return parse_samples(renderer.current().text.decode())


def scraped(renderer: Renderer):
    """What a scrape gets (it renders what is dirty first)."""
    return parse_samples(renderer.exposition_for_scrape().text.decode())


def ready(content: CountingContent, dirty: DirtySections, renderer: Renderer) -> int:
    """Starts the renderer on a read source; returns how often the source was rendered until it was ready.

    In the pipeline's order: a source's first read is published (its section marked) before it counts as read,
    else the renderer could be ready before it rendered the section."""
    dirty.changed([SOURCE])
    content.ingested_once.set()
    renderer.start()
    assert renderer.wait_ready(10)
    return content.renders[SOURCE]


def test_changes_nobody_scrapes_are_not_rendered_and_a_scrape_renders_them_all_at_once(parts):
    """Once the oldest is older than the lead of a render ahead (the burst lasts longer)."""
    content, dirty, renderer = parts
    before = ready(content, dirty, renderer)
    started, marks = time.monotonic(), 0
    while marks < 100 or time.monotonic() - started < AHEAD_SECONDS + 0.1:  # a busy farm publishing fast
        content.version += 1
        dirty.changed([SOURCE])
        marks += 1
    assert content.renders[SOURCE] == before, "no scrape expected: nothing rendered ahead"
    assert value(scraped(renderer), "test_version", copy="0") == content.version, "the next scrape is fresh"
    assert content.renders[SOURCE] == before + 1
    assert value(scraped(renderer), "test_version", copy="0") == content.version
    assert content.renders[SOURCE] == before + 1, "nothing changed: nothing rendered"


@pytest.mark.daemon  # in process, but at the real scrape cadence (three scrapes 2 s apart): 6-8 s, too slow for --fast
def test_changes_are_rendered_ahead_of_the_scrape_the_renderer_expects(parts):
    content, dirty, renderer = parts
    ready(content, dirty, renderer)
    due = time.monotonic()
    for _ in range(3):  # a regular scraper, the input of this test
        time.sleep(max(0.0, due - time.monotonic()))
        renderer.exposition_for_scrape().gzip(openmetrics=True)  # as Prometheus asks
        due += SHORTEST_SCRAPE_INTERVAL + 0.1
    expected = due
    content.version += 1
    dirty.changed([SOURCE])
    wait_until(lambda: value(served(renderer), "test_version", copy="0") == content.version, 10,
               "a render without a scrape")
    assert time.monotonic() < expected, "rendered before the expected scrape"

    assert renderer.current().compressed_formats() == (True,), "the body the scraper asks for, made ahead"

    # Once per expected scrape: what changes after the render ahead waits for a scrape, which renders it once it
    # is older than the render ahead's lead.
    content.version += 1
    dirty.changed([SOURCE])
    time.sleep(max(0.0, expected - 0.2 - time.monotonic()))  # up to the scrape's time, the input of this test
    assert value(served(renderer), "test_version", copy="0") == content.version - 1
    wait_until(lambda: value(scraped(renderer), "test_version", copy="0") == content.version, 5, "a scrape's render")


def test_expected_scrapes_follow_a_regular_scraper_or_two_and_stop_when_scrapes_stop():
    scrapes = Scrapes()
    assert scrapes.next_expected(0.0) is None
    for at in (100.0, 115.0):
        scrapes.seen(at)
    assert scrapes.next_expected(116.0) is None, "one gap is no pattern yet"
    scrapes.seen(116.0)  # a person at the status page's link, just after: not a scrape of the pattern
    scrapes.seen(130.01)
    assert scrapes.next_expected(131.0) == pytest.approx(145.02), "one gap after the last"
    assert scrapes.next_expected(160.1) is None, "a scrape well overdue: no more renders ahead of it"

    two = Scrapes()  # two Prometheus servers, 3 s apart, every 15 s
    for at in (100.0, 103.0, 115.0, 118.0):
        two.seen(at)
    assert two.next_expected(119.0) == 130.0
    two.seen(130.0)
    assert two.next_expected(131.0) == 133.0

    broken = Scrapes()  # a scrape off the pattern: nothing expected until the pattern shows again
    for at in (100.0, 115.0, 130.0, 137.0):
        broken.seen(at)
    assert broken.next_expected(138.0) is None


def test_the_exporter_section_is_rendered_after_the_sections_it_reports(parts):
    content, dirty, renderer = parts
    ready(content, dirty, renderer)
    content.series = 3
    dirty.changed([SOURCE])
    # Rendered first, the exporter section would report the farm's previous size until the next change.
    wait_until(lambda: value(scraped(renderer), "renderfarm_exporter_exposition_series", section=SOURCE) == 3, 5,
               "the exporter section to report the farm section's new size")


def test_a_section_that_fails_to_render_keeps_its_last_render(parts):
    content, dirty, renderer = parts
    content.version = 1
    ready(content, dirty, renderer)
    assert value(scraped(renderer), "test_version", copy="0") == 1

    content.broken, content.version = True, 2
    tried = content.renders[SOURCE]
    dirty.changed([SOURCE])
    wait_until(lambda: value(scraped(renderer), "test_version", copy="0") == 1 and content.renders[SOURCE] > tried,
               5, "the failing render")
    assert renderer.alive()

    content.broken, content.version = False, 3
    dirty.changed([SOURCE])
    wait_until(lambda: value(scraped(renderer), "test_version", copy="0") == 3, 5, "the render after recovery")


def test_ready_only_once_every_source_was_read_and_rendered(parts):
    content, dirty, renderer = parts
    renderer.start()
    dirty.changed([SOURCE])
    wait_until(lambda: content.renders[SOURCE] >= 1 and not dirty.pending(), 5, "a render before the first read")
    assert not renderer.is_ready()
    content.ingested_once.set()
    dirty.changed([SOURCE])
    assert renderer.wait_ready(5)


def test_the_render_that_makes_it_ready_comes_when_the_first_reads_end_not_a_render_interval_later(parts):
    """A restart from checkpoints reads in a fraction of a second: /-/ready must not wait out the start-up cadence."""
    content, dirty, renderer = parts
    renderer.start()
    dirty.changed([SOURCE])
    wait_until(lambda: content.renders[SOURCE] >= 1 and not dirty.pending(), 5, "a render before the first read")
    dirty.changed([SOURCE])  # the first read ends just after a pass, in the pipeline's order
    content.ingested_once.set()
    assert renderer.wait_ready(RENDER_INTERVAL_SECONDS / 2), "ready only at the next start-up pass"


def test_render_now_renders_sources_process_and_exporter_in_the_calling_thread(parts):
    content, _, renderer = parts
    content.version = 7
    renderer.render_now([SOURCE])
    samples = served(renderer)
    assert value(samples, "test_version", copy="0") == 7
    assert any(name.startswith("python_") for name, _ in samples), "the process section"
    assert value(samples, "renderfarm_exporter_exposition_series", section=SOURCE) == 1
    assert list(renderer.sections()) == [SOURCE, "exporter", "process"]
    assert not renderer.alive()


def test_stop_ends_the_render_thread(parts):
    _, _, renderer = parts
    renderer.start()
    assert renderer.alive()
    renderer.stop()
    assert not renderer.alive()


@pytest.mark.daemon  # in process, but at the real scrape cadence: about 7 s, too slow for --fast
def test_the_heap_is_trimmed_on_the_render_thread_never_in_a_scrape(monkeypatch):
    """``malloc_trim`` holds the heap: a scrape's allocations would wait for it."""
    trims: List[str] = []
    monkeypatch.setattr("exporter.memory._malloc_trim", lambda: lambda pad: trims.append(
        threading.current_thread().name) or 1)
    monkeypatch.setattr("exporter.renderer.HeapTrimmer", functools.partial(HeapTrimmer, interval=0.0))  # always due
    content, dirty = CountingContent(), DirtySections()
    renderer = Renderer([SOURCE], content, no_status, dirty)
    try:
        content.version = 1
        ready(content, dirty, renderer)
        trims.clear()
        content.version = 2
        dirty.changed([SOURCE])
        time.sleep(AHEAD_SECONDS + 0.05)  # the input: a change older than the lead, with no scrape expected
        assert value(scraped(renderer), "test_version", copy="0") == 2, "the scrape rendered it"
        assert "MainThread" not in trims, "trimmed in the scrape"
        due = time.monotonic()
        for _ in range(3):  # a regular scraper: the next render is ahead of its scrape, on the render thread
            time.sleep(max(0.0, due - time.monotonic()))
            renderer.exposition_for_scrape()
            due += SHORTEST_SCRAPE_INTERVAL + 0.1
        trims.clear()
        content.version = 3
        dirty.changed([SOURCE])
        wait_until(lambda: value(served(renderer), "test_version", copy="0") == 3 and trims, 10,
                   "a trim after the render ahead")
        assert set(trims) == {"render"}
    finally:
        renderer.stop()
