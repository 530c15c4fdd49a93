"""Live reload of the configuration: SIGHUP and POST /-/reload on the real daemon."""

import os
import re
import signal
import time
import urllib.request

import pytest
from conftest import value, wait_until

from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon

LINE = "p 948300000 tahoe-1 T anna %d render01 100 30 1 2 0 77\n"


def post(daemon, path):
    request = urllib.request.Request(daemon.url + path, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def reload_count(daemon, result):
    return value(daemon.samples(), "renderfarm_exporter_config_reloads_total", result=result) or 0


def sighup_and_wait(daemon, result="success"):
    before = reload_count(daemon, result)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: reload_count(daemon, result) == before + 1, 15, "the reload (%s)" % result)
    return daemon.samples()


def test_sighup_adds_and_removes_a_source_and_leaves_the_other_untouched(tmp_path, start_daemon, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text("".join(LINE % i for i in range(3)))
    rush_only = "rush:\n  cpu_acct: ['%s']\n" % acct
    daemon = start_daemon("--config", write_config(rush_only))
    daemon.wait_for_value("rush_frames_total", 3, host="render01", status="done")
    # Rotate to a name the config does not match: a rebuilt Rush reader could only count the new file.
    os.rename(acct, tmp_path / "cpu.acct.1")
    acct.write_text(LINE % 9)
    daemon.wait_for_value("rush_frames_total", 4, host="render01", status="done")
    pid = daemon.proc.pid

    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=5)
    farm.write_all()
    write_config(rush_only + farm.config_text())
    samples = sighup_and_wait(daemon)
    wait_until(lambda: value(daemon.samples(), "royalrender_jobs") is not None, 15, "Royal Render's metrics")
    samples = daemon.samples()
    assert value(samples, "rush_frames_total", host="render01", status="done") == 4
    assert value(samples, "renderfarm_exporter_config_last_reload_successful") == 1
    assert "changed_sources=royalrender" in daemon.log()

    write_config(rush_only)
    sighup_and_wait(daemon)
    wait_until(lambda: value(daemon.samples(), "royalrender_jobs") is None, 10, "Royal Render's metrics to go")
    samples = daemon.samples()
    assert value(samples, "rush_frames_total", host="render01", status="done") == 4
    assert not [name for name, _ in samples if name.startswith("royalrender_")]
    assert value(samples, "renderfarm_exporter_config_reloads_total", result="success") == 2
    assert daemon.proc.pid == pid and daemon.proc.poll() is None

    with open(acct, "a") as handle:
        handle.write(LINE % 10)
    daemon.wait_for_value("rush_frames_total", 5, host="render01", status="done")


def test_an_invalid_config_is_rejected_and_the_old_one_keeps_running(tmp_path, start_daemon, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    good = "rush:\n  cpu_acct: ['%s']\n" % acct
    daemon = start_daemon("--config", write_config(good))
    started = value(daemon.samples(), "renderfarm_exporter_config_last_reload_success_timestamp_seconds")
    assert started is not None

    attempted_after = time.time()
    write_config(good + "watch:\n  mode: sometimes\n")
    samples = sighup_and_wait(daemon, "failure")
    assert value(samples, "renderfarm_exporter_config_last_reload_successful") == 0
    assert value(samples, "renderfarm_exporter_config_last_reload_attempt_timestamp_seconds") >= attempted_after - 1
    assert value(samples, "renderfarm_exporter_config_last_reload_success_timestamp_seconds") == started
    assert "watch.mode (line 4)" in daemon.log()

    with open(acct, "a") as handle:
        handle.write(LINE % 2)
    daemon.wait_for_value("rush_frames_total", 2, host="render01", status="done")

    write_config(good)
    samples = sighup_and_wait(daemon)
    assert value(samples, "renderfarm_exporter_config_last_reload_successful") == 1
    assert value(samples, "renderfarm_exporter_config_last_reload_success_timestamp_seconds") > started


def test_post_reload_only_with_the_lifecycle_flag(tmp_path, start_daemon, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % acct)
    closed = start_daemon("--config", config)
    assert post(closed, "/-/reload")[0] == 403
    assert value(closed.samples(), "renderfarm_exporter_config_reloads_total", result="success") == 0

    daemon = start_daemon("--config", config, "--web.enable-lifecycle")
    assert daemon.get("/-/reload")[0] == 405
    assert post(daemon, "/-/reload") == (200, b"Reloaded\n")

    write_config("rush:\n  cpu_acct: 7\n")
    status, body = post(daemon, "/-/reload")
    assert status == 500 and b"rush.cpu_acct (line 2)" in body
    samples = daemon.wait_for_value("renderfarm_exporter_config_last_reload_successful", 0)  # rendered async
    assert value(samples, "rush_frames_total", host="render01", status="done") == 1
    # The page's problem says why, with the key path, not only that it failed.
    rows = re.findall(r"<tr>(.*?)</tr>", daemon.get("/")[2].decode(), re.S)
    (rejected,) = [row for row in rows if "REJECTED" in row]
    assert "the previous configuration is still in use" in rejected and "rush.cpu_acct (line 2)" in rejected


def test_a_watch_only_reload_during_the_first_read_counts_every_frame_once(tmp_path, start_daemon, write_config):
    """The reading thread of each source stays: a second one on the same readers would count lines twice."""
    logs = tmp_path / "logs"
    for host in range(2000):
        folder = logs / ("render%04d" % host)
        folder.mkdir(parents=True)
        (folder / "cpu.acct").write_text("".join(
            "p 948300000 tahoe-1 T anna %d render%04d 100 30 1 2 0 77\n" % (frame, host) for frame in range(3)))
    rush = "rush:\n  cpu_acct: ['%s/*/cpu.acct']\n" % logs
    config = write_config(rush)
    daemon = start_daemon("--config", config, ready=False)
    wait_until(lambda: daemon.proc.poll() is None and os.path.exists(daemon.stderr_path)
               and "watching folder" in daemon.log(), 20, "the first read to start")
    write_config(rush + "watch:\n  debounce: 50ms\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_ready(60)

    def total():
        samples = daemon.samples()
        return sum(v for (name, labels), v in samples.items() if name == "rush_frames_total")

    wait_until(lambda: total() >= 6000 and reload_count(daemon, "success") == 1, 60, "every frame and the reload")
    assert total() == 6000
