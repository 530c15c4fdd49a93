"""systemd's notify protocol, received on a real datagram socket as systemd would."""

import os
import socket

from conftest import wait_until


def test_ready_then_watchdog_pings(tmp_path, start_daemon, write_config):
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.1)
    messages = []

    def received(message):
        def check():
            try:
                messages.append(listener.recv(4096).decode())
            except socket.timeout:
                pass
            return message in messages

        return check

    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % (tmp_path / "cpu.acct"))
    daemon = start_daemon("--config", config, env=env, ready=False)
    try:
        wait_until(received("READY=1"), 20, "READY=1")
        wait_until(received("WATCHDOG=1"), 5, "WATCHDOG=1")
        pings = messages.count("WATCHDOG=1")
        wait_until(lambda: received("WATCHDOG=1")() and messages.count("WATCHDOG=1") > pings + 2, 5,
                   "repeated WATCHDOG=1")
        daemon.stop()
        wait_until(received("STOPPING=1"), 5, "STOPPING=1")
    finally:
        listener.close()
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")
