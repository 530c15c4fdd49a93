"""Attacks on #26's runtime (a batch-reading watcher, renders ahead of the expected scrape, bytes formatted
directly): cases read from the promises in the docs, each a test against the real daemon or, for the formatter
and the renderer's timing, in-process.

The promises: an appended line is in any scrape that starts a second after it (``renderer.py``: a change waits
at most ``AHEAD_SECONDS + LATE_SECONDS`` for a render); the exposition is what prometheus-client writes.
"""

from __future__ import annotations

import math
import threading
import time
from typing import List

from conftest import parse_samples, value
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest as text_of
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_of

from exporter.exposition import SectionRenderer, _Families
from exporter.families import counter as rows_counter
from exporter.families import gauge as rows_gauge
from exporter.families import is_utf8
from exporter.renderer import AHEAD_SECONDS, LATE_SECONDS, SHORTEST_SCRAPE_INTERVAL, DirtySections, Renderer
from exporter.status import RuntimeStatus

# -- the byte formatter against prometheus-client ---------------------------------------------------------------

#: Any character, and the ones a formatter may get wrong: escapes, line and paragraph separators, NUL, a BOM,
#: C1 controls, astral characters, lone surrogates (a non-UTF-8 name that got past ``families.label_value``).
CHARACTERS = st.one_of(st.characters(), st.sampled_from(list('\r\n\t\\"\x00\x7f\x85\u2028\u2029\ufeff\U0001F600{}=,#'
                                                             '\udcff\ud800')))
LABEL_VALUES = st.text(alphabet=CHARACTERS, max_size=8)
VALUES = st.one_of(st.floats(), st.integers(-2**70, 2**70),
                   st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e-300, 5e-324, 1.7976931348623157e308,
                                    2**53 + 1, 2**63, -2**63 - 1, 1e21, 1e22, 123456.7, 1234567.0, True, False]))


def _family(kind: str, rows) -> Metric:
    if kind == "row_gauge":
        return rows_gauge("attack_value", "value \\ \n", ["a", "b"], rows)
    if kind == "row_counter":
        return rows_counter("attack_value", "value", ["a", "b"], {
            key: abs(number) if isinstance(number, float) and not math.isnan(number) else number
            for key, number in rows.items()})
    family = GaugeMetricFamily("attack_value", "value", labels=["a", "b"])
    for key, number in rows.items():
        family.add_metric(list(key), number)
    return family


def _prometheus_client(family: Metric):
    openmetrics = openmetrics_of(_Families([family]))
    return text_of(_Families([family])), openmetrics[: -len(b"# EOF\n")]


@settings(max_examples=400, deadline=None)
@given(renders=st.lists(st.dictionaries(st.tuples(LABEL_VALUES, LABEL_VALUES), VALUES, max_size=5),
                        min_size=1, max_size=4),
       kind=st.sampled_from(["row_gauge", "row_counter", "gauge"]))
@example(renders=[{("\r", "\u2028"): -0.0}, {("\r", "\u2028"): 2**53 + 1, ("\udcff", "x"): 1e-300}],
         kind="row_gauge")
@example(renders=[{("a\\x41", '"'): math.nan}, {("a\\x41", '"'): math.inf, ("\x85", "\ufeff"): 2**64}],
         kind="row_counter")
def test_new_and_changed_rows_are_what_prometheus_client_writes_for_any_label_value_and_number(renders, kind):
    """Render after render; a series whose label value is not UTF-8 is left out, the others written as
    prometheus-client writes them (the oracle is given the same family without it)."""
    renderer = SectionRenderer()
    for rows in renders:
        section = renderer.render([_family(kind, rows)])
        writable = {key: number for key, number in rows.items() if all(map(is_utf8, key))}
        assert (section.text, section.openmetrics) == _prometheus_client(_family(kind, writable))


# -- the render ahead of the expected scrape --------------------------------------------------------------------


class GatedContent:
    """One source whose value the test sets; a render of it can be held (a slow render on a busy machine)."""

    def __init__(self) -> None:
        self.version = 0
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()

    def families(self, source: str) -> List[Metric]:
        version = self.version
        if not self.open.is_set():
            self.held.set()
            self.open.wait(30)
        return [GaugeMetricFamily("attack_version", "The content's version", value=version)]

    def ingested(self) -> bool:
        return True


def _no_status() -> RuntimeStatus:
    return RuntimeStatus(files=(), watches=(), reader_failures={}, rescans=0, watch_restarts=0)


def _version(exposition) -> float:
    return value(parse_samples(exposition.text.decode()), "attack_version")


def test_the_expected_scrape_during_a_slow_render_ahead_waits_for_it_instead_of_serving_the_scrape_before():
    """The render ahead starts half a second before the expected scrape; when it takes longer (a big change, a
    busy machine), the expected scrape came while it ran. It must not serve the exposition of the previous
    scrape (a scrape interval old): it waits for the render that was made for it."""
    content, dirty = GatedContent(), DirtySections()
    renderer = Renderer(["farm"], content, _no_status, dirty)
    try:
        renderer.start()
        dirty.changed(["farm"])
        assert renderer.wait_ready(10)
        due = time.monotonic()
        for _ in range(3):  # a regular scraper, the input of this test
            time.sleep(max(0.0, due - time.monotonic()))
            renderer.exposition_for_scrape()
            due += SHORTEST_SCRAPE_INTERVAL + 0.1
        content.version = 1
        content.open.clear()  # the render ahead will take a while
        dirty.changed(["farm"])
        assert content.held.wait(due - time.monotonic() + 1), "no render ahead of the expected scrape"
        changed_at = time.monotonic() - AHEAD_SECONDS  # at the latest
        time.sleep(max(0.0, due + LATE_SECONDS / 2 - time.monotonic()))  # the expected scrape, on time
        threading.Timer(0.3, content.open.set).start()  # the render ahead ends 0.3 s after the scrape came
        served = renderer.exposition_for_scrape()
        assert _version(served) == 1, "served %.1f s after the change, without it" % (time.monotonic() - changed_at)
    finally:
        content.open.set()
        renderer.stop()
