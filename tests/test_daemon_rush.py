"""The real daemon over real cpu.acct files changed while it runs; exact values over HTTP."""

import os
import shutil

import pytest
from conftest import value
from test_records import SPEC_EXAMPLE

pytestmark = pytest.mark.daemon

FRAME = "p 948300000 tahoe.900 SHOT_{n} anna {n:04d} {host} 100 {wall} 1 2 {exit} 4242\n"


def frame(n, host="superior", wall=10, exit_code=0):
    return FRAME.format(n=n, host=host, wall=wall, exit=exit_code)


def append(path, text):
    with open(path, "a") as handle:
        handle.write(text)


def rush_config(write_config, pattern, extra="", watch=""):
    return write_config("rush:\n  cpu_acct:\n    - '%s'\n%swatch:\n  rescan_interval: 1h\n%s" % (pattern, extra, watch))


def test_spec_example_then_appends_rotation_truncation_and_deletion(tmp_path, start_daemon, write_config):
    folder = tmp_path / "superior"
    folder.mkdir()
    path = str(folder / "cpu.acct")
    append(path, SPEC_EXAMPLE)
    daemon = start_daemon("--config", rush_config(write_config, str(tmp_path / "**" / "cpu.acct")))

    samples = daemon.samples()
    assert value(samples, "rush_frames_total", host="superior", status="done") == 3
    assert value(samples, "rush_frames_total", host="superior", status="fail") == 0
    assert value(samples, "rush_frame_wall_seconds_total", host="superior") == 365
    assert value(samples, "rush_utilization_ratio", host="superior") == 0.0
    assert value(samples, "rush_last_record_timestamp_seconds", host="superior") == 948249900
    assert value(samples, "rush_records_total", host="superior", record="utilization") == 3
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=path) == 1
    assert value(samples, "renderfarm_exporter_source_read_lines_total", kind="rush_cpu_acct", path=path) == 6

    # Appended lines, one of them written in two halves.
    append(path, frame(1, exit_code=1) + frame(2, exit_code=-9) + "p 948300000 tahoe.900 X anna 3 sup")
    daemon.wait_for_value("rush_frames_total", 1, host="superior", status="killed")
    assert value(daemon.samples(), "rush_frames_total", host="superior", status="fail") == 1
    append(path, "erior 100 10 1 2 2 4242\n")
    daemon.wait_for_value("rush_frames_total", 1, host="superior", status="requeue")

    # Rotation by rename, with a line appended to the old file right before the rename.
    append(path, frame(4))
    os.rename(path, str(folder / "Ocpu.acct"))
    append(path, "r start 948300100 online\n" + frame(5))
    daemon.wait_for_value("rush_frames_total", 5, host="superior", status="done")

    # Truncation: the new content counts once.
    with open(path, "w") as handle:
        handle.write(frame(6, wall=100))
    samples = daemon.wait_for_value("rush_frames_total", 6, host="superior", status="done")
    assert value(samples, "rush_frame_wall_seconds_total", host="superior") == 365 + 5 * 10 + 100

    # Deletion: the file's own series go, counts stay; a re-created file is read from its start.
    os.unlink(path)
    daemon.wait_for_value("renderfarm_exporter_source_up", None, kind="rush_cpu_acct", path=path)
    assert value(daemon.samples(), "rush_frames_total", host="superior", status="done") == 6
    append(path, frame(7) + frame(8))
    samples = daemon.wait_for_value("rush_frames_total", 8, host="superior", status="done")
    assert value(samples, "rush_frames_total", host="superior", status="killed") == 1
    assert value(samples, "rush_daemon_online", host="superior") == 1


def test_new_files_and_folders_matching_the_glob_are_picked_up(tmp_path, start_daemon, write_config):
    daemon = start_daemon("--config", rush_config(write_config, str(tmp_path / "farm" / "**" / "cpu.acct")))
    assert value(daemon.samples(), "rush_frames_total", host="render07", status="done") is None
    nested = tmp_path / "farm" / "2026-11-22" / "render07"
    nested.mkdir(parents=True)  # the watched root itself did not exist at start
    append(str(nested / "cpu.acct"), frame(1, host="render07") + frame(2, host="render07"))
    daemon.wait_for_value("rush_frames_total", 2, host="render07", status="done")
    other = tmp_path / "farm" / "render08"
    other.mkdir()
    append(str(other / "cpu.acct"), frame(1, host="render08"))
    daemon.wait_for_value("rush_frames_total", 1, host="render08", status="done")


def test_malformed_lines_are_counted_and_skipped(tmp_path, start_daemon, write_config):
    path = str(tmp_path / "cpu.acct")
    append(path, frame(1) + "garbage line\n" + "u 948300000 250\n" + "\x00\x00\xff\n" + frame(2))
    daemon = start_daemon("--config", rush_config(write_config, path))
    samples = daemon.samples()
    assert value(samples, "rush_frames_total", host="superior", status="done") == 2
    assert value(samples, "renderfarm_exporter_source_malformed_lines_total", kind="rush_cpu_acct", path=path) == 3
    assert value(samples, "renderfarm_exporter_source_up", kind="rush_cpu_acct", path=path) == 1
    assert "malformed cpu.acct line skipped" in daemon.log()


def test_same_file_through_two_globs_counts_once(tmp_path, start_daemon, write_config):
    path = str(tmp_path / "cpu.acct")
    append(path, frame(1) + frame(2))
    config = write_config("rush:\n  cpu_acct:\n    - '%s'\n    - '%s'\n" % (path, str(tmp_path / "*.acct")))
    daemon = start_daemon("--config", config)
    assert value(daemon.samples(), "rush_frames_total", host="superior", status="done") == 2
    append(path, frame(3))
    daemon.wait_for_value("rush_frames_total", 3, host="superior", status="done")


def test_poll_mode_sees_changes(tmp_path, start_daemon, write_config):
    path = str(tmp_path / "cpu.acct")
    append(path, frame(1))
    daemon = start_daemon("--config", rush_config(write_config, path, watch="  mode: poll\n  poll_interval: 200ms\n"))
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_watch_info", directory=str(tmp_path), mode="poll",
                 fstype=_fstype(samples, str(tmp_path))) == 1
    append(path, frame(2))
    daemon.wait_for_value("rush_frames_total", 2, host="superior", status="done")


def _fstype(samples, directory):
    for (name, labels), _ in samples.items():
        labels = dict(labels)
        if name == "renderfarm_exporter_watch_info" and labels["directory"] == directory:
            return labels["fstype"]
    return None


def test_host_labels_from_config_and_path(tmp_path, start_daemon, write_config):
    for host in ("render01", "render02"):
        (tmp_path / host).mkdir()
        append(str(tmp_path / host / "cpu.acct"), "u 948300000 40\n")
    (tmp_path / "fixed").mkdir()
    append(str(tmp_path / "fixed" / "cpu.acct"), "u 948300000 75\n")
    config = write_config(
        "rush:\n  cpu_acct:\n"
        "    - path: '%s'\n      host: workstation9\n"
        "    - path: '%s'\n      host_from_path: '/(?P<host>render[0-9]+)/cpu.acct$'\n"
        % (tmp_path / "fixed" / "cpu.acct", tmp_path / "render*" / "cpu.acct")
    )
    samples = start_daemon("--config", config).samples()
    assert value(samples, "rush_utilization_ratio", host="render01") == 0.4
    assert value(samples, "rush_utilization_ratio", host="render02") == 0.4
    assert value(samples, "rush_utilization_ratio", host="workstation9") == 0.75


def test_user_and_title_breakdowns_respect_the_series_budget(tmp_path, start_daemon, write_config):
    path = str(tmp_path / "cpu.acct")
    lines = "".join("p 948300000 tahoe.9 TITLE_%d user%d %d h 100 10 0 0 0 1\n" % (i % 4, i, i) for i in range(6))
    append(path, lines)
    config = rush_config(write_config, path, extra="  breakdowns:\n    users: {enabled: true, series_budget: 15}\n"
                                                  "    titles: {enabled: true}\n")
    samples = start_daemon("--config", config).samples()
    # 15 series: two users of 5 series each, plus 5 reserved for __other__.
    assert value(samples, "rush_user_frames_total", user="user0", status="done") == 1
    assert value(samples, "rush_user_frames_total", user="user1", status="done") == 1
    assert value(samples, "rush_user_frames_total", user="user2", status="done") is None
    assert value(samples, "rush_user_frames_total", user="__other__", status="done") == 4
    assert value(samples, "rush_user_frame_wall_seconds_total", user="__other__") == 40
    assert value(samples, "rush_job_title_frames_total", title="TITLE_0", status="done") == 2
    assert sum(v for (n, _), v in samples.items() if n == "rush_user_frames_total") == 6


def test_breakdowns_are_off_by_default(tmp_path, start_daemon, write_config):
    path = str(tmp_path / "cpu.acct")
    append(path, frame(1))
    samples = start_daemon("--config", rush_config(write_config, path)).samples()
    assert not any(name.startswith(("rush_user_", "rush_job_title_")) for name, _ in samples)


def test_rotated_file_copied_in_by_rsync_is_not_counted_twice(tmp_path, start_daemon, write_config):
    """Central servers often receive the logs by rsync: temp file, then rename over the old one."""
    path = str(tmp_path / "cpu.acct")
    append(path, "r start 948300000 online\n" + frame(1))
    daemon = start_daemon("--config", rush_config(write_config, path))
    temp = str(tmp_path / ".cpu.acct.tmp")
    shutil.copyfile(path, temp)
    append(temp, frame(2) + frame(3))
    os.replace(temp, path)
    daemon.wait_for_value("rush_frames_total", 3, host="superior", status="done")
    assert value(daemon.samples(), "renderfarm_exporter_source_read_lines_total", kind="rush_cpu_acct",
                 path=path) == 4
