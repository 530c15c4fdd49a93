"""The published exposition: bodies made on the first scrape that asks, each family deflated once."""

import gzip
import sys
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
    assert b"".join(deflated) == first.text, "every byte deflated once, in order"

    deflated.clear()
    cache.update({"small": section("small", 7)})
    current = cache.current
    assert gzip.decompress(current.body(openmetrics=True, compressed=True)) == current.openmetrics
    assert gzip.decompress(current.body(openmetrics=False, compressed=True)) == current.text
    assert current.body(False, True) is current.body(False, True)  # made once per exposition
    assert not any(b"demo_big{" in piece for piece in deflated), "the big section's lines were not deflated again"
    assert deflated[0] == b"# HELP demo_big section big\n# TYPE demo_big gauge\n", "only its OpenMetrics header"
    assert b"".join(deflated[1:]).count(b"demo_small{") == 7, "the small section's lines once for both formats"
    assert first.text != current.text  # the older exposition still serves what it held
    assert first.text.startswith(big.text) and current.text == big.text + section("small", 7).text


def test_a_gzip_scrape_after_a_render_deflates_only_the_blocks_of_lines_that_changed(monkeypatch):
    deflated = []
    original = exposition._deflate_piece
    monkeypatch.setattr(exposition, "_deflate_piece", lambda parts: deflated.append(b"".join(parts)) or original(parts))
    hosts = {"render%03d" % i: i for i in range(2 * exposition.BLOCK_LINES)}
    renderer, cache = SectionRenderer(), ExpositionCache(["rush"])
    for busy, changed in ((0, ()), (1, ("render300",))):  # render300 is in the second block of lines
        hosts.update({host: 1000 for host in changed})
        families = [counter("demo_frames", "frames", ["host"], hosts),
                    gauge("demo_busy", "busy", ["host"], {"a": busy})]
        cache.update({"rush": renderer.render(families)})
        deflated.clear()
        assert gzip.decompress(cache.current.body(openmetrics=False, compressed=True)) == cache.current.text
    lines = render_section(families[:1]).text.splitlines(keepends=True)[2:]
    assert deflated == [b"".join(lines[exposition.BLOCK_LINES:]), b'demo_busy{host="a"} 1.0\n']


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
    """Scrapes add deflated pieces to families that the next render copies from: neither may break the other."""
    from exporter.families import LiveRows

    live, renderer, cache = LiveRows(), SectionRenderer(), ExpositionCache(["rush"])
    hosts = 40 * exposition.BLOCK_LINES
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
