"""The on-call drills of issue #25, staged for real: the daemon as a subprocess (as the unprivileged user
``nobody`` where permissions matter), real files changed while it runs, a FUSE share whose reads hang, real
HTTP on loopback, and the status page drawn by chromium. Each test asserts what an administrator sees first on
the page, and what the metrics and the log say.

Drills (the issue's table): 2 one cpu.acct unreadable, 3 the Royal Render module missing, 4 a render host's
clock 2 h ahead, 7 a host stale in Prometheus: stopped writing, or stopped being read. A screenshot of the page
in each failure is kept in ``$RENDERFARM_SCREENS`` (as ``drillN.png``) when that is set, for people to look at.
"""

import html
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import value, wait_until
from fusefs import HangingFile
from test_ecosystem import CHROMIUM_FLAGS, tool

pytestmark = pytest.mark.daemon

NOBODY = pwd.getpwnam("nobody")
NOW = int(time.time())
RUSH = "rush_cpu_acct"


def frame(host, when):
    return "p %d tahoe.7 T anna 1 %s 100 100 0 0 0 1\n" % (when, host)


#: The daemon run as the unprivileged user nobody, as a service without supplementary groups.
AS_NOBODY = (tool("setpriv"), "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid, "--clear-groups")


@pytest.fixture
def open_folder():
    """A folder the user nobody can read (pytest's own are root's alone), removed afterwards."""
    folder = tempfile.mkdtemp(prefix="drill-", dir="/tmp")
    os.chmod(folder, 0o755)
    state = os.path.join(folder, "state")
    os.mkdir(state)
    os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def tables(daemon):
    """The page's tables by id: rows of cells as text (tags stripped, entities decoded), and its verdict."""
    page = daemon.get("/")[2].decode()
    found = {}
    for table_id, body in re.findall(r"<table id=['\"](\w+)['\"]>(.*?)</table>", page, re.S):
        rows = [row for row in re.findall(r"<tr>(.*?)</tr>", body, re.S) if "<th" not in row]
        found[table_id] = [[html.unescape(re.sub(r"<[^>]+>", "", cell))
                            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]
    verdict = re.search(r"<p class='verdict[^']*'>(.*?)</p>", page).group(1)
    return verdict, found


def problems(daemon):
    """The Problems table: (kind, file or pattern, status, last good read, errors, reason) per row."""
    return tables(daemon)[1].get("problems", [])


def summary(daemon):
    return {row[0]: row[1] for row in tables(daemon)[1]["summary"]}


def file_row(daemon, path):
    """A file's row of the Files table as a dict by column."""
    headers = ["kind", "file", "status", "last_read", "age", "errors", "malformed", "watch", "size", "modified",
               "unread", "last_check"]
    for row in tables(daemon)[1]["files"]:
        if row[1] == path:
            return dict(zip(headers, row))
    raise AssertionError("%s is not on the page" % path)


def screenshot(daemon, name, tmp_path):
    """The status page as chromium draws it, kept in $RENDERFARM_SCREENS when set."""
    shot = tmp_path / (name + ".png")
    result = subprocess.run([tool("chromium"), *CHROMIUM_FLAGS, "--user-data-dir=%s" % (tmp_path / "profile"),
                             "--window-size=1500,1100", "--hide-scrollbars", "--screenshot=%s" % shot,
                             daemon.url + "/"], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-2000:]
    keep = os.environ.get("RENDERFARM_SCREENS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(shot, os.path.join(keep, name + ".png"))


def file_value(samples, name, path, kind=RUSH):
    return value(samples, name, kind=kind, path=path)


# -- drill 2: one cpu.acct unreadable ---------------------------------------------------------------------------


@pytest.mark.ecosystem
def test_drill2_an_unreadable_cpu_acct_says_who_was_refused_and_counts_one_incident(open_folder, start_daemon,
                                                                                     tmp_path):
    good = write(os.path.join(open_folder, "render01", "cpu.acct"), frame("render01", NOW))
    locked = write(os.path.join(open_folder, "render02", "cpu.acct"), frame("render02", NOW), mode=0o600)
    config = write(os.path.join(open_folder, "config.yml"),
                   "rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: poll\n  poll_interval: 500ms\n"
                   % open_folder)
    daemon = start_daemon("--config", config, "--storage.path", os.path.join(open_folder, "state"),
                          run_as=AS_NOBODY)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=RUSH, path=locked)
    assert file_value(samples, "renderfarm_exporter_source_up", good) == 1
    first_check = file_value(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", locked)
    # It is tried again every 2 s: two retries later it still counts one incident.
    wait_until(lambda: file_value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                                  locked) >= first_check + 4, 15, "two retries of the unreadable file")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind=RUSH, path=locked,
                 reason="io") == 1
    assert value(samples, "renderfarm_exporter_source_error_info", kind=RUSH, path=locked,
                 error="Permission denied") == 1

    verdict, _ = tables(daemon)
    assert verdict == "Needs attention: see Problems below."
    first = problems(daemon)[0]  # what the administrator sees first
    assert first[:3] == [RUSH, locked, "DOWN"] and first[4] == "1"
    assert first[5] == ("Permission denied (the exporter runs as user nobody (uid %d), groups nogroup (%d))"
                        % (NOBODY.pw_uid, NOBODY.pw_gid))
    assert summary(daemon)["Runs as"] == "user nobody (uid %d), groups nogroup (%d)" % (NOBODY.pw_uid,
                                                                                        NOBODY.pw_gid)
    assert daemon.log().count("cannot read cpu.acct") == 1, "one line per incident, not per retry"
    screenshot(daemon, "drill2", tmp_path)

    os.chmod(locked, 0o644)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, timeout=10, kind=RUSH, path=locked)
    assert value(samples, "rush_frames_total", host="render02", status="done") == 1
    assert not [key for key in samples if key[0] == "renderfarm_exporter_source_error_info"]
    assert problems(daemon) == []


# -- drill 3: the Royal Render module missing, or the worker's interpreter out of reach ----------------------------


def rr_farm(open_folder, python):
    """An RR installation without its module, and the configuration naming the worker's ``python``."""
    stats = write(os.path.join(open_folder, "rr", "sub", "stats", "server_stats.db"), "x")
    config = write(os.path.join(open_folder, "config.yml"), "royalrender:\n  root: '%s/rr'\n  module: auto\n"
                   "  python: '%s'\n" % (open_folder, python))
    return stats, config


def assert_rr_cause_stays(daemon, stats, cause):
    """Through the worker's retries (after 1, 2, 4 s ...), every place shows ``cause`` whole, counted once."""
    kind = "royalrender_server_stats"
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=kind, path=stats)
    first_check = value(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", kind=kind, path=stats)
    wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                             kind=kind, path=stats) >= first_check + 10, 30, "retries of the worker")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_royalrender_module_loaded") == 0
    (reason,) = [dict(labels)["reason"] for (name, labels), _ in samples.items()
                 if name == "renderfarm_exporter_royalrender_module_load_failure_info"]
    assert cause(reason), reason
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind=kind, path=stats,
                 reason="unavailable") == 1, "one incident, however many retries"
    assert value(samples, "renderfarm_exporter_source_error_info", kind=kind, path=stats, error=reason) == 1
    verdict, _ = tables(daemon)
    assert verdict == "Needs attention: see Problems below."
    assert summary(daemon)["Royal Render module"] == "NOT LOADED: " + reason
    first = problems(daemon)[0]
    assert first[:3] == [kind, stats, "DOWN"] and first[5] == reason, "the cause, never a countdown"
    assert daemon.log().count("Royal Render worker cannot start") == 1
    return reason


@pytest.mark.ecosystem
def test_drill3_a_missing_rr_module_keeps_its_import_error_on_every_row_and_in_the_summary(
        open_folder, start_daemon, tmp_path):
    stats, config = rr_farm(open_folder, "/usr/bin/python3")
    daemon = start_daemon("--config", config, "--storage.path", os.path.join(open_folder, "state"), run_as=AS_NOBODY)
    reason = assert_rr_cause_stays(daemon, stats, lambda reason: reason.startswith(
        "cannot import Royal Render's Python module"))
    assert "names tried: libpyRR" in reason and "%s/rr/bin/lx64/lib" % open_folder in reason
    screenshot(daemon, "drill3", tmp_path)


@pytest.mark.ecosystem
def test_drill3_a_worker_interpreter_out_of_the_service_users_reach_is_the_cause_shown(
        open_folder, start_daemon, tmp_path):
    private = os.path.join(open_folder, "private")
    os.mkdir(private, 0o700)  # root's own, as /root is: the service's user cannot look inside
    os.symlink("/usr/bin/python3", os.path.join(private, "python3"))
    stats, config = rr_farm(open_folder, os.path.join(private, "python3"))
    daemon = start_daemon("--config", config, "--storage.path", os.path.join(open_folder, "state"), run_as=AS_NOBODY)
    assert_rr_cause_stays(daemon, stats, lambda reason: reason.startswith(
        "royalrender.python: %s/python3 cannot be reached by the exporter, which runs as user nobody (uid %d), "
        "groups nogroup (%d): a folder of its path is closed to it" % (private, NOBODY.pw_uid, NOBODY.pw_gid)))
    screenshot(daemon, "drill3-interpreter", tmp_path)


# -- drill 4: a render host's clock 2 h ahead --------------------------------------------------------------------


@pytest.mark.ecosystem
def test_drill4_a_host_clock_ahead_is_a_problem_on_the_page_with_its_skew_exported(tmp_path, start_daemon,
                                                                                    write_config):
    now = int(time.time())
    farm = tmp_path / "farm"
    ok = write(str(farm / "render01" / "cpu.acct"), frame("render01", now))
    # render04's clock was 2 h ahead from its first line: none of its records can be the latest.
    ahead = write(str(farm / "render04" / "cpu.acct"), frame("render04", now + 7200) + "u %d 50\n" % (now + 7200))
    # render05's clock jumped 2 h ahead later: its gauges stay at its last plausible record.
    jumped = write(str(farm / "render05" / "cpu.acct"), frame("render05", now) + "u %d 30\n" % now)
    config = write_config("rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: poll\n  poll_interval: 500ms\n"
                          % farm)
    daemon = start_daemon("--config", config)
    with open(jumped, "a") as handle:
        handle.write("u %d 90\n" % (now + 7200))
    samples = daemon.wait_for_value("renderfarm_exporter_source_records_ahead_total", 1, kind=RUSH, path=jumped)

    assert file_value(samples, "renderfarm_exporter_source_records_ahead_total", ahead) == 2
    assert file_value(samples, "renderfarm_exporter_source_records_ahead_total", ok) == 0
    assert file_value(samples, "renderfarm_exporter_source_clock_ahead_seconds", ok) == 0
    for path in (ahead, jumped):
        skew = file_value(samples, "renderfarm_exporter_source_clock_ahead_seconds", path)
        assert 7200 - 60 < skew <= 7200, skew
    assert value(samples, "rush_last_record_timestamp_seconds", host="render04") is None
    assert value(samples, "rush_frames_total", host="render04", status="done") == 1, "counted all the same"
    assert value(samples, "rush_utilization_ratio", host="render05") == 0.3, "not the record from the future"

    verdict, found = tables(daemon)
    assert verdict == "Needs attention: see Problems below."
    rows = {row[1]: row for row in found["problems"]}
    assert [row[2] for row in found["problems"]] == ["WARNING", "WARNING"]
    assert rows[ahead][5].startswith("render04: records up to 2.0 h ahead of this machine's clock; none of its "
                                     "records is taken as the latest")
    assert rows[jumped][5].startswith("render05: records up to 2.0 h ahead of this machine's clock; they are "
                                      "counted, but never taken as the latest")
    assert rows[ahead][5].endswith("Set the host's clock right (NTP): runbook: docs/alerts.md#rushclockahead")
    assert file_row(daemon, ahead)["status"] == "up", "the host is on the page"
    assert "cpu.acct record dated ahead of the clock" in daemon.log()
    screenshot(daemon, "drill4", tmp_path)

    with open(jumped, "a") as handle:  # render05's clock set right: its next record is on time
        handle.write("u %d 40\n" % int(time.time()))
    samples = daemon.wait_for_value("renderfarm_exporter_source_clock_ahead_seconds", 0, kind=RUSH, path=jumped)
    assert value(samples, "rush_utilization_ratio", host="render05") == 0.4
    assert [row[1] for row in problems(daemon)] == [ahead]


# -- drill 7: a host stale in Prometheus: stopped writing, or stopped being read? --------------------------------


def test_drill7_a_silent_host_is_still_checked_its_size_and_time_unchanged(tmp_path, start_daemon, write_config):
    farm = tmp_path / "farm"
    busy = write(str(farm / "render01" / "cpu.acct"), frame("render01", NOW))
    silent = write(str(farm / "render02" / "cpu.acct"), frame("render02", NOW))
    os.utime(silent, (NOW - 3 * 3600, NOW - 3 * 3600))  # its host wrote last 3 h ago
    config = write_config("rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: events\n  rescan_interval: 2s\n"
                          % farm)
    daemon = start_daemon("--config", config)
    first = file_value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds", silent)
    with open(busy, "a") as handle:
        handle.write(frame("render01", NOW + 1))
    # Looked at by every rescan: its last check moves on, its size and modification time do not.
    wait_until(lambda: file_value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                                  silent) >= first + 10, 30, "the silent file's checks to go on")
    samples = daemon.samples()
    assert file_value(samples, "renderfarm_exporter_source_size_bytes", silent) == os.path.getsize(silent)
    assert file_value(samples, "renderfarm_exporter_source_modified_timestamp_seconds", silent) == NOW - 3 * 3600
    assert file_value(samples, "renderfarm_exporter_source_unread_bytes", silent) == 0
    assert file_value(samples, "renderfarm_exporter_source_size_bytes", busy) == os.path.getsize(busy)
    assert time.time() - file_value(samples, "renderfarm_exporter_source_last_check_timestamp_seconds",
                                    silent) < 15
    row = file_row(daemon, silent)
    assert row["status"] == "up" and row["unread"] == "0 B" and row["size"] == "%d B" % os.path.getsize(silent)
    assert row["modified"] == time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(NOW - 3 * 3600))
    assert re.fullmatch(r"\d+ s ago", row["last_check"]), row["last_check"]


@pytest.mark.needs_root
def test_drill7_a_hung_read_shows_which_files_wait_behind_it_and_stops_their_checks(tmp_path, start_daemon,
                                                                                   write_config):
    share = tmp_path / "share"
    share.mkdir()
    fs = HangingFile(str(share), "cpu.acct", frame("hung01", NOW).encode(),
                     others={"neighbour.acct": frame("hung02", NOW).encode()})
    hung, neighbour = str(share / "cpu.acct"), str(share / "neighbour.acct")
    try:
        local = write(str(tmp_path / "local" / "cpu.acct"), frame("render01", NOW))
        config = write_config("rush:\n  cpu_acct: ['%s', '%s', '%s']\nwatch:\n  mode: poll\n"
                              "  poll_interval: 500ms\n  rescan_interval: 1s\n  stuck_read_timeout: 1s\n"
                              % (local, hung, neighbour))
        daemon = start_daemon("--config", config)
        checked = file_value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds", hung)
        fs.hang.set()  # the share's server stops answering
        fs.content += frame("hung01", NOW + 1).encode()
        daemon.wait_for_value("renderfarm_exporter_source_up", 0, timeout=15, kind=RUSH, path=neighbour)
        frozen = daemon.samples()
        wait_until(lambda: file_value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                                      local) > file_value(frozen, "renderfarm_exporter_source_last_check_timestamp_"
                                                                  "seconds", local) + 10, 30,
                   "the local file's checks to go on")
        samples = daemon.samples()
        for path in (hung, neighbour):  # not looked at since the share hung
            assert file_value(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", path) == \
                file_value(frozen, "renderfarm_exporter_source_last_check_timestamp_seconds", path)
        assert file_value(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", hung) < checked + 5

        verdict, found = tables(daemon)
        assert verdict == "Needs attention: see Problems below."
        rows = {row[1]: row for row in found["problems"]}
        assert found["problems"][0][1] == hung
        assert rows[hung][5] == "a read of the file is stuck (a hung share?); 1 other file of its mount waits behind it"
        assert rows[neighbour][5] == "waiting behind a stuck read of %s on mount %s" % (hung, share)
        assert local not in rows
        assert re.fullmatch(r"\d+ s ago", file_row(daemon, local)["last_check"])
        screenshot(daemon, "drill7", tmp_path)

        fs.release()
        samples = daemon.wait_for_value("rush_frames_total", 2, timeout=10, host="hung01", status="done")
        assert file_value(samples, "renderfarm_exporter_source_unread_bytes", hung) == 0
        assert file_value(samples, "renderfarm_exporter_source_size_bytes", hung) == len(fs.content)
        wait_until(lambda: problems(daemon) == [], 10, "no problem left: %r" % (problems(daemon),))
    finally:
        fs.close()
