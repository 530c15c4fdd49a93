"""One bad moment during a reload never disables the later ones (the real daemon, real SIGHUP, real HTTP).

A FIFO at the config path is refused at once; a read that hangs (a FUSE
file system served by the test, whose reads it holds, as a hard-mounted
share whose server stopped answering) is abandoned after the read deadline
and reported; the next SIGHUP works; security settings never fall open.
"""

import base64
import os
import re
import signal
import time
import urllib.error
import urllib.request

import bcrypt
import pytest
from conftest import parse_samples, value, wait_until
from fusefs import HangingFile
from test_systemd_notify import NotifySocket

from exporter.config import READ_TIMEOUT

pytestmark = pytest.mark.daemon

LINE = "p 948300000 tahoe-1 T anna %d render01 100 30 1 2 0 77\n"
HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
AUTH = {user: {"Authorization": "Basic " + base64.b64encode(b"%s:pw" % user.encode()).decode()}
        for user in ("alice", "bob")}


def users(*names):
    return "basic_auth_users:\n" + "".join("  %s: %s\n" % (name, HASH) for name in names)


def reloads(daemon, result):
    return value(daemon.samples_as("alice"), "renderfarm_exporter_config_reloads_total", result=result)


def status_of(daemon, user, path="/metrics"):
    return daemon.get(path, headers=AUTH[user])[0]


@pytest.fixture
def authed(start_daemon):
    """A daemon whose scrapes authenticate as alice."""
    def start(*args, **kwargs):
        daemon = start_daemon(*args, **kwargs)

        def samples_as(user):
            status, _, body = daemon.get("/metrics", headers=AUTH[user])
            assert status == 200, status
            return parse_samples(body.decode())

        daemon.samples_as = samples_as
        return daemon

    return start


def sighup_until(daemon, result, count, timeout=15):
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: reloads(daemon, result) == count, timeout, "reload %s number %d" % (result, count))


def test_a_fifo_at_the_config_path_is_refused_and_the_next_sighup_applies_a_removed_user(
        tmp_path, authed, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % acct)
    web = tmp_path / "web.yml"
    web.write_text(users("alice", "bob"))
    daemon = authed("--config", config, "--web.config.file", str(web), "--web.enable-lifecycle")
    assert (status_of(daemon, "alice"), status_of(daemon, "bob")) == (200, 200)

    os.unlink(config)
    os.mkfifo(config)  # nobody will ever write to it: a blocking open() would wait for good
    os.unlink(web)
    os.mkfifo(web)
    started = time.monotonic()
    sighup_until(daemon, "failure", 1)
    assert time.monotonic() - started < 5
    log = daemon.log()
    assert ('msg="configuration reload failed; the previous configuration keeps running" file=%s error="%s is '
            'invalid:\\n  (top level): cannot read: refused: a FIFO, not a regular file"' % (config, config)) in log
    wait_until(lambda: "web config change REFUSED" in daemon.log(), 5, "the web config refusal")
    assert "refused: a FIFO, not a regular file" in daemon.log().split("web config change REFUSED")[1]
    assert status_of(daemon, "bob") == 200, "a refused web config keeps the settings in force"
    page = daemon.get("/", headers=AUTH["alice"])[2].decode()
    assert "FAILED (the previous configuration is still in use): %s is invalid:" % config in page
    assert "cannot read: refused: a FIFO, not a regular file" in page and "REFUSED" in page
    assert daemon.get("/-/healthy")[0] == 200, "a refused file is a reload failure, not a sick daemon"
    request = urllib.request.Request(daemon.url + "/-/reload", method="POST", data=b"", headers=AUTH["alice"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 500
    assert refused.value.read().decode() == ("Reload failed: %s is invalid:\n  (top level): cannot read: refused: "
                                             "a FIFO, not a regular file\n" % config)
    wait_until(lambda: reloads(daemon, "failure") == 2, 5, "the POST's failure counted")

    os.unlink(config)
    write_config("rush:\n  cpu_acct: ['%s']\nwatch:\n  debounce: 30ms\n" % acct)
    os.unlink(web)
    web.write_text(users("alice"))
    sighup_until(daemon, "success", 1)
    assert status_of(daemon, "bob") == 401
    assert status_of(daemon, "alice") == 200
    samples = daemon.samples_as("alice")
    assert value(samples, "renderfarm_exporter_config_last_reload_successful") == 1
    assert value(samples, "renderfarm_exporter_config_reloads_total", result="failure") == 2
    assert value(samples, "rush_frames_total", host="render01", status="done") == 1


@pytest.mark.needs_root
def test_a_config_read_hung_on_a_share_is_abandoned_reported_and_the_next_sighup_works(
        tmp_path, authed, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    share = tmp_path / "share"
    share.mkdir()
    fs = HangingFile(str(share), "config.yml", ("rush:\n  cpu_acct: ['%s']\n" % acct).encode())
    config = str(share / "config.yml")
    try:
        web = tmp_path / "web.yml"
        web.write_text(users("alice"))
        daemon = authed("--config", config, "--web.config.file", str(web))
        fs.hang.set()  # the share's server stops answering reads
        started = time.monotonic()
        sighup_until(daemon, "failure", 1, timeout=READ_TIMEOUT + 10)
        took = time.monotonic() - started
        assert READ_TIMEOUT <= took < READ_TIMEOUT + 3, took
        assert fs.reads_waiting == 1
        assert ("cannot read: not read within 5 s (a hung share?): abandoned; not tried again until that read "
                "returns") in daemon.log()
        status, _, body = daemon.get("/-/healthy")
        assert status == 503
        assert re.fullmatch(r"Unhealthy: a read of %s abandoned \d+ s ago has not returned \(a hung share\?\)\n"
                            % re.escape(config), body.decode()), body
        page = daemon.get("/", headers=AUTH["alice"])[2].decode()
        assert "not read within 5 s (a hung share?)" in page

        started = time.monotonic()
        sighup_until(daemon, "failure", 2)  # refused at once, with no second thread stuck on the share
        assert time.monotonic() - started < 3 and fs.reads_waiting == 1
        assert "has not returned yet (a hung share?); not tried again until it does" in daemon.log()

        fs.release()
        wait_until(lambda: daemon.get("/-/healthy")[0] == 200, 5, "/-/healthy to recover")
        sighup_until(daemon, "success", 1)
        with open(acct, "a") as handle:
            handle.write(LINE % 2)
        wait_until(lambda: value(daemon.samples_as("alice"), "rush_frames_total", host="render01",
                                 status="done") == 2, 10, "the next frame")
    finally:
        fs.close()


@pytest.mark.needs_root
def test_a_web_config_read_hung_on_a_share_keeps_the_stricter_settings_and_stops_the_watchdog(
        tmp_path, authed, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % acct)
    share = tmp_path / "share"
    share.mkdir()
    fs = HangingFile(str(share), "web.yml", users("alice").encode())  # bob removed
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        web = tmp_path / "web.yml"
        web.write_text(users("alice", "bob"))
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000")
        daemon = authed("--config", config, "--web.config.file", str(web), env=env)
        wait_until(lambda: len(notify.times("WATCHDOG=1")) >= 2, 5, "watchdog pings")
        assert status_of(daemon, "bob") == 200

        fs.hang.set()
        os.unlink(web)
        os.symlink(share / "web.yml", web)  # the new file, with bob removed, lives on a share that hangs
        wait_until(lambda: fs.reads_waiting == 1, 5, "the web config check to hang on the share")
        hung = time.monotonic()
        wait_until(lambda: value(daemon.samples_as("alice"), "renderfarm_exporter_web_config_reload_failures_total")
                   == 1, READ_TIMEOUT + 5, "the hung read to be abandoned and counted")
        assert "web config change REFUSED" in daemon.log()
        assert status_of(daemon, "bob") == 200, "bob's removal cannot be read yet"
        status, _, body = daemon.get("/-/healthy")
        assert status == 503
        assert re.fullmatch(r"Unhealthy: a read of %s abandoned \d+ s ago has not returned \(a hung share\?\)\n"
                            % re.escape(str(web)), body.decode()), body
        withheld = "withholding the systemd watchdog ping"
        wait_until(lambda: withheld in daemon.log(), 2, "the ping withheld")
        since = time.monotonic()
        before = daemon.log().count(withheld)
        wait_until(lambda: daemon.log().count(withheld) >= before + 4, 3, "four more ping intervals")
        assert not [at for at in notify.times("WATCHDOG=1") if at > since], "pings while bob's removal hangs"
        assert time.monotonic() - hung < READ_TIMEOUT + 8

        fs.release()
        wait_until(lambda: status_of(daemon, "bob") == 401, 5, "bob's removal to be applied")
        assert status_of(daemon, "alice") == 200
        assert daemon.get("/-/healthy")[0] == 200
        resumed = time.monotonic()
        wait_until(lambda: [at for at in notify.times("WATCHDOG=1") if at > resumed], 2, "pings again")
    finally:
        notify.close()
        fs.close()
