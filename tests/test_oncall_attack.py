"""Issue 25's checks attacked from the docs, by a stranger: cases the first tests did not think of.

What ``--check-config``, start-up and reloads say about the systemd unit's sandbox (drop-ins that relax or cannot
relax it, binds that show a folder again, a symlink into a hidden folder, systemd's spellings of booleans), about a
share whose server stopped answering (the checks must not hang), and about paths with control characters (one
notice, one line). Each runs the real command line or daemon over real files, mounts and FUSE shares.
"""

import errno
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest
from conftest import REPO, free_port, value, wait_until
from fusefs import _IN_HEADER, _NO_REPLY, INIT, READ, HangingFile
from test_ecosystem import tool
from test_oncall_degradations import log_lines, page, summary

from exporter import sandbox
from exporter.config import load, notices

pytestmark = pytest.mark.inprocess

NO_RR_ROOT = {k: v for k, v in os.environ.items() if k != "RR_ROOT"}
HIDES = "hides from the service"
LINE = "p %d tahoe.1 T anna 1 render01 100 10 0 0 0 1\n"


def exporter(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=NO_RR_ROOT)


def hidden_warnings(config, unit):
    result = exporter("--check-config", "--systemd.unit", str(unit), "--config.file", config)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if HIDES in line]


def unit_with_drop_in(tmp_path, unit_text, drop_in_text):
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text(unit_text)
    (tmp_path / "renderfarm-exporter.service.d").mkdir()
    (tmp_path / "renderfarm-exporter.service.d" / "override.conf").write_text(drop_in_text)
    return unit


def shipped_unit():
    with open(os.path.join(REPO, "systemd", "renderfarm-exporter.service")) as handle:
        return handle.read()


@pytest.mark.daemon
def test_private_tmp_no_in_a_drop_in_does_not_undo_dynamic_user(tmp_path, write_config):
    """systemd.exec(5): with DynamicUser=yes, PrivateTmp= is implied "and cannot be turned off". The shipped unit has
    DynamicUser=yes, so a drop-in's PrivateTmp=no still leaves the service its own /tmp: still a warning."""
    unit = unit_with_drop_in(tmp_path, shipped_unit(), "[Service]\nPrivateTmp=no\n")
    config = write_config("rush:\n  cpu_acct: ['/var/tmp/acct/*/cpu.acct']\n")
    (warning,) = hidden_warnings(config, unit)
    assert "/var/tmp/acct/*/cpu.acct lies under /var/tmp" in warning and "DynamicUser=yes" in warning, warning


@pytest.mark.daemon
def test_protect_home_no_under_dynamic_user_shows_home(tmp_path, write_config):
    """DynamicUser=yes implies ProtectHome=read-only: a drop-in's ProtectHome=no makes /home readable (no warning)."""
    unit = unit_with_drop_in(tmp_path, shipped_unit(), "[Service]\nProtectHome=no\n")
    assert hidden_warnings(write_config("rush:\n  cpu_acct: ['/home/render/*/cpu.acct']\n"), unit) == []


@pytest.mark.daemon
def test_protect_home_tmpfs_with_a_bind_shows_the_bound_folder(tmp_path, write_config):
    """systemd.exec(5): ProtectHome=tmpfs hides /home "while still allowing necessary directories to be made visible
    when listed in BindPaths= or BindReadOnlyPaths=". The bound folder is visible: no warning for it (with --strict
    such a warning would refuse to start a service that works); a folder beside it is still hidden, and so is the
    destination of an optional bind (``-``) whose source is missing."""
    unit = unit_with_drop_in(tmp_path, "[Service]\nProtectHome=yes\n",
                             "[Service]\nProtectHome=tmpfs\nBindReadOnlyPaths=/home/render/acct /srv/x:/home/other\n"
                             "BindPaths=-/nonexistent-attack25:/home/render/gone\n")
    config = write_config("rush:\n  cpu_acct: ['/home/render/acct/*/cpu.acct', '/home/render/other/*/cpu.acct', "
                          "'/home/other/*/cpu.acct', '/home/render/gone/*/cpu.acct']\n")
    warnings = hidden_warnings(config, unit)
    assert [w.split(": ")[1] for w in warnings] == ["rush.cpu_acct[1]", "rush.cpu_acct[3]"], warnings


@pytest.mark.daemon
def test_a_bind_under_protect_home_yes_does_not_show_the_folder(tmp_path, write_config):
    """With ProtectHome=yes /home is inaccessible, and systemd drops mounts below an inaccessible one: still hidden."""
    unit = unit_with_drop_in(tmp_path, "[Service]\nProtectHome=yes\n",
                             "[Service]\nBindReadOnlyPaths=/home/render/acct\n")
    assert len(hidden_warnings(write_config("rush:\n  cpu_acct: ['/home/render/acct/*/cpu.acct']\n"), unit)) == 1


@pytest.mark.daemon
@pytest.mark.parametrize("spelling", ["y", "T", "On", "TRUE"])
def test_every_spelling_of_yes_that_systemd_accepts_hides(tmp_path, write_config, spelling):
    """systemd's parse_boolean takes 1, yes, y, true, t, on in any case."""
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text("[Service]\nPrivateTmp=%s\n" % spelling)
    assert len(hidden_warnings(write_config("rush:\n  cpu_acct: ['/var/tmp/acct/*/cpu.acct']\n"), unit)) == 1


@pytest.mark.needs_root  # a folder under /home
def test_a_symlink_from_a_visible_folder_into_home_is_hidden_too(tmp_path, write_config):
    """/srv/rush -> /home/render/rush: in the service's namespace the link leads into an inaccessible /home, so
    nothing is read, while a shell sees the files. The check follows the link and says so."""
    home = tempfile.mkdtemp(prefix="attack25-", dir="/home")
    try:
        os.makedirs(os.path.join(home, "render01"))
        with open(os.path.join(home, "render01", "cpu.acct"), "w") as handle:
            handle.write(LINE % 948300000)
        os.symlink(home, str(tmp_path / "rush"))
        unit = tmp_path / "renderfarm-exporter.service"
        unit.write_text("[Service]\nProtectHome=yes\n")
        pattern = "%s/rush/*/cpu.acct" % tmp_path
        (warning,) = hidden_warnings(write_config("rush:\n  cpu_acct: ['%s']\n" % pattern), unit)
        assert warning.startswith("warning: rush.cpu_acct[0]: %s leads to %s/*/cpu.acct, under /home, which the unit "
                                  % (pattern, home)), warning
    finally:
        shutil.rmtree(home)


@pytest.mark.daemon
def test_a_newline_in_a_pattern_cannot_forge_a_line_of_check_config(tmp_path, write_config):
    """A pattern is text the administrator may have pasted: a newline in it must not print a second line that looks
    like another message (``... is valid``), neither on stderr nor in a reload reply (one ``warning:`` line each)."""
    config = write_config('rush:\n  cpu_acct: ["%s/missing\\nconfig.yml is valid\\u001b/*/cpu.acct"]\n' % tmp_path)
    result = exporter("--check-config", "--config.file", config)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: rush.cpu_acct[0]: "), lines
    assert "missing\\x0aconfig.yml is valid\\x1b does not exist" in lines[0], lines


class HungShare(HangingFile):
    """A FUSE share whose server stops answering every request (lookups, stats, listings, reads) while ``hang_all``
    is set, as a hard-mounted NFS share does when its server goes away. ``release_all`` answers what waited."""

    def __init__(self, mountpoint, name, content):
        self.hang_all = threading.Event()
        self._all_held = []
        super().__init__(mountpoint, name, content)

    def _serve(self):
        while True:
            try:
                request = os.read(self._fd, 1 << 20)
            except OSError as exc:
                if exc.errno in (4, 11, 2):  # EINTR, EAGAIN, ENOENT
                    continue
                return
            _, opcode, unique, *_ = _IN_HEADER.unpack_from(request)
            if opcode in _NO_REPLY:
                continue
            with self._lock:
                if opcode != INIT and self.hang_all.is_set():
                    self._all_held.append(request)
                    continue
            self._answer_now(request)

    def _answer_now(self, request):
        _, opcode, unique, *_ = _IN_HEADER.unpack_from(request)
        if opcode == READ:
            self._answer_read(request)
        else:
            self._reply(unique, *self._answer(opcode, request))

    def release_all(self):
        with self._lock:
            self.hang_all.clear()
            held, self._all_held = self._all_held, []
        for request in held:
            self._answer_now(request)


@pytest.fixture
def hung_share(tmp_path):
    mountpoint = tmp_path / "share"
    mountpoint.mkdir()
    share = HungShare(str(mountpoint), "cpu.acct", (LINE % 948300000).encode())
    share.hang_all.set()
    yield share
    share.release_all()  # a process stuck on it can only end once it answers
    share.close()


def finished_within(process, seconds):
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.poll() is not None


@pytest.mark.needs_root  # a FUSE mount
def test_check_config_over_a_share_that_stopped_answering_ends_and_says_so(hung_share, write_config, tmp_path):
    """The checks stat and list the configured folders. Over a hard-mounted share whose server went away, that
    never returns: --check-config (and the unit's ExecReload=, and start-up) must give its verdict anyway, saying
    which checks could not finish, instead of hanging until systemd kills it."""
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % hung_share.mountpoint)
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        checking = subprocess.Popen([sys.executable, "-m", "exporter", "--check-config", "--config.file", config],
                                    cwd=REPO, env=NO_RR_ROOT, stdout=stdout, stderr=stderr)
    try:
        # Its verdict, not its exit: a thread blocked in a FUSE request holds the process's exit until the server
        # answers (an NFS hard mount lets it exit).
        wait_until(lambda: out.read_text() == "%s is valid\n" % config, 40, "the verdict over a hung share")
    finally:
        hung_share.release_all()
        checking.wait(timeout=30)
    assert checking.returncode == 0
    assert err.read_text().startswith("warning: rush: the checks did not finish within 15 s: a configured folder "
                                      "does not answer (a hung share?)"), err.read_text()


@pytest.mark.needs_root  # a FUSE mount
def test_a_daemon_started_over_a_share_that_stopped_answering_serves(hung_share, start_daemon, write_config,
                                                                     tmp_path):
    """Start-up runs the same checks before it serves: over a hung share it must still serve (the files of other
    folders are read), or systemd's start timeout kills it and restarts it for ever."""
    other = tmp_path / "local" / "render02" / "cpu.acct"
    other.parent.mkdir(parents=True)
    other.write_text((LINE % 948300000).replace("render01", "render02"))
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct', '%s/local/*/cpu.acct']\n"
                          % (hung_share.mountpoint, tmp_path))
    daemon = start_daemon("--config", config, "--storage.path", "", ready=False)

    def healthy():
        try:
            return daemon.get("/-/healthy")[0] == 200
        except OSError:
            return False

    try:
        wait_until(healthy, 30, "the daemon to serve /-/healthy over a hung share")
        assert "the checks did not finish within" in daemon.log()
    finally:
        hung_share.release_all()


@pytest.mark.needs_root  # a FUSE mount
def test_a_reload_over_a_share_that_stopped_answering_ends_with_a_warning(hung_share, start_daemon, write_config,
                                                                          tmp_path):
    """A reload runs the checks too: it must finish (200 with the warning), not be abandoned as stuck at 30 s; and
    a second reload while the share still hangs does not start another check of it."""
    local = tmp_path / "local" / "render02" / "cpu.acct"
    local.parent.mkdir(parents=True)
    local.write_text(LINE % 948300000)
    config = write_config("rush:\n  cpu_acct: ['%s/local/*/cpu.acct']\n" % tmp_path)
    hung_share.release_all()
    daemon = start_daemon("--config", config, "--storage.path", "", "--web.enable-lifecycle")
    hung_share.hang_all.set()
    with open(config, "w") as handle:
        handle.write("rush:\n  cpu_acct: ['%s/local/*/cpu.acct', '%s/*.acct']\n" % (tmp_path, hung_share.mountpoint))
    try:
        for attempt in range(2):
            request = urllib.request.Request(daemon.url + "/-/reload", method="POST")
            started = time.monotonic()
            with urllib.request.urlopen(request, timeout=35) as response:
                body = response.read().decode()
            assert response.status == 200 and body.startswith("Reloaded\n"), body
            assert "warning: rush: the checks did not finish within " in body, body
            assert time.monotonic() - started < 25, attempt
    finally:
        hung_share.release_all()


RULES = os.path.join(REPO, "config", "prometheus", "renderfarm-exporter.rules.yml")


def query(url, expr):
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def firing(url):
    """{alertname: [labels of each firing instance]} of the Prometheus at ``url``, {} while it does not answer."""
    try:
        alerts = query(url, 'ALERTS{alertstate="firing"}')
    except OSError:
        return {}
    found = {}
    for alert in alerts:
        found.setdefault(alert["metric"]["alertname"], []).append(alert["metric"])
    return found


@pytest.mark.needs_root  # a full tmpfs under --storage.path
def test_the_new_alerts_fire_on_the_daemons_own_metrics_in_a_real_prometheus(tmp_path, start_daemon, write_config):
    """promtool's unit tests feed the rules series written by hand. Here a real Prometheus scrapes the real daemon
    (the rules with ``for: 0s``, so nothing waits 15 minutes) while its checkpoints fail on a full disk, a pattern
    matches nothing in a folder that does not exist, and its web config change is refused: each alert fires, with
    the labels its summary names; fixing the folder and the web config resolves theirs."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], check=True)
    try:
        fill(str(state))
        acct = tmp_path / "logs" / "render01" / "cpu.acct"
        acct.parent.mkdir(parents=True)
        acct.write_text(LINE % 948300000)
        missing = tmp_path / "missing"
        config = write_config("rush:\n  cpu_acct: ['%s/logs/*/cpu.acct', '%s/*/cpu.acct']\n" % (tmp_path, missing))
        web = tmp_path / "web.yml"
        web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        daemon = start_daemon("--config", config, "--storage.path", str(state), "--web.config.file", str(web))
        rules = tmp_path / "rules.yml"
        with open(RULES) as handle:
            rules.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", handle.read()))
        url = run_prometheus(tmp_path, rules, daemon.port)
        web.write_text("http_server_config:\n  headers: [\n")
        stop = threading.Event()
        appender = threading.Thread(target=append_every_second, args=(acct, stop), daemon=True)
        appender.start()
        try:
            expected = {"RenderfarmExporterCheckpointWritesFailing", "RenderfarmExporterFolderNotWatched",
                        "RenderfarmStatsPatternMatchesNothing", "RenderfarmExporterWebConfigRefused"}
            wait_until(lambda: expected <= set(firing(url)), 60, "the four alerts to fire")
            alerts = firing(url)
            assert [a["directory"] for a in alerts["RenderfarmExporterFolderNotWatched"]] == [str(missing)]
            assert [a["pattern"] for a in alerts["RenderfarmStatsPatternMatchesNothing"]] == ["%s/*/cpu.acct" % missing]
            web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n")
            (missing / "render02").mkdir(parents=True)
            (missing / "render02" / "cpu.acct").write_text(LINE % 948300000)
            wait_until(lambda: not {"RenderfarmExporterWebConfigRefused", "RenderfarmExporterFolderNotWatched",
                                    "RenderfarmStatsPatternMatchesNothing"} & set(firing(url)), 120,
                       "the fixed folder's, pattern's and web config's alerts to resolve")
        finally:
            stop.set()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(folder):
    """Fills the file system of ``folder`` until it refuses a write (as root: nothing is reserved on tmpfs)."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def append_every_second(path, stop):
    """A render host writing a line a second (each change asks for a checkpoint)."""
    second = 948300001
    while not stop.wait(1.0):
        with open(path, "a") as handle:
            handle.write(LINE % second)
        second += 1


def run_prometheus(tmp_path, rules, port):
    """A real Prometheus scraping 127.0.0.1:``port`` every second with ``rules``; stopped at the test's end."""
    listen = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['%s']\n"
                      "scrape_configs:\n  - job_name: renderfarm\n    static_configs:\n"
                      "      - targets: ['127.0.0.1:%d']\n" % (rules, port))
    prometheus = subprocess.Popen([tool("prometheus"), "--config.file", str(config), "--storage.tsdb.path",
                                   str(tmp_path / "data"), "--web.listen-address", "127.0.0.1:%d" % listen,
                                   "--log.level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROMETHEUSES.append(prometheus)
    url = "http://127.0.0.1:%d" % listen
    wait_until(lambda: bool(firing(url)) or _answers(url), 30, "Prometheus to answer")
    return url


def _answers(url):
    try:
        return bool(query(url, 'up{job="renderfarm"} == 1'))
    except OSError:
        return False


PROMETHEUSES = []


@pytest.fixture(autouse=True)
def _stop_prometheuses():
    yield
    while PROMETHEUSES:
        prometheus = PROMETHEUSES.pop()
        prometheus.terminate()
        prometheus.wait(timeout=10)


@pytest.mark.needs_root  # a tmpfs under --storage.path, remounted read-only, unmounted and removed
def test_a_storage_path_that_fails_recovers_and_fails_again_is_warned_each_time(tmp_path, start_daemon,
                                                                                write_config):
    """The runbook's cases one after another: a full disk, space back, full again, a read-only mount, and the folder
    deleted (``rm -rf`` of a state directory: made again by the next write). Each new failure is warned at once
    with its own reason on the page (the once-a-minute limit is per episode), each recovery is logged, the counter
    counts every failed attempt, and nothing read is counted twice."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], check=True)
    stop = threading.Event()
    try:
        acct = tmp_path / "logs" / "render01" / "cpu.acct"
        acct.parent.mkdir(parents=True)
        acct.write_text(LINE % 948300000)
        config = write_config("rush:\n  cpu_acct: ['%s/logs/*/cpu.acct']\n" % tmp_path)
        daemon = start_daemon("--config", config, "--storage.path", str(state))
        threading.Thread(target=append_every_second, args=(acct, stop), daemon=True).start()
        checkpoint = state / "rush.rush_cpu_acct.checkpoint"

        def failures():
            return value(daemon.samples(), "renderfarm_exporter_checkpoint_write_failures_total") or 0

        def episode(number, break_it, reason, mend_it):
            before = failures()
            break_it()
            wait_until(lambda: failures() >= before + 2, 30, "two failed writes (%s)" % reason)
            assert len(log_lines(daemon, "cannot write the checkpoint; a restart will read more")) == number
            assert summary(page(daemon))["Checkpoints"] == (
                "FAILING in %s: %s: %s; a restart will read more" % (state, checkpoint, reason))
            mend_it()
            wait_until(lambda: len(log_lines(daemon, "checkpoint written again")) == number, 30,
                       "the checkpoint written again (%s)" % reason)
            wait_until(lambda: summary(page(daemon))["Checkpoints"].startswith("in %s: " % state), 10, "the summary")

        wait_until(lambda: checkpoint.exists(), 20, "a first checkpoint")
        episode(1, lambda: fill(str(state)), "No space left on device", lambda: os.unlink(state / "filler"))
        episode(2, lambda: fill(str(state)), "No space left on device", lambda: os.unlink(state / "filler"))
        episode(3, lambda: subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True),
                "Read-only file system",
                lambda: subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True))
        subprocess.run(["umount", str(state)], check=True)
        failed = failures()
        state.rmdir()  # deleted: the next write makes it again (mode 0700), nothing fails
        wait_until(lambda: checkpoint.exists(), 20, "the checkpoint written in a folder made again")
        assert failures() == failed and oct(state.stat().st_mode & 0o777) == "0o700"
        stop.set()
        daemon.wait_for_value("rush_frames_total", len(acct.read_text().splitlines()), timeout=10,
                              host="render01", status="done")
    finally:
        stop.set()
        subprocess.run(["umount", "-l", str(state)], check=False, stderr=subprocess.DEVNULL)


def test_a_pattern_that_starts_matching_leaves_no_stale_warning_on_the_page(tmp_path, start_daemon, write_config):
    """The empty mount point, then the share mounted (files appear): the log says the pattern matches files again;
    the page must not go on blaming the empty mount point."""
    share = tmp_path / "mnt" / "rush"
    share.mkdir(parents=True)
    pattern = "%s/*/cpu.acct" % share
    config = write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  rescan_interval: 1s\n" % pattern)
    daemon = start_daemon("--config", config, "--storage.path", "")
    assert "matches no file now" in summary(page(daemon))["Configuration warnings"]
    (share / "render01").mkdir()
    (share / "render01" / "cpu.acct").write_text(LINE % 948300000)
    daemon.wait_for_value("rush_frames_total", 1, timeout=15, host="render01", status="done")
    wait_until(lambda: log_lines(daemon, "pattern matches files again"), 15, "the log line of the files found")
    shown = page(daemon)
    assert "matches no file now" not in summary(shown)["Configuration warnings"], summary(shown)
    assert "All files are read." in shown


@pytest.mark.daemon
def test_an_interpreter_named_on_path_is_judged_where_path_finds_it(tmp_path, write_config):
    """``royalrender.python: python3.11`` found on a root shell's PATH in pyenv's shims (under /root) or a folder in
    /tmp: --check-config runs it happily, but the service cannot reach it. The check says where PATH found it."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3-attack25").symlink_to(sys.executable)
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text("[Service]\nPrivateTmp=yes\n")
    config = write_config("royalrender:\n  module: simulated\n  python: python3-attack25\n"
                          "  server_stats:\n    path: /srv/attack25/ss.db\n")
    result = subprocess.run([sys.executable, "-m", "exporter", "--check-config", "--systemd.unit", str(unit),
                             "--config.file", config], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=dict(NO_RR_ROOT, PATH="%s:%s" % (shims, os.environ["PATH"])))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if HIDES in line] == [
        "warning: royalrender.python: %s/python3-attack25 lies under /tmp, which the unit renderfarm-exporter.service "
        "hides from the service (PrivateTmp=yes): the service sees an empty folder there; move it, or relax the "
        "setting with systemctl edit (docs/installation.md#the-sandbox-what-the-service-cannot-see)" % shims]


HOSTILE_NAMES = [b"render\nts=2026-01-01T00:00:00.000Z level=error msg=forged", b"render\x1b[31mred", b"render\xff\xfe"]


def daemon_over_hostile_names(tmp_path, start_daemon, write_config, *args):
    """A daemon reading one cpu.acct (with a malformed line, which is logged with its path) in each folder of
    ``HOSTILE_NAMES``, once every file is read and each malformed line logged."""
    root = tmp_path / "logs"
    root.mkdir()
    config = write_config("rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  rescan_interval: 1s\n" % root)
    daemon = start_daemon("--config", config, "--storage.path", "", *args)
    for number, name in enumerate(HOSTILE_NAMES):
        folder = os.path.join(bytes(root), name)
        os.mkdir(folder)
        with open(os.path.join(folder, b"cpu.acct"), "w") as handle:
            handle.write((LINE % 948300000).replace("render01", "render%02d" % number) + "not a record\n")
    for number in range(len(HOSTILE_NAMES)):
        daemon.wait_for_value("rush_frames_total", 1, timeout=15, host="render%02d" % number, status="done")
    wait_until(lambda: daemon.log().count("malformed") >= len(HOSTILE_NAMES), 15, "each malformed line logged")
    return daemon


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_file_names_with_newlines_escapes_and_bytes_that_are_not_utf8_keep_one_log_line_each(
        tmp_path, start_daemon, write_config, log_format):
    """Host folders are named by whoever writes the share: a newline followed by a forged line, an ESC sequence, a
    byte that is not UTF-8. Every log line the daemon writes about them (a malformed line in each file, the pattern
    matching files again) stays one line of its format, and the files are read."""
    daemon = daemon_over_hostile_names(tmp_path, start_daemon, write_config, "--log.format", log_format)
    with open(daemon.stderr_path, "rb") as handle:
        lines = handle.read().splitlines()
    assert all(b"\x1b" not in line for line in lines)
    if log_format == "json":
        assert all(isinstance(json.loads(line), dict) for line in lines)
    else:
        assert all(line.startswith(b"ts=") for line in lines), [line for line in lines if not line.startswith(b"ts=")]


def test_the_page_shows_control_characters_of_file_names_escaped(tmp_path, start_daemon, write_config):
    daemon = daemon_over_hostile_names(tmp_path, start_daemon, write_config)
    status, _, body = daemon.get("/")
    assert status == 200 and b"msg=forged" in body
    assert b"\x1b" not in body and b"render\nts=" not in body


@pytest.mark.needs_root  # a FUSE mount
def test_checks_stuck_on_a_hung_share_are_not_started_again_until_they_return(hung_share, write_config):
    """Every reload runs the checks: over a share that stays hung they must cost one thread, not one per reload;
    once the share answers, the next check runs afresh."""
    config = load(write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % hung_share.mountpoint))

    def checking_threads():
        return [thread for thread in threading.enumerate() if thread.name == "config-check"]

    (first,) = notices(config, timeout=0.5)
    assert re.search(r"the checks did not finish within 0.5 s: .*\(started [01] s ago\)$", first.text), first
    started = time.monotonic()
    (second,) = notices(config, timeout=5)
    assert time.monotonic() - started < 1, "a second check waited for the stuck one"
    assert "a configured folder does not answer (a hung share?)" in second.text and len(checking_threads()) == 1
    hung_share.release_all()
    wait_until(lambda: not checking_threads(), 10, "the stuck check to return")
    assert not [n for n in notices(config) if "did not finish" in n.text]


@pytest.mark.daemon
def test_a_tilde_or_a_variable_in_a_path_is_said_not_to_be_expanded(tmp_path, write_config):
    """``~/acct`` and ``$RUSH_LOGS/...`` as a shell would expand them: the exporter does not (a relative path is
    under the config file's folder), so it reads nothing; the check says why instead of only 'does not exist'."""
    config = write_config("rush:\n  cpu_acct: ['~/acct/*/cpu.acct', '$RUSH_LOGS/*/cpu.acct', '%s/ok$/*/cpu.acct']\n"
                          "royalrender:\n  root: '${RR_ROOT}'\n  module: simulated\n" % tmp_path)
    result = exporter("--check-config", "--config.file", config)
    assert result.returncode == 0
    said = [line for line in result.stderr.splitlines() if "is not expanded" in line]
    assert said == [
        "warning: royalrender.root: ${RR_ROOT} is not expanded: the path is %s/${RR_ROOT} (relative paths are under "
        "the configuration file's folder); write the path itself" % tmp_path,
        "warning: rush.cpu_acct[0]: ~ is not expanded: the path is %s/~/acct/*/cpu.acct (relative paths are under "
        "the configuration file's folder); write the path itself" % tmp_path,
        "warning: rush.cpu_acct[1]: $RUSH_LOGS is not expanded: the path is %s/$RUSH_LOGS/*/cpu.acct (relative "
        "paths are under the configuration file's folder); write the path itself" % tmp_path], result.stderr


def test_drop_ins_are_read_from_every_folder_systemd_reads_them_from(tmp_path):
    """``systemctl edit --runtime`` writes /run/systemd/system/NAME.service.d/override.conf; a package's drop-ins are
    in /usr/lib/systemd/system/NAME.service.d/; ``service.d/`` and ``renderfarm-.service.d/`` apply to every
    service (of that prefix). systemd reads them all, in file-name order, a file in /etc masking one of the same name
    in /run or /usr/lib (systemd.unit(5)). Folders stand in for those under ``tmp_path``."""
    etc, run, lib = (tmp_path / name for name in ("etc", "run", "lib"))
    for folder in (etc, run, lib):
        folder.mkdir()
    (etc / "renderfarm-exporter.service").write_text("[Service]\nProtectHome=yes\nPrivateTmp=yes\n")

    def drop_in(root, folder, name, text):
        (root / folder).mkdir(exist_ok=True)
        (root / folder / name).write_text(text)

    roots = tuple(str(folder) for folder in (etc, run, lib))
    unit = str(etc / "renderfarm-exporter.service")
    assert dict(sandbox.read(unit, roots).hidden)["/home"] == "ProtectHome=yes"
    drop_in(run, "renderfarm-exporter.service.d", "override.conf", "[Service]\nProtectHome=read-only\n")
    assert "/home" not in dict(sandbox.read(unit, roots).hidden)
    drop_in(etc, "renderfarm-exporter.service.d", "override.conf", "[Service]\nProtectHome=tmpfs\n")  # masks /run's
    assert dict(sandbox.read(unit, roots).hidden)["/home"] == "ProtectHome=tmpfs"
    drop_in(lib, "service.d", "50-site.conf", "[Service]\nPrivateTmp=no\n")
    drop_in(lib, "renderfarm-.service.d", "60-site.conf", "[Service]\nProtectHome=no\n")
    hidden = dict(sandbox.read(unit, roots).hidden)
    assert "/tmp" not in hidden and hidden["/home"] == "ProtectHome=tmpfs"  # override.conf sorts after 60-site.conf
    assert sandbox.read(str(tmp_path / "elsewhere.service"), roots) is sandbox.NONE


def test_reload_reply_sighup_log_and_check_config_say_the_new_warnings_in_the_same_words(tmp_path, start_daemon,
                                                                                         write_config):
    """The sandbox of ``--systemd.unit``, a ``~`` and a symlink-free hidden path: a POST reload's reply and a SIGHUP
    reload's log lines say exactly what --check-config says for the same file and unit."""
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text("[Service]\nProtectHome=yes\n")
    local = tmp_path / "logs" / "render01" / "cpu.acct"
    local.parent.mkdir(parents=True)
    local.write_text(LINE % 948300000)
    config = write_config("rush:\n  cpu_acct: ['%s/logs/*/cpu.acct']\n" % tmp_path)
    daemon = start_daemon("--config", config, "--storage.path", "", "--systemd.unit", str(unit),
                          "--web.enable-lifecycle")
    with open(config, "w") as handle:
        handle.write("rush:\n  cpu_acct: ['%s/logs/*/cpu.acct', '/home/render/*/cpu.acct', '~/acct/*/cpu.acct']\n"
                     % tmp_path)
    checked = exporter("--check-config", "--systemd.unit", str(unit), "--config.file", config)
    said = [line[len("warning: "):] for line in checked.stderr.splitlines()]
    assert len(said) == 4 and any(HIDES in line for line in said) and any("~ is not expanded" in line
                                                                           for line in said), said
    request = urllib.request.Request(daemon.url + "/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=35) as response:
        assert response.read().decode() == "Reloaded\n" + checked.stderr
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: daemon.log().count("configuration reloaded") == 2, 15, "the SIGHUP reload")
    wait_until(lambda: all(daemon.log().count('problem="%s"' % line) == 2 for line in said), 5,
               "each warning logged by both reloads")
    assert html.unescape(summary(page(daemon))["Configuration warnings"]) == "4: " + "; ".join(said)
