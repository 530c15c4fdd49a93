"""The published exposition: bodies made on the first scrape that asks, a gzip body once per exposition."""

import gzip
import sys
import threading

import pytest
from prometheus_client.core import GaugeMetricFamily

import exporter.exposition as exposition
from exporter.exposition import ExpositionCache, SectionRenderer, render_section
from exporter.families import gauge

pytestmark = pytest.mark.inprocess


def section(name, count):
    family = GaugeMetricFamily("demo_%s" % name, "section %s" % name, labels=["i"])
    for i in range(count):
        family.add_metric([str(i)], float(i))
    return render_section([family])


def test_an_update_compresses_nothing_and_a_gzip_scrape_compresses_its_exposition_once(monkeypatch):
    compressed = []
    original = exposition._gzip
    monkeypatch.setattr(exposition, "_gzip", lambda parts: compressed.append(b"".join(parts)) or original(parts))
    cache = ExpositionCache(["big", "small"])
    big = section("big", 5000)
    cache.update({"big": big, "small": section("small", 3)})
    for value in range(20):
        cache.update({"small": section("small", value)})
    assert compressed == [] and cache.current.compressed_formats() == ()
    first = cache.current
    assert gzip.decompress(first.body(openmetrics=False, compressed=True)) == first.text
    assert compressed == [first.text] and first.has_gzip(False) and not first.has_gzip(True)
    assert first.body(False, True) is first.body(False, True) and len(compressed) == 1, "made once per exposition"

    cache.update({"small": section("small", 7)})
    current = cache.current
    assert gzip.decompress(current.body(openmetrics=True, compressed=True)) == current.openmetrics
    assert gzip.decompress(current.body(openmetrics=False, compressed=True)) == current.text
    assert compressed[1:] == [current.openmetrics, current.text]
    assert first.text != current.text  # the older exposition still serves what it held
    assert first.text.startswith(big.text) and current.text == big.text + section("small", 7).text


def test_a_gzip_body_is_one_stream_over_the_text_so_small_families_compress_together():
    """Many small families (a 3-host farm has dozens of a few lines each) compress as well as the text would:
    one stream, not a piece per family."""
    families = [gauge("demo_%02d" % number, "family %d of a small farm" % number, ["host"],
                      {"render%02d" % host: float(number * host) for host in range(3)}) for number in range(60)]
    cache = ExpositionCache(["farm"])
    cache.update({"farm": render_section(families)})
    text, body = cache.current.text, cache.current.body(openmetrics=False, compressed=True)
    assert gzip.decompress(body) == text and len(text) / len(body) >= 3.5


def test_concurrent_scrapes_get_equal_bodies():
    cache = ExpositionCache(["a", "b"])
    cache.update({"a": section("a", 20000), "b": section("b", 10)})
    current = cache.current
    bodies = []
    barrier = threading.Barrier(4)

    def scrape():
        barrier.wait()
        bodies.append([current.body(om, gz) for om in (False, True) for gz in (False, True)])

    scrapers = [threading.Thread(target=scrape) for _ in range(4)]
    for scraper in scrapers:
        scraper.start()
    for scraper in scrapers:
        scraper.join(timeout=60)
    assert len(bodies) == 4 and all(body == bodies[0] for body in bodies)
    text, text_gzip, openmetrics, openmetrics_gzip = bodies[0]
    assert gzip.decompress(text_gzip) == text and gzip.decompress(openmetrics_gzip) == openmetrics
    assert openmetrics.endswith(b"# EOF\n") and text == cache.sections()["a"].text + cache.sections()["b"].text


def test_renders_and_gzip_scrapes_at_once_never_fail_and_every_body_is_its_text():
    """Renders while scrapes compress and join what the previous render published: neither may break the other."""
    from exporter.families import LiveRows

    live, renderer, cache = LiveRows(), SectionRenderer(), ExpositionCache(["rush"])
    hosts = 10_000
    for host in range(hosts):
        live.set("render%05d" % host, 0)
    stop, failures, scrapes = threading.Event(), [], [0]

    def scrape():
        while not stop.is_set():
            current = cache.current
            for openmetrics in (False, True):
                if gzip.decompress(current.body(openmetrics, True)) != current.body(openmetrics, False):
                    failures.append("gzip body is not its text")
            scrapes[0] += 1

    scrapers = [threading.Thread(target=scrape) for _ in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can: the races get their chances
    for scraper in scrapers:
        scraper.start()
    try:
        for step in range(800):
            live.set("render%05d" % (step * 7919 % hosts), step)
            cache.update({"rush": renderer.render([gauge("demo_busy", "busy", ["host"], live.frozen())])})
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        for scraper in scrapers:
            scraper.join(timeout=60)
    assert failures == [] and scrapes[0] > 0
