"""rr-probe: the report a first real user pastes into a bug report."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon


def probe(config_path):
    return subprocess.run([sys.executable, "-m", "exporter", "rr-probe", "--config", config_path], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_probe_reports_module_classes_and_each_file(tmp_path, write_config):
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=5, seed=2)
    farm.write_all()
    farm.inject("client_info", "unreadable")
    result = probe(write_config(farm.config_text()))
    out = result.stdout
    assert result.returncode == 3, "a file that does not load is a problem: " + out
    assert "Module loaded: exporter.simulation.standin" in out
    assert "getRRModuleVersion(): stand-in 1.0 (renderfarm-exporter; not Royal Render)" in out
    for cls in ("_rrGlobalStatsLS", "_dailyStats_data", "_rrClientStats_data", "_server_clientInfo",
                "_StatsRenderTime", "_AppLicenses_v8", "_frameStatJob", "_ClientGroupList"):
        assert "  %-22s ok\n" % cls in out
    assert "Problems (1):\n  - %s: loadFromFile failed: cannot load %s" % (farm.path("client_info"),
                                                                         farm.path("client_info")) in out
    server = out.split("== server_stats")[1].split("\n== ")[0]
    assert '"dayMax": 1440' in server and '"index": ' in server
    assert "royalrender_clients{state=\"rendering\"}" in server
    info = out.split("== client_info")[1].split("\n== ")[0]
    assert "NOT READ: loadFromFile failed: cannot load %s" % farm.path("client_info") in info
    clients = out.split("== client_stats")[1].split("\n== ")[0]
    assert "files read: 5" in clients and "... 2 more files: 2 loaded (0 with members failing), 0 not loaded" in clients


def test_probe_without_the_vendor_module_says_what_it_tried(tmp_path, write_config):
    result = probe(write_config("royalrender:\n  root: '%s'\n" % tmp_path))
    assert result.returncode == 1
    assert "Module NOT LOADED" in result.stdout and "libpyRR" in result.stdout
    assert str(tmp_path / "bin" / "lx64" / "lib") in result.stdout


def test_probe_without_royalrender_section(write_config):
    result = probe(write_config("rush:\n  cpu_acct: []\n"))
    assert result.returncode == 2 and "no royalrender section" in result.stdout


def test_probe_compares_the_servers_frame_time_with_the_render_time_stats(tmp_path, write_config):
    """The unit of frameTime is an assumption (seconds); the render-time stats are PS*s: the probe says which fits."""
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=3)
    farm.write_all()
    server = json.load(open(farm.path("server_stats")))["data"]
    frame = server["day"][str(server["lastSaveDay"] % server["dayMax"])]["frameTime"]
    render = json.load(open(farm.path("render_time")))["data"]
    means = sorted(sum(layer["times"]) / len(layer["times"]) for project in render["projects"]
                   for layer in project["layers"] if layer["times"])
    median = means[len(means) // 2]
    out = probe(write_config(farm.config_text())).stdout
    assert ("Frame time unit: server_stats frameTime %g, render_time stats' median %g PS*s, ratio %.2f: "
            % (frame, median, frame / median)) in out
