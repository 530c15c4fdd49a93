"""On-call drills of issue 25 that were silent or misleading: a share not mounted (drill 1), a valid typo reloaded
(drill 5), a full disk under --storage.path (drill 6), and a folder that cannot be watched.

Each runs the real daemon as an unprivileged user (``setpriv`` to nobody, as the unit's DynamicUser= runs it) over
real files and real mounts (tmpfs), and asserts what an administrator has: the status page, the metrics, the
reload reply, ``--check-config`` and the log. Each drill saves a screenshot of the page, taken by Chromium, in
``$SCREENS`` (default /work/screens). The repeated warnings are counted over a real run.

The daemon runs on the system's Python of the same version as the tests', with the tests' packages on
``PYTHONPATH``: the virtual environment's interpreter may live where nobody can reach it (under /root).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request

import pytest
from conftest import REPO, value, wait_until
from test_ecosystem import CHROMIUM_FLAGS, tool
from test_statuspage import cells_of

pytestmark = pytest.mark.daemon

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python%d.%d" % sys.version_info[:2]
SCREENS = os.environ.get("SCREENS", "/work/screens")
LINE = "p %d tahoe.1 T anna 1 render01 100 10 0 0 0 1\n"


def as_nobody():
    """The exporter's command line run as nobody, on the system's Python with the tests' packages."""
    assert os.path.exists(SYSTEM_PYTHON), "%s is missing: Debian's python3 package installs it" % SYSTEM_PYTHON
    return [tool("setpriv"), "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", SYSTEM_PYTHON,
            "-m", "exporter"]


def nobody_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join((REPO, sysconfig.get_paths()["purelib"])))


def exporter_as_nobody(*args):
    return subprocess.run(as_nobody() + list(args), cwd=REPO, env=nobody_env(), capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def world():
    """A folder every user can reach (pytest's own tmp_path is private to root); mounts in it are undone."""
    folder = tempfile.mkdtemp(prefix="oncall-", dir="/tmp")
    os.chmod(folder, 0o755)
    mounts = []

    def mount_tmpfs(path, options):
        os.makedirs(path, exist_ok=True)
        subprocess.run([tool("mount"), "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
        mounts.append(path)

    yield folder, mount_tmpfs
    for path in reversed(mounts):
        subprocess.run([tool("umount"), "-l", path], check=False)
    shutil.rmtree(folder)


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as handle:
        handle.write(text)
    os.chmod(path, 0o644)


def start_as_nobody(start_daemon, config, *args):
    return start_daemon("--config", config, *args, env=nobody_env(), command=as_nobody())


def page(daemon):
    return daemon.get("/")[2].decode()


def summary(html):
    return {row[0]: row[1] for row in cells_of(html.replace("'", '"'), "summary")}


def problems(html):
    return [tuple(row) for row in cells_of(html.replace("'", '"'), "problems")] if "id='problems'><caption" \
        in html else []


def screenshot(daemon, name, profile):
    """The page as Chromium draws it, saved as ``$SCREENS/name.png``."""
    os.makedirs(SCREENS, exist_ok=True)
    path = os.path.join(SCREENS, name + ".png")
    shot = subprocess.run([tool("chromium"), *CHROMIUM_FLAGS, "--user-data-dir=%s" % profile, "--hide-scrollbars",
                           "--window-size=1400,1100", "--screenshot=%s" % path, daemon.url + "/"],
                          capture_output=True, text=True, timeout=90)
    assert shot.returncode == 0 and os.path.getsize(path) > 10_000, shot.stderr[-2000:]


def log_lines(daemon, message):
    return [line for line in daemon.log().splitlines() if 'msg="%s"' % message in line]


@pytest.mark.needs_root  # setpriv to another user, tmpfs mounts
def test_drill1_a_share_not_mounted_is_named_by_check_config_the_log_and_the_page(world, start_daemon, tmp_path):
    """The empty mount point: --check-config warns (and --strict fails), the log names the pattern, the page says
    why; mounting the share is noticed and logged, without a restart."""
    folder, mount_tmpfs = world
    share = os.path.join(folder, "mnt", "rush")
    os.makedirs(share)
    os.chmod(os.path.dirname(share), 0o755)
    os.chmod(share, 0o755)
    pattern = os.path.join(share, "*", "cpu.acct")
    config = os.path.join(folder, "config.yml")
    write(config, "rush:\n  cpu_acct: ['%s']\n" % pattern)
    mounted_at = subprocess.run([tool("findmnt"), "-n", "-o", "TARGET", "-T", share], capture_output=True,
                                text=True, check=True).stdout.strip()
    warning = ("rush.cpu_acct[0]: %s matches no file now: nothing is read until one appears (folder %s exists, on "
               "the file system mounted at %s: if a share should be mounted on it, it is not)"
               % (pattern, share, mounted_at))

    checked = exporter_as_nobody("--check-config", "--config.file", config)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "%s is valid\n" % config,
                                                                    "warning: %s\n" % warning)
    assert exporter_as_nobody("--check-config", "--strict", "--config.file", config).returncode == 2

    daemon = start_as_nobody(start_daemon, config)
    wait_until(lambda: log_lines(daemon, "pattern matches no file: nothing is read from it until one appears (a "
                                         "share not mounted? a wrong path?)"), 10, "the log line naming the pattern")
    assert 'problem="%s"' % warning in daemon.log()
    assert log_lines(daemon, "pattern matches no file: nothing is read from it until one appears (a share not "
                             "mounted? a wrong path?)")[0].endswith("kind=rush_cpu_acct pattern=%s" % pattern)
    html = page(daemon)
    assert "Needs attention: see Problems below." in html
    assert summary(html)["Configuration warnings"] == "1: " + warning
    assert summary(html)["Patterns matching no file"] == "1"
    assert [row[:3] for row in problems(html)] == [("rush_cpu_acct", pattern, "NO FILE"),
                                                   ("configuration", "", "WARNING")]
    assert value(daemon.samples(), "renderfarm_exporter_pattern_matched_files", kind="rush_cpu_acct",
                 pattern=pattern) == 0
    screenshot(daemon, "drill1", tmp_path / "profile")

    mount_tmpfs(share, "size=1m,mode=0755")
    write(os.path.join(share, "render01", "cpu.acct"), LINE % 948300000)
    daemon.wait_for_value("rush_frames_total", 1, timeout=15, host="render01", status="done")
    daemon.wait_for_value("renderfarm_exporter_pattern_matched_files", 1, kind="rush_cpu_acct", pattern=pattern)
    wait_until(lambda: log_lines(daemon, "pattern matches files again"), 15, "the log line of the share mounted")
    assert log_lines(daemon, "pattern matches files again")[0].endswith(
        "kind=rush_cpu_acct pattern=%s files=1" % pattern)


@pytest.mark.needs_root  # setpriv to another user, tmpfs mounts
def test_drill5_a_valid_typo_reloads_with_its_warning_in_the_reply_the_log_and_the_page(world, start_daemon,
                                                                                         tmp_path):
    """``/nsf/`` for ``/nfs/``: valid, so it is applied, but the reload reply, the log lines of a POST and of a
    SIGHUP, and the page say what --check-config says, in the same words."""
    folder, _ = world
    good = os.path.join(folder, "nfs", "rush", "*", "cpu.acct")
    write(os.path.join(folder, "nfs", "rush", "render01", "cpu.acct"), LINE % 948300000)
    for sub in ("nfs", "nfs/rush", "nfs/rush/render01"):
        os.chmod(os.path.join(folder, sub), 0o755)
    config = os.path.join(folder, "config.yml")
    write(config, "rush:\n  cpu_acct: ['%s']\n" % good)
    daemon = start_as_nobody(start_daemon, config, "--web.enable-lifecycle")
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")

    typo = good.replace("/nfs/", "/nsf/")
    write(config, "rush:\n  cpu_acct: ['%s']\n" % typo)
    warning = ("rush.cpu_acct[0]: folder %s does not exist: nothing is read until it does (a share not mounted?)"
               % os.path.join(folder, "nsf", "rush"))
    checked = exporter_as_nobody("--check-config", "--config.file", config)
    assert (checked.returncode, checked.stderr) == (0, "warning: %s\n" % warning)
    request = urllib.request.Request(daemon.url + "/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=35) as response:
        assert (response.status, response.read().decode()) == (200, "Reloaded\n" + checked.stderr)

    logged = daemon.log()
    assert re.search(r'msg="configuration reloaded" file=%s changed_sources=rush\n.*msg="configuration will not '
                     r'work as written" problem="%s"\n' % (re.escape(config), re.escape(warning)), logged)
    wait_until(lambda: not [key for key in daemon.samples() if key[0].startswith("rush_")], 10,
               "every rush_* series gone: the typo reads nothing")
    assert value(daemon.samples(), "renderfarm_exporter_pattern_matched_files", kind="rush_cpu_acct",
                 pattern=typo) == 0
    html = page(daemon)
    assert summary(html)["Configuration warnings"] == "1: " + warning
    assert summary(html)["Last configuration reload"].startswith(
        "successful, with 1 warning (Configuration warnings) at ")
    assert [row[:3] for row in problems(html)] == [
        ("rush_cpu_acct", typo, "NO FILE"), ("configuration", "", "WARNING"),
        ("watch", os.path.join(folder, "nsf", "rush"), "NOT WATCHED")]
    screenshot(daemon, "drill5", tmp_path / "profile")

    other = good.replace("/rush/", "/rusj/")  # another typo, reloaded by SIGHUP: the same words in the log
    write(config, "rush:\n  cpu_acct: ['%s']\n" % other)
    daemon.proc.send_signal(signal.SIGHUP)
    said = ('problem="rush.cpu_acct[0]: folder %s does not exist: nothing is read until it does (a share not '
            'mounted?)"' % os.path.join(folder, "nfs", "rusj"))
    wait_until(lambda: said in daemon.log(), 10, "the SIGHUP reload's warning in the log")
    write(config, "rush:\n  cpu_acct: ['%s']\n" % good)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")
    wait_until(lambda: summary(page(daemon))["Configuration warnings"] == "0", 10, "the warnings gone")


def fill(folder):
    """Fills the file system of ``folder`` (as root: nothing is reserved on tmpfs) until it refuses a write."""
    chunk = b"\0" * 4096
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.strerror == "No space left on device", exc


@pytest.mark.needs_root  # setpriv to another user, tmpfs mounts
def test_drill6_a_full_disk_under_storage_path_is_on_the_page_and_warned_once_a_minute(world, start_daemon,
                                                                                       tmp_path):
    """Checkpoint writes fail on every attempt (every 2 s while lines come in): one warning, the page's summary
    and problems say so, the counter counts each; when space comes back, one line says so with the count of
    warnings left out."""
    folder, mount_tmpfs = world
    acct = os.path.join(folder, "logs", "render01", "cpu.acct")
    write(acct, LINE % 948300000)
    for sub in ("logs", "logs/render01"):
        os.chmod(os.path.join(folder, sub), 0o755)
    state = os.path.join(folder, "state")
    mount_tmpfs(state, "size=64k,mode=0700,uid=%d,gid=%d" % (NOBODY, NOBODY))
    fill(state)
    config = os.path.join(folder, "config.yml")
    write(config, "rush:\n  cpu_acct: ['%s']\n" % os.path.join(folder, "logs", "*", "cpu.acct"))
    daemon = start_as_nobody(start_daemon, config, "--storage.path", state)
    checkpoint = os.path.join(state, "rush.rush_cpu_acct.checkpoint")
    appended = [948300000]

    def failures_after_an_append(least):
        appended.append(appended[-1] + 1)
        write(acct, LINE % appended[-1], mode="a")
        return (value(daemon.samples(), "renderfarm_exporter_checkpoint_write_failures_total") or 0) >= least

    wait_until(lambda: failures_after_an_append(4), 30, "four failed checkpoint writes")
    assert len(log_lines(daemon, "cannot write the checkpoint; a restart will read more")) == 1
    html = page(daemon)
    assert summary(html)["Checkpoints"] == ("FAILING in %s: %s: No space left on device; a restart will read more"
                                            % (state, checkpoint))
    (row,) = [row for row in problems(html) if row[0] == "checkpoints"]
    assert row[1:3] == (state, "FAILING") and int(row[4]) >= 4
    assert "Needs attention" in html
    screenshot(daemon, "drill6", tmp_path / "profile")

    os.unlink(os.path.join(state, "filler"))
    wait_until(lambda: failures_after_an_append(0) and log_lines(daemon, "checkpoint written again"), 15,
               "a checkpoint written once space came back")
    failed = value(daemon.samples(), "renderfarm_exporter_checkpoint_write_failures_total")
    (again,) = log_lines(daemon, "checkpoint written again")
    assert again.endswith("path=%s suppressed_since_last=%d" % (checkpoint, failed - 1)), again
    assert os.path.getsize(checkpoint) > 0
    wait_until(lambda: summary(page(daemon))["Checkpoints"].startswith("in %s: " % state), 10, "the summary")
    assert summary(page(daemon))["Checkpoints"].endswith(", %d failed since start" % failed)


@pytest.mark.needs_root  # setpriv to another user, tmpfs mounts
def test_a_folder_that_cannot_be_watched_is_on_the_page_and_warned_once_a_minute(world, start_daemon, tmp_path):
    """A polled folder the service's user cannot list: the watch is retried every second (each retry asks for a
    rescan), warned about once, shown on the page; once listable, one line says so with the retries left out."""
    folder, _ = world
    locked = os.path.join(folder, "locked")
    write(os.path.join(locked, "render01", "cpu.acct"), LINE % 948300000)
    os.chmod(locked, 0o700)
    config = os.path.join(folder, "config.yml")
    write(config, "rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  mode: poll\n  poll_interval: 500ms\n" % locked)
    daemon = start_as_nobody(start_daemon, config)
    daemon.wait_for_value("renderfarm_exporter_watch_up", 0, directory=locked)
    wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_rescans_total") >= 5, 15,
               "five retries of the watch (each asks for a rescan)")
    (warned,) = log_lines(daemon, "cannot watch folder; relying on rescans")
    assert warned.endswith("directory=%s error=\"[Errno 13] Permission denied: '%s'\"" % (locked, locked))
    assert summary(page(daemon))["Folders watched"] == ("0 of 1; NOT WATCHED (changes seen only at rescans): %s"
                                                        % locked)
    screenshot(daemon, "unwatched-folder", tmp_path / "profile")

    os.chmod(locked, 0o755)
    daemon.wait_for_value("renderfarm_exporter_watch_up", 1, directory=locked)
    (again,) = log_lines(daemon, "folder can be watched again")
    suppressed = int(re.search(r"suppressed_since_last=(\d+)$", again).group(1))
    assert suppressed >= 3 and len(log_lines(daemon, "cannot watch folder; relying on rescans")) == 1
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")


def test_a_read_reported_stuck_says_when_it_returns(tmp_path, start_daemon, write_config):
    """A long read (a big backlog appended at once) past ``watch.stuck_read_timeout``: reported stuck, and one line
    when it returns, with how long it took."""
    acct = tmp_path / "logs" / "render01" / "cpu.acct"
    acct.parent.mkdir(parents=True)
    acct.write_text(LINE % 948300000)
    config = write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  stuck_read_timeout: 1ms\n" % acct)
    daemon = start_daemon("--config", config, "--storage.path", "")
    daemon.wait_for_value("rush_frames_total", 1, host="render01", status="done")
    with open(acct, "a") as handle:
        handle.write("".join(LINE % (948300001 + second) for second in range(400_000)))
    daemon.wait_for_value("rush_frames_total", 400_001, timeout=60, host="render01", status="done")

    def stuck_and_returned():
        return (log_lines(daemon, "reading a file is stuck; reported down until the read returns"),
                log_lines(daemon, "a stuck read returned; the file is read again"))

    # the append may be read in a few syncs, each long enough to be reported: each report has its return
    wait_until(lambda: len(stuck_and_returned()[0]) == len(stuck_and_returned()[1]) >= 1, 10, "the reads' returns")
    stuck, returned = stuck_and_returned()
    assert all(line.split(" path=")[1].startswith("%s " % acct) for line in stuck)
    assert all(re.search(r" path=%s seconds=[0-9.]+$" % re.escape(str(acct)), line) for line in returned), returned
