"""Sources are plugins: a third source, installed as its own package, works with no line of exporter/ naming it.

The package (tests/plugins/thirdfarm) is built and installed with the real
pip into a folder of its own, which only the daemon under test sees
(``PYTHONPATH``): the rest of the test run keeps its two sources.
"""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, install_plugin, value

pytestmark = pytest.mark.inprocess



@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    return install_plugin("thirdfarm", str(tmp_path_factory.mktemp("plugin-site")))


def env_with(plugin_path):
    return dict(os.environ, PYTHONPATH=plugin_path)


def write_queue(path, waiting, history=()):
    with open(path, "w") as handle:
        json.dump({"queue": "gpu", "jobs": {"waiting": waiting, "rendering": 2}, "history": list(history)}, handle)


def test_the_core_never_names_the_plugin():
    for folder, _, names in os.walk(os.path.join(REPO, "exporter")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    assert "thirdfarm" not in handle.read(), name


def test_a_plugin_source_is_configured_served_shown_and_backfilled(plugin_path, start_daemon, write_config,
                                                                   tmp_path):
    queues = tmp_path / "queues"
    queues.mkdir()
    write_queue(queues / "gpu.json", 4, [[1795000000, 3], [1795000060, 5]])
    config = write_config("thirdfarm:\n  paths: ['%s/*.json']\n" % queues)
    env = env_with(plugin_path)

    checked = subprocess.run([sys.executable, "-m", "exporter", "--check-config", "--config", config], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env=env)
    assert checked.returncode == 0 and checked.stdout.strip() == "%s is valid" % config, checked.stderr

    daemon = start_daemon("--config", config, env=env)
    samples = daemon.wait_for_value("thirdfarm_jobs", 4, queue="gpu", state="waiting")
    path = str(queues / "gpu.json")
    assert value(samples, "renderfarm_exporter_source_up", kind="thirdfarm_queue", path=path) == 1
    write_queue(queues / "gpu.json", 7)
    daemon.wait_for_value("thirdfarm_jobs", 7, queue="gpu", state="waiting")
    (queues / "gpu.json").write_text("{ not json")
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind="thirdfarm_queue", path=path)
    assert value(samples, "thirdfarm_jobs", queue="gpu", state="waiting") == 7, "last good values kept"
    page = daemon.get("/")[2].decode()
    assert re.search(r"<td>thirdfarm_queue</td><td>%s</td><td class='down'>DOWN</td>" % re.escape(path), page)
    assert "not a queue statistics file" in page

    write_queue(queues / "gpu.json", 4, [[1795000000, 3], [1795000060, 5]])
    output = tmp_path / "history.om"
    backfill = subprocess.run([sys.executable, "-m", "exporter", "backfill", "--config", config, "--output",
                               str(output), "--sources", "thirdfarm", "--since", "1794999000",
                               "--until", "1795001000"], cwd=REPO, capture_output=True, text=True, timeout=60,
                              env=env)
    assert backfill.returncode == 0, backfill.stderr
    lines = output.read_text().splitlines()
    assert 'thirdfarm_jobs{queue="gpu",state="waiting"} 3.0 1795000000.0' in lines
    assert 'thirdfarm_jobs{queue="gpu",state="waiting"} 5.0 1795000060.0' in lines
    assert lines[-1] == "# EOF"


@pytest.mark.daemon
def test_without_the_plugin_its_section_is_an_unknown_key(write_config):
    result = subprocess.run([sys.executable, "-m", "exporter", "--check-config", "--config",
                             write_config("thirdfarm:\n  paths: []\n")], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "thirdfarm (line 1): unknown key (known: royalrender, rush, watch)" in result.stderr
