"""Names that are not UTF-8 (a folder rsynced from a host with another locale, bytes in a cpu.acct field): each
becomes its documented escaped label value, and nothing else stops updating because of it.

Real files, the real daemon on loopback, a real Prometheus scraping it.
"""

import html
import os
import subprocess
import time

import pytest
from conftest import free_port, value, wait_until
from prometheus_client.core import GaugeMetricFamily
from test_ecosystem import _query, tool

from exporter.exposition import SectionRenderer, render_section
from exporter.families import counter, label_value, name_of
from exporter.simulation.simulator import RrFarmSimulator
from exporter.status import RuntimeStatus
from exporter.web import statuspage

pytestmark = pytest.mark.inprocess

NOW = int(time.time())


def frame(host, when=NOW, title=b"T", owner=b"anna"):
    return b"p %d tahoe.7 %s %s 1 %s 100 10 0 0 0 1\n" % (when, title, owner, host)


@pytest.mark.ecosystem
def test_a_folder_named_with_bytes_that_are_not_utf8_is_one_escaped_label_and_stops_nothing(
        tmp_path, start_daemon, write_config):
    farm = tmp_path / "farm"
    good = farm / "render01" / "cpu.acct"
    good.parent.mkdir(parents=True)
    good.write_bytes(frame(b"render01") + frame(b"x\xff") + frame(b"x\xfe") + frame(b"x\\xff")
                     + frame(b"render01", NOW, b"SHOT\xe9", b"ann\xe9"))
    bad_folder = os.path.join(os.fsencode(farm), b"host\xff\xfe")
    os.mkdir(bad_folder)
    bad = os.path.join(bad_folder, b"cpu.acct")
    with open(bad, "wb") as handle:
        handle.write(b"u %d 40\n" % NOW)
    bad_label = str(farm) + "/host\\xff\\xfe/cpu.acct"  # literal backslashes: the documented escape
    good_path = str(good)
    config = write_config(
        "rush:\n  cpu_acct:\n    - path: '%s/**/cpu.acct'\n      host_from_path: '/farm/(?P<host>[^/]+)/'\n"
        "  breakdowns: {users: {enabled: true}, titles: {enabled: true}}\n"
        "watch:\n  rescan_interval: 1h\n" % farm)
    daemon = start_daemon("--config", config, "--storage.path", str(tmp_path / "state"))

    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=bad_label) == 1
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=good_path) == 1
    # The host of the folder's gauges, from host_from_path, and hosts written in records: escaped, never merged.
    assert value(samples, "rush_utilization_ratio", host="host\\xff\\xfe") == 0.4
    assert value(samples, "rush_frames_total", host="x\\xff", status="done") == 1
    assert value(samples, "rush_frames_total", host="x\\xfe", status="done") == 1
    assert value(samples, "rush_frames_total", host="x\\\\xff", status="done") == 1  # written x\xff in the file
    assert value(samples, "rush_frames_total", host="render01", status="done") == 2
    assert value(samples, "rush_user_frames_total", user="ann\\xe9", status="done") == 1  # latin-1 bytes
    assert value(samples, "rush_job_title_frames_total", title="SHOT\\xe9", status="done") == 1

    # Everything keeps updating: an appended frame, and the odd folder's file going down (a FIFO in its place).
    with open(good, "ab") as handle:
        handle.write(frame(b"render01", NOW + 1))
    daemon.wait_for_value("rush_frames_total", 3, host="render01", status="done")
    os.unlink(bad)
    os.mkfifo(bad)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind="rush_cpu_acct", path=bad_label)
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind="rush_cpu_acct", path=bad_label,
                 reason="io") == 1
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=good_path) == 1
    for section in ("rush", "exporter", "process"):  # the exporter's own section reports its previous render
        assert value(samples, "renderfarm_exporter_exposition_dropped_series", section=section) == 0
    wait_until(lambda: (value(daemon.samples(), "renderfarm_exporter_checkpoint_writes_total") or 0) >= 1, 10,
               "a checkpoint holding the odd path")
    assert value(daemon.samples(), "renderfarm_exporter_checkpoint_write_failures_total") == 0

    status, _, page = daemon.get("/")
    assert status == 200
    text = page.decode("utf-8")
    assert text.count(html.escape(bad_label)) == 2  # in Problems (down) and in Files
    status, _, page = daemon.get("/?q=host%5Cxff")  # the filter matches what the page shows
    assert status == 200 and html.escape(bad_label) in page.decode() and good_path not in page.decode()

    lint = subprocess.run([tool("promtool"), "check", "metrics"], input=daemon.get("/metrics")[2],
                          capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    port = free_port()
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: farm\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % daemon.port)
    prometheus = subprocess.Popen(
        [tool("prometheus"), "--config.file", str(prometheus_config), "--storage.tsdb.path", str(tmp_path / "data"),
         "--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    try:
        def answer(expr):
            try:
                return _query(url, expr)
            except OSError:
                return []

        wait_until(lambda: answer('up{job="farm"} == 1'), 30, "Prometheus to scrape the exporter")
        selector = 'renderfarm_exporter_source_up{path="%s"}' % bad_label.replace("\\", "\\\\")
        wait_until(lambda: answer(selector), 10, "the escaped path in Prometheus")
        (series,) = answer(selector)
        assert series["metric"]["path"] == bad_label and series["value"][1] == "0"
        assert name_of(series["metric"]["path"]) == bad  # the label gives the name's bytes back
        assert answer('rush_frames_total{host="x\\\\xfe", status="done"}')[0]["value"][1] == "1"
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)

    # A restart from the checkpoint that holds the odd path reads nothing twice.
    daemon.stop()
    restarted = start_daemon("--config", config, "--storage.path", str(tmp_path / "state"))
    samples = restarted.samples()
    assert value(samples, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 1
    assert value(samples, "rush_frames_total", host="render01", status="done") == 3
    assert value(samples, "rush_frames_total", host="x\\xff", status="done") == 1
    assert value(samples, "rush_user_frames_total", user="ann\\xe9", status="done") == 1
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=bad_label) == 0


def test_label_values_are_one_to_one_and_give_the_bytes_back():
    names = [b"render01", b"host\xff\xfe", b"host\\xff\\xfe", b"host\\xff", b"x\\\xff", b"C:\\Users\\x",
             "r\u00e9nder".encode(), b"\xed\xa0\x80", b"a\\\\x41", b"a\\x4"]
    values = [label_value(os.fsdecode(name)) for name in names]
    assert len(set(values)) == len(names)
    assert [name_of(v) for v in values] == names
    for v in values:
        v.encode("utf-8")
    assert values[0] == "render01" and values[5] == "C:\\Users\\x" and values[6] == "r\u00e9nder"  # as they were
    assert values[1] == "host\\xff\\xfe" and values[3] == "host\\\\xff"


def test_a_series_that_cannot_be_rendered_is_left_out_alone_counted_and_on_the_status_page():
    renderer = SectionRenderer()
    good = GaugeMetricFamily("demo_plain", "plain samples", labels=["name"])
    good.add_metric(["a"], 1.0)
    bad = GaugeMetricFamily("demo_plain_bad", "plain samples", labels=["name"])
    bad.add_metric(["ok"], 2.0)
    bad.add_metric(["\udcff"], 3.0)
    rows = {"one": 1.0, "b\udcfe": 2.0, "two": 3.0}
    section = renderer.render([good, bad, counter("demo_rows", "rows", ["name"], rows)])
    expected = render_section([good, counter("demo_rows", "rows", ["name"], {"one": 1.0, "two": 3.0})])
    assert section.dropped == (("demo_plain_bad", 1), ("demo_rows", 1))
    assert b'demo_plain_bad{name="ok"} 2.0' in section.text
    assert section.text.replace(b'# HELP demo_plain_bad plain samples\n# TYPE demo_plain_bad gauge\n'
                                b'demo_plain_bad{name="ok"} 2.0\n', b"") == expected.text
    # The next render, one value changed: the same rows left out, the changed value in.
    rows = {"one": 5.0, "b\udcfe": 2.0, "two": 3.0}
    again = renderer.render([good, bad, counter("demo_rows", "rows", ["name"], rows)])
    assert again.dropped == section.dropped and b'demo_rows_total{name="one"} 5.0' in again.text

    status = RuntimeStatus(files=(), watches=(), reader_failures={}, rescans=0, watch_restarts=0)
    page = statuspage.render(status, {"demo": again}, "/metrics", True).decode()
    assert "demo: demo_rows" in page and "LEFT OUT" in page


def test_a_royal_render_client_file_named_with_bytes_that_are_not_utf8_is_read_under_its_escaped_name(
        tmp_path, start_daemon, write_config):
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=3)
    farm.write_all()
    odd = "rrclient\udcff"  # the file rrclient<0xFF>.db, as os.fsdecode names it
    farm.clients.append(odd)
    farm.write_client_stats(odd)
    daemon = start_daemon("--config", write_config(farm.config_text() + "watch:\n  rescan_interval: 1h\n"))
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="royalrender_client_stats",
                                    path=label_value(farm.path("client_stats", odd)))
    assert value(samples, "royalrender_client_cpu_ratio", client="rrclient\\xff") is not None
    assert value(samples, "royalrender_client_cpu_ratio", client=farm.clients[0]) is not None
    assert value(samples, "renderfarm_exporter_source_parse_errors_total", kind="royalrender_client_stats",
                 path=label_value(farm.path("client_stats", odd))) == 0
