"""A stranger's attack on issue #25's per-file visibility, against the real daemon (attack 25b).

Each case comes from the docs (metrics.md, rush.md, royalrender.md, alerts.md) and the issue, not from the
code: what the size, modification time, unread bytes and last check of a file say when it shrinks, is
sparse or grows while read; records dated ahead of the clock across a rotation and a restart; errors counted
per incident when a file flaps or its error text differs only by a number; the error texts themselves (a path
with a newline, a vendor import error of 100 kB with non-UTF-8 bytes) in the exposition and on the page; and
Royal Render's "NOT LOADED" cause when the module hangs at import, changes its error, or is fixed while the
daemon runs. Real files, the daemon as a subprocess (as ``nobody`` where permissions matter), deadlines, no
fixed sleeps; the RR module is a fake copied where ``module: auto`` finds it, as the other RR tests do.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import value, wait_until
from test_ecosystem import tool
from test_oncall_drills import AS_NOBODY, RUSH, file_row, frame, open_folder, problems, summary, write

pytestmark = pytest.mark.daemon

assert open_folder  # a fixture, used by name below

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_NAME = "libpyRR%d%d_datafiles" % sys.version_info[:2]
SERVER = "royalrender_server_stats"


def rush_config(write_config, *patterns, extra=""):
    return write_config("rush:\n  cpu_acct: [%s]\n%swatch:\n  mode: poll\n  poll_interval: 500ms\n"
                        "  rescan_interval: 2s\n" % (", ".join("'%s'" % p for p in patterns), extra))


def per_file(samples, name, path, kind=RUSH):
    return value(samples, name, kind=kind, path=path)


def series(samples, name):
    """The label sets of every sample of ``name``."""
    return [dict(labels) for (found, labels), _ in samples.items() if found == name]


def promtool_accepts(body):
    lint = subprocess.run([tool("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=60)
    return lint.returncode == 0, (lint.stdout + lint.stderr).decode(errors="replace")[-3000:]


# -- size, modification time, unread bytes --------------------------------------------------------------------


def test_a_truncated_file_shows_its_new_size_and_never_negative_unread_bytes(tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), "".join(frame("render01", now) for _ in range(50)))
    daemon = start_daemon("--config", rush_config(write_config, path))
    daemon.wait_for_value("rush_frames_total", 50, host="render01", status="done")
    # copytruncate: the file emptied and a new first line written (another host's record first)
    with open(path, "r+") as handle:
        handle.truncate(0)
        handle.write("u %d 40\n" % now + frame("render01", now))
    seen = []

    def settled():
        samples = daemon.samples()
        seen.append(per_file(samples, "renderfarm_exporter_source_unread_bytes", path))
        return per_file(samples, "renderfarm_exporter_source_size_bytes", path) == os.path.getsize(path) and \
            value(samples, "rush_frames_total", host="render01", status="done") == 51

    wait_until(settled, 15, "the truncated file read anew")
    assert all(unread is not None and unread >= 0 for unread in seen), seen
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_unread_bytes", path) == 0
    assert file_row(daemon, path)["unread"] == "0 B"


def test_a_sparse_32_gib_file_is_read_and_shows_its_size_with_nothing_unread(tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), frame("render01", now))
    daemon = start_daemon("--config", rush_config(write_config, path))
    os.truncate(path, 32 << 30)  # a hole at the end: a file grown by truncate (rush.md: skipped)
    samples = daemon.wait_for_value("renderfarm_exporter_source_size_bytes", 32 << 30, timeout=15, kind=RUSH,
                                    path=path)
    wait_until(lambda: per_file(daemon.samples(), "renderfarm_exporter_source_unread_bytes", path) == 0, 15,
               "the hole to count as read")
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_up", path) == 1
    assert per_file(samples, "renderfarm_exporter_source_read_bytes_total", path) == 32 << 30
    assert value(samples, "rush_frames_total", host="render01", status="done") == 1
    # then the writer appends after the hole: read, counted, nothing left unread
    with open(path, "a") as handle:
        handle.write(frame("render01", now + 1))
    samples = daemon.wait_for_value("rush_frames_total", 2, timeout=15, host="render01", status="done")
    wait_until(lambda: per_file(daemon.samples(), "renderfarm_exporter_source_unread_bytes", path) == 0, 15,
               "the appended line read")
    row = file_row(daemon, path)
    assert row["unread"] == "0 B" and row["size"].startswith("32"), row


def test_a_file_growing_while_read_never_shows_more_read_than_its_size(tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), "")
    daemon = start_daemon("--config", rush_config(write_config, path))
    lines = 40_000
    done = threading.Event()

    def writer():
        with open(path, "a") as handle:
            for _ in range(lines // 400):
                handle.write("".join(frame("render01", now) for _ in range(400)))
                handle.flush()
                time.sleep(0.005)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    try:
        while not done.is_set():
            samples = daemon.samples()
            size = per_file(samples, "renderfarm_exporter_source_size_bytes", path)
            unread = per_file(samples, "renderfarm_exporter_source_unread_bytes", path)
            read = per_file(samples, "renderfarm_exporter_source_read_bytes_total", path)
            seen.append((size, unread, read))
    finally:
        thread.join()
    wait_until(lambda: value(daemon.samples(), "rush_frames_total", host="render01", status="done") == lines, 30,
               "every line read")
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_unread_bytes", path) == 0
    assert per_file(samples, "renderfarm_exporter_source_size_bytes", path) == os.path.getsize(path)
    for size, unread, read in seen:
        assert unread is None or unread >= 0, seen
        assert size is None or read is None or read <= size, (size, unread, read)


# -- clock ahead --------------------------------------------------------------------------------------------------


def test_records_ahead_are_counted_once_across_a_rotation_matched_by_the_glob(tmp_path, start_daemon, write_config):
    now = int(time.time())
    host = tmp_path / "farm" / "render04"
    log = write(str(host / "cpu.acct"), frame("render04", now) + "u %d 50\n" % (now + 7200) +
                frame("render04", now + 7200))
    daemon = start_daemon("--config", rush_config(write_config, "%s/*cpu.acct" % host))
    daemon.wait_for_value("renderfarm_exporter_source_records_ahead_total", 2, kind=RUSH, path=log)
    rotated = str(host / "Ocpu.acct")
    os.rename(log, rotated)  # Rush's rotation; the glob matches the old log too
    write(log, "u %d 60\n" % (now + 7300))

    def total(samples, name):
        return sum(v for (found, labels), v in samples.items() if found == name and dict(labels).get("kind") == RUSH)

    # the counter stays with the path (a counter never goes down): the old log's two, the new log's one
    wait_until(lambda: per_file(daemon.samples(), "renderfarm_exporter_source_records_ahead_total", log) == 3, 15,
               "the new log's record ahead")
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_records_ahead_total", rotated) == 0
    assert total(samples, "renderfarm_exporter_source_records_ahead_total") == 3, "each record once"
    assert value(samples, "rush_frames_total", host="render04", status="done") == 2
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", log) > 7200 - 120


def test_a_record_just_inside_the_skew_is_not_ahead_and_one_just_past_it_is(tmp_path, start_daemon, write_config):
    now = int(time.time())
    inside = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), "u %d 50\n" % (now + 3600 - 60))
    past = write(str(tmp_path / "farm" / "render02" / "cpu.acct"), "u %d 50\n" % (now + 3600 + 120))
    config = rush_config(write_config, "%s/farm/*/cpu.acct" % tmp_path, extra="  max_clock_skew: 1h\n")
    samples = start_daemon("--config", config).samples()
    assert per_file(samples, "renderfarm_exporter_source_records_ahead_total", inside) == 0
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", inside) == 0
    assert value(samples, "rush_utilization_ratio", host=inside) == 0.5  # no host in the file: its path
    assert per_file(samples, "renderfarm_exporter_source_records_ahead_total", past) == 1
    assert 3600 < per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", past) <= 3600 + 120


def test_a_host_ahead_from_its_first_line_is_still_shown_after_a_restart_from_its_checkpoint(
        tmp_path, start_daemon, write_config):
    now = int(time.time())
    ahead = write(str(tmp_path / "farm" / "render04" / "cpu.acct"), frame("render04", now + 7200) +
                  "u %d 50\n" % (now + 7200))
    state = tmp_path / "state"
    state.mkdir()
    config = rush_config(write_config, ahead)
    first = start_daemon("--config", config, "--storage.path", str(state))
    first.wait_for_value("renderfarm_exporter_source_records_ahead_total", 2, kind=RUSH, path=ahead)
    first.stop()
    daemon = start_daemon("--config", config, "--storage.path", str(state))
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 1
    assert value(samples, "rush_frames_total", host="render04", status="done") == 1, "continued, not re-read"
    # The host still has no gauge of its own: what says why must survive the restart (issue #25: "a host whose
    # records are all ahead still appears on the page and in a gauge that says so").
    assert value(samples, "rush_last_record_timestamp_seconds", host="render04") is None
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", ahead) > 7200 - 120
    assert [row[2] for row in problems(daemon)] == ["WARNING"]


def polled_config(folder):
    """A config reading ``folder/*/cpu.acct``, polled every half second (a file made readable is seen without an
    event)."""
    return write(os.path.join(folder, "config.yml"),
                 "rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: poll\n  poll_interval: 500ms\n" % folder)


# -- errors per incident ----------------------------------------------------------------------------------------


@pytest.mark.ecosystem  # setpriv to nobody, a folder chowned: root
def test_a_file_flapping_down_up_down_counts_two_incidents_and_its_error_comes_and_goes(open_folder, start_daemon):
    now = int(time.time())
    path = write(os.path.join(open_folder, "render01", "cpu.acct"), frame("render01", now), mode=0o600)
    config = polled_config(open_folder)
    daemon = start_daemon("--config", config, run_as=AS_NOBODY)
    daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=RUSH, path=path)
    os.chmod(path, 0o644)
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 1, kind=RUSH, path=path)
    assert series(samples, "renderfarm_exporter_source_error_info") == []
    os.chmod(path, 0o600)
    with open(path, "a") as handle:  # something new to read: the file is opened again
        handle.write(frame("render01", now + 1))
    samples = daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=RUSH, path=path)
    first_check = per_file(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", path)
    wait_until(lambda: per_file(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                                path) >= first_check + 4, 15, "retries of the file down again")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind=RUSH, path=path, reason="io") == 2
    assert series(samples, "renderfarm_exporter_source_error_info") == [
        {"kind": RUSH, "path": path, "error": "Permission denied"}]
    # rush.md: a reason is logged at most once a minute (shared by many files, "Too many open files"); the
    # second outage within the minute is in the counter and on the page, and its end in the log
    assert daemon.log().count("cpu.acct readable again") == 1
    assert problems(daemon)[0][4] == "2"


@pytest.mark.ecosystem  # setpriv to nobody, a folder chowned: root
def test_a_down_file_deleted_leaves_no_error_info_behind(open_folder, start_daemon):
    now = int(time.time())
    good = write(os.path.join(open_folder, "render01", "cpu.acct"), frame("render01", now))
    locked = write(os.path.join(open_folder, "render02", "cpu.acct"), frame("render02", now), mode=0o600)
    config = write(os.path.join(open_folder, "config.yml"),
                   "rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: poll\n  poll_interval: 500ms\n"
                   "  rescan_interval: 2s\n" % open_folder)
    daemon = start_daemon("--config", config, run_as=AS_NOBODY)
    daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=RUSH, path=locked)
    os.unlink(locked)
    wait_until(lambda: per_file(daemon.samples(), "renderfarm_exporter_source_up", locked) is None, 15,
               "the deleted file's series to vanish")
    samples = daemon.samples()
    assert series(samples, "renderfarm_exporter_source_error_info") == []
    for name in ("renderfarm_exporter_source_size_bytes", "renderfarm_exporter_source_unread_bytes",
                 "renderfarm_exporter_source_last_check_timestamp_seconds",
                 "renderfarm_exporter_source_clock_ahead_seconds"):
        assert per_file(samples, name, locked) is None, name
    assert per_file(samples, "renderfarm_exporter_source_up", good) == 1
    assert problems(daemon) == []


@pytest.mark.ecosystem
def test_an_unreadable_file_whose_name_has_a_newline_and_quotes_keeps_the_exposition_valid(
        open_folder, start_daemon, tmp_path):
    now = int(time.time())
    folder = os.path.join(open_folder, 'render"01\nx\\y')
    path = write(os.path.join(folder, "cpu.acct"), frame("render01", now), mode=0o600)
    config = polled_config(open_folder)
    daemon = start_daemon("--config", config, run_as=AS_NOBODY)
    wait_until(lambda: len(series(daemon.samples(), "renderfarm_exporter_source_error_info")) == 1, 15,
               "the file down")
    ok, said = promtool_accepts(daemon.get("/metrics")[2])
    assert ok, said
    status, _, body = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert status == 200 and body.endswith(b"# EOF\n")
    (info,) = series(daemon.samples(), "renderfarm_exporter_source_error_info")
    assert info["path"] == path and info["error"] == "Permission denied"
    assert problems(daemon)[0][1] == path.replace("\n", "\\x0a"), "on one line, as the log shows it"


# -- Royal Render: NOT LOADED, the cause -------------------------------------------------------------------------


class BrokenRR:
    """An RR installation whose module (``module: auto``) is a few lines of Python written per test."""

    def __init__(self, folder):
        self.root = os.path.join(folder, "rr")
        self.lib = os.path.join(self.root, "bin", "lx64", "lib")
        os.makedirs(self.lib)
        self.module = os.path.join(self.lib, MODULE_NAME + ".py")
        self.stats = write(os.path.join(self.root, "sub", "stats", "server_stats.db"), "x")

    def set_module(self, source):
        with open(self.module + ".tmp", "w") as handle:
            handle.write(source)
        os.chmod(self.module + ".tmp", 0o644)
        os.rename(self.module + ".tmp", self.module)  # whole, as a package manager replaces it
        shutil.rmtree(os.path.join(self.lib, "__pycache__"), ignore_errors=True)

    def config(self, folder, read_timeout="5s"):
        return write(os.path.join(folder, "config.yml"), "royalrender:\n  root: '%s'\n  module: auto\n"
                     "  read_timeout: %s\n" % (self.root, read_timeout))


def healthy(daemon):
    try:
        return daemon.get("/-/healthy")[0] == 200
    except OSError:
        return False


def failure_reasons(samples):
    return [labels["reason"] for labels in series(samples, "renderfarm_exporter_royalrender_module_load_failure_info")]


def wait_not_loaded(daemon, timeout=30):
    wait_until(lambda: healthy(daemon), 20, "the daemon to serve")
    wait_until(lambda: failure_reasons(daemon.samples()), timeout, "the module's load failure")
    return daemon.samples()


def wait_retries(daemon, path, seconds, timeout=40):
    first = value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds", kind=SERVER, path=path)
    wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_source_last_check_timestamp_seconds",
                             kind=SERVER, path=path) >= first + seconds, timeout, "retries of the worker")
    return daemon.samples()


def test_an_import_error_naming_a_pid_is_one_incident_and_one_series_through_the_retries(tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    # a C extension's loader error names a temporary file or the process: a new number at every start
    rr.set_module("import os\nraise ImportError('cannot map /tmp/rr-%d.so: No such file' % os.getpid())\n")
    daemon = start_daemon("--config", rr.config(str(tmp_path)), ready=False)
    wait_not_loaded(daemon)
    samples = wait_retries(daemon, rr.stats, 10)
    (reason,) = failure_reasons(samples)
    assert "cannot map /tmp/rr-" in reason, reason
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind=SERVER, path=rr.stats,
                 reason="unavailable") == 1, "one incident, however many retries"
    assert len(series(samples, "renderfarm_exporter_source_error_info")) == 1


@pytest.mark.ecosystem
def test_a_100_kb_import_error_with_newlines_and_foreign_bytes_is_bounded_and_valid_everywhere(
        tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    # dlopen's error names a path of another locale; then a C++ module's dump of every symbol it missed
    rr.set_module("import os\nraise ImportError(os.fsdecode(b'/opt/rr/lib\\xff\\xfe/libQt.so: undefined symbol') "
                  "+ '\\n' + 'x\\ty\"\\\\z\\r\\n' * 12000)\n")
    daemon = start_daemon("--config", rr.config(str(tmp_path)), ready=False)
    samples = wait_not_loaded(daemon)
    (reason,) = failure_reasons(samples)
    assert reason.startswith("cannot import Royal Render's Python module"), reason[:300]
    assert "libQt.so: undefined symbol" in reason
    assert len(reason.encode()) <= 16384, "a label of %d bytes" % len(reason.encode())
    body = daemon.get("/metrics")[2]
    ok, said = promtool_accepts(body)
    assert ok, said
    assert len(body) < 200_000
    status, _, page = daemon.get("/")
    assert status == 200 and len(page) < 200_000
    assert summary(daemon)["Royal Render module"].startswith("NOT LOADED: cannot import")
    status, _, body = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert status == 200 and body.endswith(b"# EOF\n")


def test_a_module_that_hangs_at_import_is_not_loaded_with_a_cause_and_the_page_answers(tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    rr.set_module("import time\nprint('licence check ...', flush=True)\ntime.sleep(3600)\n")
    daemon = start_daemon("--config", rr.config(str(tmp_path), read_timeout="2s"), ready=False)
    samples = wait_not_loaded(daemon, timeout=60)
    (reason,) = failure_reasons(samples)
    assert "hung" in reason or "hang" in reason or "did not" in reason, reason
    assert "next try" not in reason
    assert value(samples, "renderfarm_exporter_royalrender_module_loaded") == 0
    started = time.monotonic()
    assert daemon.get("/")[0] == 200
    assert time.monotonic() - started < 5
    assert summary(daemon)["Royal Render module"] == "NOT LOADED: " + reason
    first = problems(daemon)[0]
    assert first[:3] == [SERVER, rr.stats, "DOWN"] and first[5] == reason


def test_a_changed_import_error_replaces_the_old_failure_series(tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    rr.set_module("raise ImportError('libcrypto.so.1.1: cannot open shared object file')\n")
    daemon = start_daemon("--config", rr.config(str(tmp_path)), ready=False)
    wait_not_loaded(daemon)
    # a new cause that differs only by a version number is news (a PID would not be: see above)
    rr.set_module("raise ImportError('libcrypto.so.3: cannot open shared object file')\n")
    wait_until(lambda: any("so.3" in reason for reason in failure_reasons(daemon.samples())), 40,
               "the new cause")
    samples = daemon.samples()
    (reason,) = failure_reasons(samples)
    assert "so.1.1" not in reason
    (info,) = series(samples, "renderfarm_exporter_source_error_info")
    assert info["error"] == reason
    assert summary(daemon)["Royal Render module"] == "NOT LOADED: " + reason


def test_a_module_fixed_while_running_loads_without_a_restart_and_the_cause_goes(tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    rr.set_module("raise ImportError('libcrypto.so.1.1: cannot open shared object file')\n")
    daemon = start_daemon("--config", rr.config(str(tmp_path)), ready=False)
    wait_not_loaded(daemon)
    wait_retries(daemon, rr.stats, 3)
    with open(os.path.join(HERE, "reference_rr_module.py")) as handle:
        rr.set_module(handle.read())
    with open(rr.stats, "w") as handle:  # a file the reference fake loads
        handle.write('{"magic": "RR-REFERENCE-FAKE", "class": "_rrGlobalStatsLS", "dayMax": 1440, '
                     '"last_save_local": %d, "last_save_divisor": "slot", "day": {}}' % int(time.time()))
    samples = daemon.wait_for_value("renderfarm_exporter_royalrender_module_loaded", 1, timeout=90)
    assert failure_reasons(samples) == []
    daemon.wait_for_value("renderfarm_exporter_source_up", 1, timeout=30, kind=SERVER, path=rr.stats)
    samples = daemon.samples()
    assert series(samples, "renderfarm_exporter_source_error_info") == []
    # a whole file: its size and time as read, no unread bytes (metrics.md: cpu.acct only)
    assert per_file(samples, "renderfarm_exporter_source_size_bytes", rr.stats, SERVER) == os.path.getsize(rr.stats)
    assert per_file(samples, "renderfarm_exporter_source_modified_timestamp_seconds", rr.stats, SERVER) == \
        os.stat(rr.stats).st_mtime
    assert per_file(samples, "renderfarm_exporter_source_unread_bytes", rr.stats, SERVER) is None
    assert "NOT LOADED" not in summary(daemon)["Royal Render module"]
    # the other RR kinds have no file in this installation (NO FILE); nothing is DOWN any more
    assert [row for row in problems(daemon) if row[1] == rr.stats or row[2] == "DOWN"] == []


# -- odd times and whole files ---------------------------------------------------------------------------------


@pytest.mark.ecosystem
@pytest.mark.parametrize("mtime", [-2_000_000_000, 15_000_000_000], ids=["1906", "2445"])
def test_a_file_modified_before_1970_or_centuries_ahead_keeps_the_page_and_metrics_serving(
        tmp_path, start_daemon, write_config, mtime):
    now = int(time.time())
    odd = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), frame("render01", now))
    ok = write(str(tmp_path / "farm" / "render02" / "cpu.acct"), frame("render02", now))
    os.utime(odd, (mtime, mtime))  # a restored backup, a writer whose clock is wrong: ext4 keeps 1901..2446
    daemon = start_daemon("--config", rush_config(write_config, "%s/farm/*/cpu.acct" % tmp_path))
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_modified_timestamp_seconds", odd) == mtime
    assert per_file(samples, "renderfarm_exporter_source_up", odd) == 1
    status, _, page = daemon.get("/")
    assert status == 200
    row = file_row(daemon, odd)
    assert row["modified"][:4] == time.strftime("%Y", time.localtime(mtime)), row
    assert file_row(daemon, ok)["status"] == "up"
    ok_lint, said = promtool_accepts(daemon.get("/metrics")[2])
    assert ok_lint, said


def test_a_record_dated_millennia_ahead_is_counted_ahead_and_the_page_says_so_readably(
        tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render04" / "cpu.acct"), frame("render04", now) +
                 "u %d 50\n" % 99_999_999_999)  # year 5138: a corrupt clock, not a typo the parser rejects
    daemon = start_daemon("--config", rush_config(write_config, path))
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_records_ahead_total", path) == 1
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", path) > 99_000_000_000 - now
    assert value(samples, "rush_utilization_ratio", host="render04") is None, "never taken as the latest"
    (row,) = problems(daemon)
    assert row[2] == "WARNING" and row[5].startswith("render04: records up to "), row
    assert len(row[5]) < 400, row[5]


def test_a_file_cut_shorter_while_the_exporter_was_stopped_is_read_anew_never_negative_unread(
        tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), "".join(frame("render01", now) for _ in range(100)))
    state = tmp_path / "state"
    state.mkdir()
    config = rush_config(write_config, path)
    first = start_daemon("--config", config, "--storage.path", str(state))
    first.wait_for_value("rush_frames_total", 100, host="render01", status="done")
    first.stop()
    with open(path, "r+") as handle:  # an older copy restored over it: same first line, far shorter
        handle.truncate(len(frame("render01", now)) * 3)
    daemon = start_daemon("--config", config, "--storage.path", str(state))
    samples = daemon.samples()
    assert per_file(samples, "renderfarm_exporter_source_size_bytes", path) == os.path.getsize(path)
    assert per_file(samples, "renderfarm_exporter_source_unread_bytes", path) == 0
    # operations.md (checkpoints): what it contributed before is taken out, the totals those of a full re-read
    # (while running, rush.md counts such a file again: 103; after a restart it is a counter reset, 100 -> 3)
    assert value(samples, "rush_frames_total", host="render01", status="done") == 3
    assert time.time() - per_file(samples, "renderfarm_exporter_source_last_check_timestamp_seconds", path) < 15


@pytest.mark.parametrize("source", [
    "import os, sys\nos.write(1, b'#' * 1048576)\nraise ImportError('licence server unreachable')\n",
    "import os\nprint('loading ...', flush=True)\nos._exit(0)\n",
], ids=["prints-1-MiB-then-raises", "exits-at-import"])
def test_a_module_printing_a_megabyte_or_exiting_at_import_gives_a_bounded_cause(tmp_path, start_daemon, source):
    rr = BrokenRR(str(tmp_path))
    rr.set_module(source)
    daemon = start_daemon("--config", rr.config(str(tmp_path)), ready=False)
    samples = wait_not_loaded(daemon)
    (reason,) = failure_reasons(samples)
    assert len(reason) <= 2000 and "#" * 100 not in reason, reason[:500]
    assert "licence server unreachable" in reason or "failed while importing the module" in reason, reason
    assert value(samples, "renderfarm_exporter_royalrender_module_loaded") == 0
    status, _, page = daemon.get("/")
    assert status == 200 and len(page) < 100_000
    assert summary(daemon)["Royal Render module"] == "NOT LOADED: " + reason


def test_a_clock_set_right_before_the_exporter_reads_its_records_shows_no_skew(tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render05" / "cpu.acct"), frame("render05", now - 60))
    daemon = start_daemon("--config", rush_config(write_config, path))
    # between two reads (or before a start without checkpoint) the host wrote ahead, then its clock was set
    # right (NTP) and it wrote on time: its newest record is on time (rush.md: "Once the host's clock is set
    # right, its next record (on time) brings the gauge back to 0 and the warning off the page")
    with open(path, "a") as handle:
        handle.write("u %d 90\n" % (now + 7200) + "u %d 40\n" % now)
    samples = daemon.wait_for_value("renderfarm_exporter_source_records_ahead_total", 1, kind=RUSH, path=path)
    assert value(samples, "rush_utilization_ratio", host="render05") == 0.4
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", path) == 0, "RushClockAhead fires"
    assert problems(daemon) == []


def test_a_file_whose_error_changes_keeps_one_error_series_with_the_newest_cause(tmp_path, start_daemon, write_config):
    now = int(time.time())
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), frame("render01", now))
    daemon = start_daemon("--config", rush_config(write_config, path))
    os.unlink(path)
    os.mkfifo(path)  # a FIFO where the log was (a broken copy job): refused, never waited on
    wait_until(lambda: len(series(daemon.samples(), "renderfarm_exporter_source_error_info")) == 1, 15,
               "the FIFO refused")
    (fifo,) = series(daemon.samples(), "renderfarm_exporter_source_error_info")
    os.unlink(path)
    os.mkdir(path)  # then a folder of that name
    wait_until(lambda: [info["error"] for info in series(daemon.samples(), "renderfarm_exporter_source_error_info")
                        if info["path"] == path] not in ([], [fifo["error"]]), 15, "the folder's error")
    samples = daemon.samples()
    (info,) = series(samples, "renderfarm_exporter_source_error_info")
    assert info["path"] == path and info["error"] != fifo["error"], (fifo, info)
    assert per_file(samples, "renderfarm_exporter_source_up", path) == 0
    assert value(samples, "renderfarm_exporter_source_read_failures_total", kind=RUSH, path=path, reason="io") == 2
    assert problems(daemon)[0][5] == info["error"]


def test_a_partial_last_line_a_host_left_behind_is_not_reported_as_the_exporter_behind(
        tmp_path, start_daemon, write_config):
    now = int(time.time())
    # the host lost power mid-line: it stopped writing; the exporter read everything it can
    path = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), frame("render01", now) + "p %d tahoe.7 T an" % now)
    daemon = start_daemon("--config", rush_config(write_config, path))
    samples = daemon.samples()
    assert value(samples, "rush_frames_total", host="render01", status="done") == 1
    assert per_file(samples, "renderfarm_exporter_source_unread_bytes", path) == 0
    assert per_file(samples, "renderfarm_exporter_source_size_bytes", path) == os.path.getsize(path)
    assert file_row(daemon, path)["unread"] == "0 B"


def test_records_ahead_in_a_cold_start_backlog_read_by_worker_processes(tmp_path, start_daemon, write_config):
    now = int(time.time())
    bulk = "".join(frame("render%02d" % (i % 7), now - 3600) for i in range(100_000))  # about 5.5 MiB each
    still = write(str(tmp_path / "farm" / "render04" / "cpu.acct"), bulk + "u %d 50\n" % (now + 7200) * 3)
    # render05's clock was set right after its records ahead: its last record is on time
    fixed = write(str(tmp_path / "farm" / "render05" / "cpu.acct"), bulk + "u %d 50\n" % (now + 7200) * 3 +
                  "u %d 40\n" % now)
    assert os.path.getsize(still) + os.path.getsize(fixed) >= 8 << 20  # rush.md: 4 MiB of backlog uses the pool
    config = rush_config(write_config, "%s/farm/*/cpu.acct" % tmp_path, extra="  read_processes: 2\n")
    daemon = start_daemon("--config", config)
    samples = daemon.samples()
    assert "starting worker processes" in daemon.log()
    for path in (still, fixed):
        assert per_file(samples, "renderfarm_exporter_source_records_ahead_total", path) == 3, path
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", still) > 7200 - 120
    assert per_file(samples, "renderfarm_exporter_source_clock_ahead_seconds", fixed) == 0
    assert [row[1] for row in problems(daemon)] == [still]


@pytest.mark.ecosystem
def test_runs_as_a_uid_without_a_name_as_a_container_run_with_user_does(open_folder, start_daemon):
    # docker run --user 54321:54321: no passwd or group entry for the exporter's user
    nameless = (tool("setpriv"), "--reuid=54321", "--regid=54321", "--clear-groups")
    now = int(time.time())
    locked = write(os.path.join(open_folder, "render02", "cpu.acct"), frame("render02", now), mode=0o600)
    config = polled_config(open_folder)
    daemon = start_daemon("--config", config, run_as=nameless)
    daemon.wait_for_value("renderfarm_exporter_source_up", 0, kind=RUSH, path=locked)
    status, _, _ = daemon.get("/")
    assert status == 200
    runs_as = summary(daemon)["Runs as"]
    assert "54321" in runs_as, runs_as
    reason = problems(daemon)[0][5]
    assert reason.startswith("Permission denied") and "54321" in reason, reason


def test_royal_render_removed_by_a_reload_while_not_loaded_leaves_no_cause_behind(tmp_path, start_daemon):
    rr = BrokenRR(str(tmp_path))
    rr.set_module("raise ImportError('libcrypto.so.1.1: cannot open shared object file')\n")
    now = int(time.time())
    rush = write(str(tmp_path / "farm" / "render01" / "cpu.acct"), frame("render01", now))
    config = rr.config(str(tmp_path))
    with open(config, "a") as handle:
        handle.write("rush:\n  cpu_acct: ['%s']\n" % rush)
    daemon = start_daemon("--config", config, "--web.enable-lifecycle", ready=False)
    wait_not_loaded(daemon)
    write(config, "rush:\n  cpu_acct: ['%s']\n" % rush)  # the administrator turns Royal Render off
    request = urllib.request.Request(daemon.url + "/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=40) as answer:
        assert answer.status == 200
    wait_until(lambda: failure_reasons(daemon.samples()) == [], 15, "the cause gone with its source")
    samples = daemon.samples()
    assert value(samples, "renderfarm_exporter_royalrender_module_loaded") in (None, 1)
    assert series(samples, "renderfarm_exporter_source_error_info") == []
    assert "NOT LOADED" not in summary(daemon).get("Royal Render module", "")
    assert problems(daemon) == []
