"""Listen addresses as Go exporters write and log them (``--web.listen-address``).

Apart from the server so that the command line can check an address
without importing the HTTP stack (``--once`` and ``--check-config`` start
faster without it).
"""

from __future__ import annotations

from typing import Tuple

DEFAULT_PORT = 19100
DEFAULT_LISTEN_ADDRESS = ":%d" % DEFAULT_PORT


def parse_listen_address(value: str) -> Tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all addresses) or ``[IPv6]:PORT``, as Go exporters take it."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, :PORT or [IPV6]:PORT, got %r" % value)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def display_address(address) -> str:
    """``[::]:19100`` or ``127.0.0.1:19100``, as Go exporters log where they listen (a Unix socket: its path)."""
    if isinstance(address, (str, bytes)):
        return address.decode() if isinstance(address, bytes) else address
    host, port = address[:2]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
