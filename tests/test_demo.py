"""The built-in demo farm: growing counters over HTTP, and promtool finds nothing to lint."""

import os
import shutil
import subprocess
import time

import pytest
from conftest import value, wait_until

from exporter.simulation.demo import DemoFarm

pytestmark = pytest.mark.inprocess


def total_frames(samples):
    return sum(v for (name, _), v in samples.items() if name == "rush_frames_total")


@pytest.mark.ecosystem
def test_demo_serves_growing_counters_and_passes_promtool(start_daemon):
    daemon = start_daemon("--demo")
    first = daemon.samples()
    hosts = {dict(labels)["host"] for name, labels in first if name == "rush_utilization_ratio"}
    assert hosts == {"render%02d" % i for i in range(1, 37)}
    assert total_frames(first) > 0
    wait_until(lambda: total_frames(daemon.samples()) > total_frames(first), 10, "frames to grow")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_build_info", version=_version(samples),
                 python_version=_python(samples)) == 1
    assert all(v == 1 for (name, _), v in samples.items() if name == "renderfarm_exporter_source_up")
    assert any(name == "rush_utilization_ratio" for name, _ in samples)
    assert any(name == "rush_user_frames_total" for name, _ in samples)
    rr_clients = {dict(labels)["client"] for name, labels in samples if name == "royalrender_client_cpu_ratio"}
    assert rr_clients == {"rrclient%03d" % i for i in range(1, 25)}
    assert sum(value(samples, "royalrender_clients", state=s) for s in ("free", "rendering", "disabled")) == 24

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test installs Debian's prometheus package"
    _, _, body = daemon.get("/metrics")
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    assert lint.stdout.strip() == b"" and lint.stderr.strip() == b""
    # a first run logs no warning: no record of the demo's hosts is dated ahead of the clock
    assert [line for line in daemon.log().splitlines() if "level=warn" in line or "level=error" in line] == []


def record_times(folder):
    """The time field of every record the demo farm wrote (``r start 1700000000 online``, ``p 1700000000 ...``)."""
    times = []
    for directory, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                times += [int(line.split()[2] if line.startswith("r ") else line.split()[1]) for line in handle]
    return times


def test_the_demo_farm_writes_its_history_in_the_past_and_then_at_the_clock(tmp_path):
    """Without it the demo's first minute was dozens of "record dated ahead of the clock" warnings."""
    farm = DemoFarm(str(tmp_path), seed=3)
    started = time.time()
    farm.create(backlog_steps=40)
    history = record_times(tmp_path)
    assert min(history) <= started - 39 * farm.step_seconds and max(history) <= time.time()
    for _ in range(200):  # 200 ticks at once: 1,000 s of the old 5 s per tick, written in well under a second
        farm.step()
    written = record_times(tmp_path)
    assert len(written) > len(history) and max(written) <= time.time()


def _label(samples, name, label):
    return next(dict(labels)[label] for n, labels in samples if n == name)


def _version(samples):
    return _label(samples, "renderfarm_exporter_build_info", "version")


def _python(samples):
    return _label(samples, "renderfarm_exporter_build_info", "python_version")
