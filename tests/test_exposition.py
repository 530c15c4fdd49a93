"""The published exposition: bodies made on the first scrape that asks, each family deflated once."""

import gzip
import threading

from prometheus_client.core import GaugeMetricFamily

import exporter.exposition as exposition
from exporter.exposition import ExpositionCache, SectionRenderer, render_section
from exporter.families import counter, gauge


def section(name, count):
    family = GaugeMetricFamily("demo_%s" % name, "section %s" % name, labels=["i"])
    for i in range(count):
        family.add_metric([str(i)], float(i))
    return render_section([family])


def test_an_update_compresses_nothing_and_a_gzip_scrape_deflates_only_the_changed_section(monkeypatch):
    deflated = []
    original = exposition._deflate_piece
    monkeypatch.setattr(exposition, "_deflate_piece", lambda parts: deflated.append(b"".join(parts)) or original(parts))
    cache = ExpositionCache(["big", "small"])
    big = section("big", 5000)
    cache.update({"big": big, "small": section("small", 3)})
    for value in range(20):
        cache.update({"small": section("small", value)})
    assert deflated == []
    first = cache.current
    assert gzip.decompress(first.body(openmetrics=False, compressed=True)) == first.text
    assert deflated == [big.text, cache.sections()["small"].text]

    deflated.clear()
    cache.update({"small": section("small", 7)})
    current = cache.current
    assert gzip.decompress(current.body(openmetrics=True, compressed=True)) == current.openmetrics
    assert gzip.decompress(current.body(openmetrics=False, compressed=True)) == current.text
    assert current.body(False, True) is current.body(False, True)  # made once per exposition
    assert deflated == [big.openmetrics, cache.sections()["small"].openmetrics, cache.sections()["small"].text]
    assert first.text != current.text  # the older exposition still serves what it held
    assert first.text.startswith(big.text) and current.text == big.text + section("small", 7).text


def test_a_gzip_scrape_after_a_render_deflates_only_the_families_that_changed(monkeypatch):
    deflated = []
    original = exposition._deflate_piece
    monkeypatch.setattr(exposition, "_deflate_piece", lambda parts: deflated.append(b"".join(parts)) or original(parts))
    hosts = {"render%03d" % i: i for i in range(500)}
    renderer, cache = SectionRenderer(), ExpositionCache(["rush"])
    for busy in (0, 1):
        families = [counter("demo_frames", "frames", ["host"], hosts),
                    gauge("demo_busy", "busy", ["host"], {"a": busy})]
        cache.update({"rush": renderer.render(families)})
        assert gzip.decompress(cache.current.body(openmetrics=False, compressed=True)) == cache.current.text
    frames, busy = (render_section([family]).text for family in families)
    assert deflated == [frames, render_section([gauge("demo_busy", "busy", ["host"], {"a": 0})]).text, busy]


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
