"""HTTP endpoints: ``/``, the telemetry path, ``/-/healthy`` and ``/-/ready``.

Serves only what is already in memory: the pre-rendered exposition, chosen
by content negotiation (OpenMetrics or text 0.0.4, gzip or not). Only GET
and HEAD are answered (and POST on ``/-/reload`` when enabled); every other
path is 404. With a web config file, connections may be TLS and requests
need basic auth, except the two health paths. Request heads are bounded in
size and time, and connections in number, so no client can hold the
scrapes of others.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Tuple

from exporter import __version__
from exporter.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    accepts_gzip,
    wants_openmetrics,
)
from exporter.logs import fields
from exporter.webconfig import WebConfigFile, WebSettings

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
    """What the handler needs from the daemon, without knowing the daemon.

    ``reload`` is None unless ``--web.enable-lifecycle`` turned on ``POST /-/reload``;
    it returns None on success or the reason the new configuration was rejected.
    """

    def __init__(self, telemetry_path: str, exposition: Callable[[], Exposition], ready: Callable[[], bool],
                 landing_page: Callable[[], bytes], web: Optional[WebConfigFile] = None,
                 reload: Optional[Callable[[], Optional[str]]] = None):
        self.telemetry_path = telemetry_path
        self.exposition = exposition
        self.ready = ready
        self.landing_page = landing_page
        self.web = web or WebConfigFile(None)
        self.reload = reload


#: Paths anyone who reaches the port may ask, even with basic auth on: they tell only up or not.
OPEN_PATHS = ("/-/healthy", "/-/ready")
#: A connection may wait this long for the first byte of its next request (keep-alive idle time).
IDLE_TIMEOUT = 30.0
#: From a request's first byte to the end of its headers; slower clients are dropped.
HEAD_TIMEOUT = 10.0
#: Request line plus headers; a longer head gets 431.
MAX_HEAD_BYTES = 16 * 1024
#: Writing a response must progress within this time, or the connection is dropped.
WRITE_TIMEOUT = 30.0
#: Connections served at once; more are closed at once (each holds a thread).
MAX_CONNECTIONS = 256


class HeadTooLarge(Exception):
    pass


class BoundedHeadReader:
    """The request stream, read with a byte budget and a deadline per request head.

    The standard library bounds each header line but not the whole head, and
    its socket timeout restarts with every byte, so a client sending one byte
    every few seconds could hold a thread forever. Reading through ``peek``
    does at most one socket read per step, so the deadline is checked between
    every two reads.
    """

    def __init__(self, stream, sock: socket.socket):
        self._stream = stream
        self._sock = sock
        self._used = 0
        self._deadline = 0.0
        self._started = False

    def next_request(self) -> None:
        self._used = 0
        self._started = False
        self._deadline = time.monotonic() + IDLE_TIMEOUT

    def readline(self, limit: int = -1) -> bytes:
        line = bytearray()
        while limit < 0 or len(line) < limit:
            data = self._peek()
            if not data:
                break
            newline = data.find(b"\n")
            take = len(data) if newline < 0 else newline + 1
            if limit >= 0:
                take = min(take, limit - len(line))
            self._used += take
            if self._used > MAX_HEAD_BYTES:
                raise HeadTooLarge()
            line += self._stream.read(take)
            if line.endswith(b"\n"):
                break
        return bytes(line)

    def _peek(self) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("request head not complete in time")
        self._sock.settimeout(remaining)
        data = self._stream.peek(1)
        if data and not self._started:
            self._started = True
            self._deadline = min(self._deadline, time.monotonic() + HEAD_TIMEOUT)
        return data

    def read(self, size: int = -1) -> bytes:
        raise HeadTooLarge()  # request bodies are refused before anything reads one

    def close(self) -> None:
        self._stream.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "renderfarm-exporter/" + __version__
    protocol_version = "HTTP/1.1"
    app: App  # set on the subclass made by make_server

    def setup(self) -> None:
        self.request.settimeout(HEAD_TIMEOUT)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()
        self.rfile = BoundedHeadReader(self.rfile, self.request)

    def handle_one_request(self) -> None:
        self.rfile.next_request()
        try:
            super().handle_one_request()
        except HeadTooLarge:
            self.close_connection = True
            self.command, self.requestline, self.request_version = None, "", "HTTP/1.1"
            self.send_error(431, "Request head larger than %d bytes" % MAX_HEAD_BYTES)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/-/reload":
            self._refuse()
        elif self._admitted(path):
            self._reload()

    def _refuse(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"Method Not Allowed\n", True, {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _admitted(self, path: str, send_body: bool = True) -> bool:
        """Refuses ambiguous framing, requests with a body and, unless the path is open, without valid credentials.

        A head that two parsers could read differently (two Content-Length
        headers, ``Transfer-Encoding : chunked``) is how requests get smuggled
        past a proxy: 400, never a guess.
        """
        if self.headers.defects or len(self.headers.get_all("Content-Length", ())) > 1:
            self.close_connection = True
            self._send(400, "text/plain; charset=utf-8", b"Ambiguous request head\n", send_body)
            return False
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0").strip() != "0":
            self.close_connection = True
            self._send(413, "text/plain; charset=utf-8", b"Request bodies are not accepted\n", send_body)
            return False
        auth = self._settings.auth
        if auth is None or path in OPEN_PATHS or auth.allows(self.headers.get("Authorization")):
            return True
        self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n", send_body,
                   {"WWW-Authenticate": 'Basic realm="renderfarm-exporter", charset="UTF-8"'})
        return False

    def _respond(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if not self._admitted(path, send_body):
            return
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
        elif path == "/-/reload":
            self._send(405, "text/plain; charset=utf-8", b"Use POST\n", send_body, {"Allow": "POST"})
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found\n", send_body)

    def _reload(self) -> None:
        if self.app.reload is None:
            self._send(403, "text/plain; charset=utf-8",
                       b"Lifecycle API is not enabled (start with --web.enable-lifecycle)\n", True)
            return
        problem = self.app.reload()
        if problem is None:
            self._send(200, "text/plain; charset=utf-8", b"Reloaded\n", True)
        else:
            self._send(500, "text/plain; charset=utf-8", ("Reload failed: %s\n" % problem).encode(), True)

    def _metrics(self, send_body: bool) -> None:
        openmetrics = wants_openmetrics(self.headers.get("Accept", ""))
        compressed = accepts_gzip(self.headers.get("Accept-Encoding", ""))
        body = self.app.exposition().body(openmetrics, compressed)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        self._send(200, content_type, body, send_body, headers)

    @property
    def _settings(self) -> WebSettings:
        return self.app.web.current()

    def _send(self, status: int, content_type: str, body: bytes, send_body: bool, headers=None) -> None:
        self.request.settimeout(WRITE_TIMEOUT)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in list((headers or {}).items()) + list(self._settings.headers.items()):
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("http " + format % args)


class Server(ThreadingHTTPServer):
    """Threads per connection, at most MAX_CONNECTIONS at once; TLS per connection when configured.

    The TLS handshake happens on the connection's own thread, so a client
    that stalls mid-handshake holds up nobody else, and each connection takes
    the web config's current certificate.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog; the standard library's 5 drops bursts of scrapers
    web: WebConfigFile  # set by make_server

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._last_full_warning = 0.0
        super().__init__(*args, **kwargs)

    def get_request(self):
        sock, address = self.socket.accept()
        context = self.web.current().ssl_context
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self._warn_full()
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _warn_full(self) -> None:
        if time.monotonic() - self._last_full_warning >= 60.0:
            self._last_full_warning = time.monotonic()
            log.warning("too many connections; closing new ones until some finish",
                        extra=fields(limit=MAX_CONNECTIONS))

    def handle_error(self, request, client_address) -> None:
        """A client's broken connection or failed handshake is its problem, not an error of ours."""
        log.debug("connection failed", extra=fields(client=client_address[0], error=sys.exc_info()[1]))


def make_server(listen_address: str, app: App) -> Server:
    """Binds now (so a busy port fails at start-up, before READY=1)."""
    host, port = parse_listen_address(listen_address)
    handler = type("BoundHandler", (Handler,), {"app": app})
    family = socket.AF_INET
    if host == "" or ":" in host:
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    elif not _is_ip(host):
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("BoundServer", (Server,), {"address_family": family, "web": app.web})
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
