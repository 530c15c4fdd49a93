"""A watched folder that vanishes and comes back (an unmounted share) is watched again."""

import shutil

import pytest
from conftest import value

pytestmark = pytest.mark.daemon

LINE = "p 948300000 tahoe.1 T anna {n} render01 100 10 0 0 0 1\n"


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_folder_vanishes_and_comes_back(tmp_path, start_daemon, write_config, mode):
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "cpu.acct").write_text(LINE.format(n=1))
    config = write_config(
        "rush:\n  cpu_acct: ['%s']\nwatch:\n  mode: %s\n  poll_interval: 200ms\n  rescan_interval: 1h\n"
        % (folder / "cpu.acct", mode)
    )
    daemon = start_daemon("--config", config)
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")
    assert value(daemon.samples(), "renderfarm_exporter_watch_up", directory=str(folder)) == 1

    shutil.rmtree(folder)
    daemon.wait_for_value("renderfarm_exporter_watch_up", 0, directory=str(folder), timeout=5)
    assert value(daemon.samples(), "rush_frames_total", host="render01", status="done") == 1

    folder.mkdir()
    (folder / "cpu.acct").write_text(LINE.format(n=2) + LINE.format(n=3))
    daemon.wait_for_value("rush_frames_total", 3, host="render01", status="done", timeout=5)
    samples = daemon.wait_for_value("renderfarm_exporter_watch_up", 1, directory=str(folder), timeout=5)
    assert value(samples, "renderfarm_exporter_watch_restarts_total") >= 1

    # The re-established watch delivers changes again, without waiting for a rescan.
    with open(folder / "cpu.acct", "a") as handle:
        handle.write(LINE.format(n=4))
    daemon.wait_for_value("rush_frames_total", 4, host="render01", status="done", timeout=5)
