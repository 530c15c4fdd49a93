"""The renderer in-process: its render thread, coalescing, section order, failures and readiness.

The content is a counting stand-in for the pipeline, so each render of a
source's section is counted where it happens.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import List

import pytest
from conftest import parse_samples, value, wait_until
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.renderer import RENDER_INTERVAL_SECONDS, DirtySections, Renderer
from exporter.status import RuntimeStatus

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
    return parse_samples(renderer.current().text.decode())


def test_a_burst_of_changes_is_coalesced_into_at_most_one_render_per_interval(parts):
    content, dirty, renderer = parts
    content.ingested_once.set()
    renderer.start()
    dirty.changed([SOURCE])
    assert renderer.wait_ready(10)
    before = content.renders[SOURCE]

    # A busy farm: the source publishes as fast as it can for half a second.
    started, marks = time.monotonic(), 0
    while marks < 100 or time.monotonic() - started < 0.5:
        content.version += 1
        dirty.changed([SOURCE])
        marks += 1
    elapsed = time.monotonic() - started

    wait_until(lambda: value(served(renderer), "test_version", copy="0") == content.version, 5,
               "the last change to be served")
    renders = content.renders[SOURCE] - before
    assert 1 <= renders <= elapsed / RENDER_INTERVAL_SECONDS + 2, (renders, marks, elapsed)
    assert renders * 20 < marks


def test_the_exporter_section_is_rendered_after_the_sections_it_reports(parts):
    content, dirty, renderer = parts
    content.ingested_once.set()
    renderer.start()
    dirty.changed([SOURCE])
    assert renderer.wait_ready(10)
    content.series = 3
    dirty.changed([SOURCE])
    # Rendered first, the exporter section would report the farm's previous size until the next change.
    wait_until(lambda: value(served(renderer), "renderfarm_exporter_exposition_series", section=SOURCE) == 3, 5,
               "the exporter section to report the farm section's new size")


def test_a_section_that_fails_to_render_keeps_its_last_render(parts):
    content, dirty, renderer = parts
    content.ingested_once.set()
    content.version = 1
    renderer.start()
    dirty.changed([SOURCE])
    wait_until(lambda: value(served(renderer), "test_version", copy="0") == 1, 5, "the first render")

    content.broken, content.version = True, 2
    tried = content.renders[SOURCE]
    dirty.changed([SOURCE])
    wait_until(lambda: content.renders[SOURCE] > tried and not dirty.pending(), 5, "the failing render")
    assert value(served(renderer), "test_version", copy="0") == 1
    assert renderer.alive()

    content.broken, content.version = False, 3
    dirty.changed([SOURCE])
    wait_until(lambda: value(served(renderer), "test_version", copy="0") == 3, 5, "the render after recovery")


def test_ready_only_once_every_source_was_read_and_rendered(parts):
    content, dirty, renderer = parts
    renderer.start()
    dirty.changed([SOURCE])
    wait_until(lambda: content.renders[SOURCE] >= 1 and not dirty.pending(), 5, "a render before the first read")
    assert not renderer.is_ready()
    content.ingested_once.set()
    dirty.changed([SOURCE])
    assert renderer.wait_ready(5)


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
