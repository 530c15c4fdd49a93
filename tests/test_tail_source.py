"""An appended-log plugin (tests/plugins/tailfarm) on the real daemon: multi-line records across a rotation.

The plugin is built and installed with the real pip into a folder only the daemon under test sees
(``PYTHONPATH``), as tests/test_third_source.py does for a whole-file plugin. A record's lines count only
from one file: the writer finishing a record in the renamed file counts it once; a record continued in the
new file is malformed, both parts, and never merged (docs/plugins.md, "The per-file key").
"""

import os

import pytest
from conftest import install_plugin, value

pytestmark = pytest.mark.inprocess  # a test that starts the daemon is in its tier by its fixture

MALFORMED = "renderfarm_exporter_source_malformed_lines_total"
LINES = "renderfarm_exporter_source_read_lines_total"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    return dict(os.environ, PYTHONPATH=install_plugin("tailfarm", str(tmp_path_factory.mktemp("tailfarm-site"))))


def append(path, text):
    with open(path, "a") as handle:
        handle.write(text)


def test_records_split_by_a_rotation_count_once_or_as_malformed_never_merged(plugin_env, start_daemon,
                                                                             write_config, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    farm, other = str(logs / "farm.log"), str(logs / "other.log")
    append(farm, "JOB gpu a\nFRAME 10\n")
    append(other, "JOB gpu c\nFRAME 7\n")
    config = write_config("watch:\n  rescan_interval: 1s\ntailfarm:\n  paths: ['%s/*.log']\n" % logs)
    daemon = start_daemon("--config", config, env=plugin_env)
    daemon.wait_for_value(LINES, 2, kind="tailfarm_log", path=farm)
    daemon.wait_for_value(LINES, 2, kind="tailfarm_log", path=other)

    os.rename(farm, farm + ".1")  # the writer finishes its record in the file it has open
    append(farm, "JOB gpu b\nFRAME 1\nEND\n")
    append(farm + ".1", "FRAME 5\nEND\n")
    os.rename(other, other + ".1")  # the writer goes on in the new file: that record is broken
    append(other, "FRAME 3\nEND\nJOB gpu d\nEND\n")

    samples = daemon.wait_for_value(MALFORMED, 4, timeout=20, kind="tailfarm_log", path=other)
    assert value(samples, "tailfarm_jobs_total", queue="gpu") == 3  # a, b and d; c never ended
    assert value(samples, "tailfarm_frame_seconds_total", queue="gpu") == 16.0  # 10 + 5 and 1; c's 7 + 3 not
    assert value(samples, MALFORMED, kind="tailfarm_log", path=farm) == 0
    assert value(samples, LINES, kind="tailfarm_log", path=farm) == 7
    assert value(samples, LINES, kind="tailfarm_log", path=other) == 6
    assert value(samples, "renderfarm_exporter_source_up", kind="tailfarm_log", path=other) == 1
