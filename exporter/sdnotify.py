"""systemd's notify protocol: one datagram to ``$NOTIFY_SOCKET``, no dependency needed."""

from __future__ import annotations

import os
import socket
from typing import Optional


def notify(state: str) -> bool:
    """Sends ``state`` (e.g. ``READY=1``); False when not run by systemd or on failure."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> Optional[float]:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), or None if off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6 / 2
