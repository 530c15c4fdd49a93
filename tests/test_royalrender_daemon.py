"""The real daemon over a simulated RR farm: worker faults, recovery, files coming and going."""

import os

import pytest
from conftest import value, wait_until

from exporter.royalrender.client import LAUNCHER
from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon

SERVER = "royalrender_server_stats"


@pytest.fixture
def farm(tmp_path):
    sim = RrFarmSimulator(str(tmp_path / "rr"), clients=4, seed=3)
    sim.write_all()
    return sim


def rr_config(write_config, farm, timeout="2s", extra=""):
    text = farm.config_text().replace("read_timeout: 5s", "read_timeout: %s" % timeout)
    return write_config(text + extra + "watch:\n  rescan_interval: 1h\n")


def up(samples, kind, path):
    return value(samples, "renderfarm_exporter_source_up", kind="royalrender_" + kind, path=path)


def test_required_metrics_from_a_simulated_farm(farm, start_daemon, write_config):
    samples = start_daemon("--config", rr_config(write_config, farm)).samples()
    for state in ("free", "rendering", "disabled"):
        assert value(samples, "royalrender_clients", state=state) is not None
    assert sum(value(samples, "royalrender_clients", state=s) for s in ("free", "rendering", "disabled")) == 4
    for scope in ("process", "machine"):
        assert 0 <= value(samples, "royalrender_server_cpu_ratio", scope=scope) <= 1
    for name in ("royalrender_jobs_rendering", "royalrender_jobs_unfinished", "royalrender_jobs",
                 "royalrender_server_temperature_celsius", "royalrender_clients_average_temperature_celsius"):
        assert value(samples, name) is not None, name
    for client in farm.clients:
        assert value(samples, "royalrender_client_wol_last_success", client=client) in (0, 1)
        assert value(samples, "royalrender_client_cpu_ratio", client=client) is not None
    assert value(samples, "royalrender_user_jobs", user="anna", state="rendering") is not None
    assert up(samples, "server_stats", farm.path("server_stats")) == 1


@pytest.mark.parametrize("fault", ["crash", "hang", "unreadable", "half_written"])
def test_fault_keeps_last_values_marks_file_down_and_recovers(farm, start_daemon, write_config, fault):
    daemon = start_daemon("--config", rr_config(write_config, farm, timeout="1s"))
    path = farm.path("server_stats")
    before = daemon.samples()
    jobs = value(before, "royalrender_jobs")
    client = farm.clients[0]

    farm.inject("server_stats", fault)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind="royalrender_" + "server_stats",
                                    path=path, timeout=15)
    assert value(samples, "royalrender_jobs") == jobs, "last good values are kept"
    assert up(samples, "client_info", farm.path("client_info")) == 1
    assert value(samples, "royalrender_client_wol_last_success", client=client) is not None
    parse_errors = value(samples, "renderfarm_exporter_source_parse_errors_total", kind="royalrender_server_stats",
                         path=path)
    failures = {reason: value(samples, "renderfarm_exporter_source_read_failures_total",
                              kind="royalrender_server_stats", path=path, reason=reason)
                for reason in ("crash", "timeout", "io", "unavailable")}
    what_failed = {"crash": "crash", "hang": "timeout"}.get(fault)  # random or half-written bytes: the content
    if what_failed:
        assert parse_errors == 0 and failures.pop(what_failed) >= 1
    else:
        assert parse_errors >= 1
    assert set(failures.values()) == {0}, failures

    farm.heal("server_stats")
    farm.write_server_stats()
    daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind="royalrender_server_stats", path=path,
                          timeout=20)
    if fault in ("crash", "hang"):
        assert "Royal Render worker failed; the next read starts a new one" in daemon.log()


def test_client_files_appear_and_disappear(farm, start_daemon, write_config):
    daemon = start_daemon("--config", rr_config(write_config, farm))
    farm.clients.append("rrclient999")
    farm.write_client_stats("rrclient999")
    wait_until(lambda: value(daemon.samples(), "royalrender_client_cpu_ratio", client="rrclient999") is not None,
               10, "the new client's series")
    os.unlink(farm.path("client_stats", "rrclient999"))
    wait_until(lambda: value(daemon.samples(), "royalrender_client_cpu_ratio", client="rrclient999") is None,
               10, "the removed client's series to go")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_up", kind="royalrender_client_stats",
                 path=farm.path("client_stats", "rrclient999")) is None
    assert value(samples, "royalrender_client_cpu_ratio", client=farm.clients[0]) is not None


def test_a_hung_rr_read_does_not_delay_rush(farm, start_daemon, write_config, tmp_path):
    acct = tmp_path / "cpu.acct"
    acct.write_text("")
    rush = "rush:\n  cpu_acct: ['%s']\n" % acct
    daemon = start_daemon("--config", rr_config(write_config, farm, timeout="20s", extra=rush))
    farm.inject("server_stats", "hang")
    farm.wait_until_hung("server_stats")
    with open(acct, "a") as handle:
        handle.write("p 948300000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n")
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done", timeout=3)
    assert "Royal Render worker failed" not in daemon.log(), "the RR read was still hung while Rush was served"


def _workers_of(farm) -> list:
    """PIDs of the RR worker processes started for ``farm`` (their command line names its folder)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                command = handle.read().split(b"\0")
        except OSError:
            continue
        if LAUNCHER.encode() in command and farm.root.encode() in command:
            pids.append(int(pid))
    return pids


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_worker_hung_in_a_read_ends_with_the_exporter(farm, start_daemon, write_config, how):
    daemon = start_daemon("--config", rr_config(write_config, farm, timeout="1h"))
    farm.inject("server_stats", "hang")
    farm.wait_until_hung("server_stats")
    assert _workers_of(farm), "a worker hangs in the read"
    if how == "SIGKILL":
        daemon.proc.kill()
        daemon.proc.wait()
    else:
        daemon.stop()
    wait_until(lambda: not _workers_of(farm), 10, "the hung worker to end with its exporter")
