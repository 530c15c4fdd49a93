"""Where the exporter listens: every --web.listen-address given, and systemd socket activation."""

import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
from conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.daemon


def metrics(port, host="127.0.0.1"):
    with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=10) as response:
        return response.status, response.read()


def test_every_listen_address_is_served_and_logged_as_go_exporters_do(start_daemon, write_config, tmp_path):
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % tmp_path)
    second, third = free_port(), free_port()
    daemon = start_daemon("--config", config, "--web.listen-address", "127.0.0.1:%d" % second,
                          "--web.listen-address", ":%d" % third)
    for port in (daemon.port, second, third):
        status, body = metrics(port)
        assert status == 200 and b"renderfarm_exporter_build_info" in body
    addresses = re.findall(r'msg=listening address=(\S+)', daemon.log())
    assert addresses == ["127.0.0.1:%d" % daemon.port, "127.0.0.1:%d" % second, "[::]:%d" % third]


@pytest.mark.ecosystem
def test_systemd_socket_activation(write_config, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate is missing: scripts/test installs systemd"
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % tmp_path)
    port = free_port()
    log = open(tmp_path / "exporter.log", "wb")
    # the real tool: it listens, and starts the exporter with that socket on the first connection
    launcher = subprocess.Popen([activate, "-l", "127.0.0.1:%d" % port, sys.executable, "-m", "exporter",
                                 "--config", config, "--web.systemd-socket"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        def served():
            assert launcher.poll() is None, (tmp_path / "exporter.log").read_text()
            try:
                return metrics(port)[0] == 200
            except OSError:
                return False

        wait_until(served, 30, "the socket-activated exporter to answer")
        wait_until(lambda: 'msg=listening address=127.0.0.1:%d' % port in (tmp_path / "exporter.log").read_text(),
                   10, "the listening line")
        assert "systemd_socket=True" in (tmp_path / "exporter.log").read_text()
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=10)
        log.close()


def test_systemd_socket_without_systemd_is_a_clear_error(write_config, tmp_path):
    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % tmp_path)
    result = subprocess.run([sys.executable, "-m", "exporter", "--config", config, "--web.systemd-socket"],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no sockets from systemd (LISTEN_PID is not this process" in result.stderr


@pytest.mark.ecosystem
def test_systemd_socket_activation_on_a_unix_socket(write_config, tmp_path):
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path):
            super().__init__("localhost", timeout=10)
            self._path = path

        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self._path)

    config = write_config("rush:\n  cpu_acct: ['%s/*.acct']\n" % tmp_path)
    path = str(tmp_path / "exporter.sock")
    log = open(tmp_path / "exporter.log", "wb")
    launcher = subprocess.Popen([shutil.which("systemd-socket-activate"), "-l", path, sys.executable, "-m",
                                 "exporter", "--config", config, "--web.systemd-socket"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        def served():
            assert launcher.poll() is None, (tmp_path / "exporter.log").read_text()
            try:
                connection = UnixConnection(path)
                connection.request("GET", "/metrics")
                return connection.getresponse().status == 200
            except OSError:
                return False

        wait_until(served, 30, "the exporter on a Unix socket")
        wait_until(lambda: "msg=listening address=%s" % path in (tmp_path / "exporter.log").read_text(), 10,
                   "the listening line")
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=10)
        log.close()
