"""HTTP endpoints: ``/``, the telemetry path, ``/-/healthy`` and ``/-/ready``.

Serves only what is already in memory: the pre-rendered exposition, chosen
by content negotiation (OpenMetrics or text 0.0.4, gzip or not). Only GET
and HEAD are answered; every other path is 404.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Tuple

from exporter import __version__
from exporter.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    accepts_gzip,
    wants_openmetrics,
)

log = logging.getLogger(__name__)

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


class App:
    """What the handler needs from the daemon, without knowing the daemon."""

    def __init__(self, telemetry_path: str, exposition: Callable[[], Exposition], ready: Callable[[], bool],
                 landing_page: Callable[[], bytes]):
        self.telemetry_path = telemetry_path
        self.exposition = exposition
        self.ready = ready
        self.landing_page = landing_page


class Handler(BaseHTTPRequestHandler):
    server_version = "renderfarm-exporter/" + __version__
    protocol_version = "HTTP/1.1"
    app: App  # set on the subclass made by make_server

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _refuse(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"Method Not Allowed\n", True, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _respond(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == self.app.telemetry_path:
            self._metrics(send_body)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", self.app.landing_page(), send_body)
        elif path == "/-/healthy":
            self._send(200, "text/plain; charset=utf-8", b"Healthy\n", send_body)
        elif path == "/-/ready":
            ready = self.app.ready()
            self._send(200 if ready else 503, "text/plain; charset=utf-8",
                       b"Ready\n" if ready else b"Not ready: first read of the sources in progress\n", send_body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found\n", send_body)

    def _metrics(self, send_body: bool) -> None:
        openmetrics = wants_openmetrics(self.headers.get("Accept", ""))
        compressed = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        body = self.app.exposition().body(openmetrics, compressed)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        self._send(200, content_type, body, send_body, headers)

    def _send(self, status: int, content_type: str, body: bytes, send_body: bool, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("http " + format % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(listen_address: str, app: App) -> Server:
    """Binds now (so a busy port fails at start-up, before READY=1)."""
    host, port = parse_listen_address(listen_address)
    handler = type("BoundHandler", (Handler,), {"app": app})
    family = socket.AF_INET
    if host == "" or ":" in host:
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    elif not _is_ip(host):
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("BoundServer", (Server,), {"address_family": family})
    if family == socket.AF_INET6 and host == "":
        return _dual_stack(server_class, port, handler)
    return server_class((host, port), handler)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _dual_stack(server_class, port: int, handler) -> Server:
    """``:PORT`` listens on every IPv6 and IPv4 address, like Go's net.Listen."""
    server = server_class(("::", port), handler, bind_and_activate=False)
    try:
        server.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.server_bind()
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    return server
