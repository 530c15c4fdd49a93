"""systemd's notify protocol, received on a real datagram socket as systemd would."""

import os
import signal
import socket
import threading
import time

import pytest
from conftest import value, wait_until

from exporter.simulation.simulator import RrFarmSimulator

pytestmark = pytest.mark.daemon


class NotifySocket:
    """A bound ``NOTIFY_SOCKET`` that keeps every message with the time it arrived."""

    def __init__(self, path):
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self.received = []  # (monotonic time, message)
        self._open = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while self._open:
            try:
                self.received.append((time.monotonic(), self._sock.recv(4096).decode()))
            except socket.timeout:
                continue

    def messages(self):
        return [message for _, message in self.received]

    def times(self, message):
        return [at for at, m in self.received if m == message]

    def close(self):
        self._open = False
        self._thread.join()
        self._sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_ready_then_watchdog_pings(tmp_path, start_daemon, write_config, notify_socket):
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="400000")
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "cpu.acct"))
    daemon = start_daemon("--config", config, env=env, ready=False)
    wait_until(lambda: "READY=1" in notify_socket.messages(), 20, "READY=1")
    wait_until(lambda: len(notify_socket.times("WATCHDOG=1")) > 3, 5, "repeated WATCHDOG=1")
    daemon.stop()
    wait_until(lambda: "STOPPING=1" in notify_socket.messages(), 5, "STOPPING=1")
    messages = notify_socket.messages()
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")


def test_a_reload_beside_a_hung_read_never_delays_a_watchdog_ping(tmp_path, start_daemon, write_config,
                                                                   notify_socket):
    """The old reader's read hangs for read_timeout; the reload replaces it without waiting for it."""
    farm = RrFarmSimulator(str(tmp_path / "rr"), clients=2, seed=7)
    farm.write_all()
    farm.inject("server_stats", "hang")  # the first full read hangs until read_timeout
    read_timeout = 6.0
    config = farm.config_text().replace("read_timeout: 5s", "read_timeout: %ds" % read_timeout)
    path = write_config(config)
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="2000000")  # a ping a second
    daemon = start_daemon("--config", path, env=env, ready=False)
    wait_until(lambda: "READY=1" in notify_socket.messages(), 20, "READY=1")
    write_config(config.replace("read_timeout: %ds" % read_timeout, "read_timeout: 5s"))  # a changed RR section
    hup = time.monotonic()
    daemon.proc.send_signal(signal.SIGHUP)

    wait_until(lambda: notify_socket.messages().count("READY=1") == 2, 5, "the reload to finish")
    reloaded = notify_socket.times("READY=1")[1]
    assert "Royal Render worker failed" not in daemon.log(), "the reload finished while the old read still hung"
    # The exporter's section is re-rendered within one render interval of the reload.
    wait_until(lambda: value(daemon.samples(), "renderfarm_exporter_config_reloads_total", result="success") == 1,
               2, "the reload to be counted")
    wait_until(lambda: "Royal Render worker failed" in daemon.log(), read_timeout + 10, "the hung read to time out")
    timed_out = time.monotonic()
    wait_until(lambda: len([at for at in notify_socket.times("WATCHDOG=1") if at > timed_out]) >= 2, 5,
               "pings after the old reader's retirement")
    pings = [at for at in notify_socket.times("WATCHDOG=1") if at >= hup - 1.0]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    # the margins are for a loaded 2-core CI machine; the hung read lasts read_timeout (6 s)
    assert reloaded - hup < read_timeout - 1, "the reload waited for the hung read"
    assert len(pings) >= read_timeout and max(gaps) < 3.0, "pings at %s" % ["%.2f" % (p - hup) for p in pings]
    assert "withholding the systemd watchdog ping" not in daemon.log(), "a thread swapped by the reload looked dead"
    assert daemon.proc.poll() is None
