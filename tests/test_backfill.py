"""backfill -> promtool tsdb create-blocks-from openmetrics -> a real Prometheus -> values at past times."""

import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from conftest import REPO, free_port, wait_until
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.backfill import SampleStore, parse_time
from exporter.rush.history import Replay
from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.inprocess

BASE = 1794000000  # 2026-11-06: Rush history starts here, in two files


def local_to_unix(local_seconds):
    """RR's local wall-clock seconds to Unix time, as the test computes it for itself."""
    return time.mktime(time.gmtime(local_seconds)[:8] + (-1,))


def write_rush_history(folder):
    """Ocpu.acct (rotated, older) and cpu.acct; returns the frames as (time, exit code)."""
    frames = [(BASE + 45 * i, (0, 0, 1, 0, -9)[i % 5]) for i in range(80)]
    folder.mkdir(parents=True)
    lines = ["p %d tahoe.7 SHOT anna %d render01 100 30 1 2 %d 1\n" % (t, n, code) for n, (t, code) in
             enumerate(frames)]
    (folder / "Ocpu.acct").write_text("".join(lines[:50]) + "r end %d online\n" % frames[49][0])
    (folder / "cpu.acct").write_text("r start %d online\n" % frames[50][0] + "".join(lines[50:]) + "garbage\n")
    return frames


def query(url, expr, when):
    params = urllib.parse.urlencode({"query": expr, "time": "%.3f" % when})
    with urllib.request.urlopen(url + "/api/v1/query?" + params, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def payload(path):
    with open(path) as handle:
        return json.load(handle)["data"]


@pytest.fixture
def farm(tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=3, seed=4)
    sim.write_all()
    return sim


@pytest.mark.ecosystem
def test_history_lands_in_a_real_prometheus_with_the_files_values(tmp_path, farm, write_config):
    frames = write_rush_history(tmp_path / "rush" / "render01")
    config = write_config(farm.config_text() + "rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "rush" / "**" / "cpu.acct"))
    output = tmp_path / "history.om"
    result = subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config", config, "--output",
                             str(output), "--step", "5m"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "rush: 2 files, 82 records, 1 malformed lines skipped" in result.stderr
    assert "wrote %s:" % output in result.stderr and output.read_text().endswith("# EOF\n")

    data = tmp_path / "data"
    blocks = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(output), str(data)],
                            capture_output=True, text=True, timeout=300)
    assert blocks.returncode == 0, blocks.stdout + blocks.stderr

    port = free_port()
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    prometheus = subprocess.Popen(
        ["prometheus", "--config.file", str(tmp_path / "prometheus.yml"), "--storage.tsdb.path", str(data),
         "--storage.tsdb.retention.time", "10y", "--web.listen-address", "127.0.0.1:%d" % port, "--log.level",
         "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    try:
        wait_until(lambda: _ready(url), 60, "Prometheus to load the blocks")

        # Rush: cumulative counters across the rotated and the current file, at 5-minute boundaries.
        for when in (BASE + 600, BASE + 1800, BASE + 3600):
            done = sum(1 for t, code in frames if t < when and code == 0)
            killed = sum(1 for t, code in frames if t < when and code < 0)
            assert query(url, 'rush_frames_total{host="render01",status="done"}', when) == done
            assert query(url, 'rush_frames_total{host="render01",status="killed"}', when) == killed
            assert query(url, 'rush_frame_wall_seconds_total{host="render01"}', when) == 30 * sum(
                1 for t, _ in frames if t < when)

        # Royal Render server stats: a day slot, a month slot before the day array, a year slot before that.
        stats = payload(farm.path("server_stats"))
        day_slot = 86400 / stats["dayMax"]
        back = 100
        day = stats["day"][str((stats["lastSaveDay"] - back) % stats["dayMax"])]
        when = local_to_unix((stats["lastSaveDay"] - back) * day_slot)
        assert query(url, 'royalrender_clients{state="free"}', when) == day["clients_free"]
        assert query(url, "royalrender_jobs", when) == day["jobs_total"]
        month_index = stats["monthMax"] - 1 - 200  # 100 hours ago: before the day array's 24 hours
        month = stats["month"][str(month_index)]
        when = local_to_unix((stats["lastSaveMonth"] - 1 - 200) * 1800)
        assert query(url, 'royalrender_clients{state="rendering"}', when) == month["clients_rendering"]
        assert query(url, "royalrender_frames_per_minute", when) == pytest.approx(month["framesPerMin"] / 30)
        year_index = stats["yearMax"] - 1 - 150  # 37.5 days ago: before the month array's 30 days
        year = stats["year"][str(year_index)]
        when = local_to_unix((stats["lastSaveYear"] - 1 - 150) * 21600)
        assert query(url, "royalrender_jobs_unfinished", when) == year["jobs_unfinished"]

        # Daily stats: today's first quarter-hour for a user.
        daily = payload(farm.path("daily_stats"))
        anna = next(e for e in daily["stats"] if e["name"] == "anna" and e["type"] == 0)
        midnight = time.mktime(time.localtime(time.time())[:3] + (0, 0, 0, 0, 0, -1))
        assert query(url, 'royalrender_user_jobs{user="anna",state="rendering"}', midnight) == \
            anna["slots"]["0"]["jobsRendering"]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)


def _ready(url):
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.daemon
def test_unreadable_input_is_skipped_or_stops_with_strict(tmp_path, farm, write_config):
    farm.inject("server_stats", "unreadable")
    config = write_config(farm.config_text())
    command = [sys.executable, "-m", "exporter", "backfill", "--config", config, "--output",
               str(tmp_path / "out.om"), "--sources", "royalrender"]
    skipped = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 1
    assert "skipped: %s" % farm.path("server_stats") in skipped.stderr
    assert "royalrender daily_stats: 1 files read" in skipped.stderr
    stopped = subprocess.run(command + ["--strict"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 2 and "backfill stopped (--strict)" in stopped.stderr


def test_sample_store_sorts_and_deduplicates():
    store = SampleStore(since=0, until=10_000)
    for when, value in ((200.0, 2), (100.0, 1), (200.0, 3), (20_000.0, 9)):
        gauge = GaugeMetricFamily("demo_value", "a \"quoted\" help\nline", labels=["host"])
        gauge.add_metric(['a"b'], value)
        counter = CounterMetricFamily("demo_events", "events")
        counter.add_metric([], value)
        store.add(when, [gauge, counter])
    out = io.StringIO()
    store.write(out)
    assert out.getvalue() == (
        "# TYPE demo_events counter\n# HELP demo_events events\n"
        "demo_events_total 1.0 100.0\ndemo_events_total 3.0 200.0\n"
        "# TYPE demo_value gauge\n# HELP demo_value a \\\"quoted\\\" help\\nline\n"
        'demo_value{host="a\\"b"} 1.0 100.0\ndemo_value{host="a\\"b"} 3.0 200.0\n'
        "# EOF\n"
    )
    assert store.summary() == (2, 4, 100.0, 200.0)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-01", 1793491200.0), ("2026-11-01T12:00:00Z", 1793534400.0), ("1793491200", 1793491200.0),
    ("30d", 1_800_000_000 - 30 * 86400), ("12h", 1_800_000_000 - 12 * 3600),
])
def test_time_arguments(text, expected):
    assert parse_time(text, now=1_800_000_000) == expected


@pytest.mark.daemon
def test_bad_time_argument_is_a_usage_error(write_config):
    result = subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config", write_config(""),
                             "--output", "/dev/null", "--since", "last tuesday"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "YYYY-MM-DD" in result.stderr


def test_a_fifo_among_the_history_files_is_skipped_not_waited_on(tmp_path):
    fifo, log = tmp_path / "Ocpu.acct", tmp_path / "cpu.acct"
    os.mkfifo(fifo)
    log.write_text("p 948300000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n")
    replay = Replay([str(fifo), str(log)], progress=lambda read, records: None)
    assert [frame.host for frame in replay.frames()] == ["render01"]
    assert replay.unreadable == [(str(fifo), "[Errno 22] refused: a FIFO, not a regular file: '%s'" % fifo)]
