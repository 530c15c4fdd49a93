"""HTTP endpoints: ``/``, the telemetry path, ``/-/healthy`` and ``/-/ready``, served by one event loop.

Serves only what is already in memory: the pre-rendered exposition, chosen
by content negotiation (OpenMetrics or text 0.0.4, gzip or not). Only GET
and HEAD are answered (and POST on ``/-/reload`` when enabled); every other
path is 404. With a web config file, connections may be TLS and requests
need basic auth, except the two health paths.

Server model: one thread runs a ``selectors`` loop that owns every socket:
accepting, the TLS handshake, reading request heads (bounded in size and
time) and writing responses, all non-blocking. An idle keep-alive
connection or a slow client costs a few kilobytes and no thread, so
thousands of them cannot starve a scrape. A complete request is answered
on the loop when that is cheap (the exposition is cached bytes, the health
paths are constants) and by a small pool of threads when it may be slow
(the status page, a reload, a bcrypt check of credentials not seen before,
a scrape that renders changes or compresses a new exposition first).

When connections or file descriptors run out, the connection that has
waited longest for a request is closed to make room for the new one; when
there is none, a descriptor held in reserve takes it, and when those are in
use too the listener pauses briefly: the loop never spins on a failing
``accept()``, and the first warning is logged, then at most one a minute.
"""

from __future__ import annotations

import collections
import email.utils
import errno
import http
import ipaddress
import logging
import os
import re
import resource
import selectors
import socket
import ssl
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple, cast

from exporter import __version__
from exporter.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    accepts_gzip,
    wants_openmetrics,
)
from exporter.logs import fields
from exporter.status import ReloadOutcome
from exporter.web.addresses import parse_listen_address
from exporter.web.basicauth import BasicAuth
from exporter.web.webconfig import WebConfigFile

log = logging.getLogger(__name__)


class App:
    """What the handler needs from the daemon, without knowing the daemon.

    ``reload`` is None unless ``--web.enable-lifecycle`` turned on ``POST /-/reload``;
    its outcome says whether the new configuration was rejected and why, and the
    warnings of the configuration in force, which the reply lists as
    ``--check-config`` does.
    """

    def __init__(self, telemetry_path: str, exposition: Callable[[], Exposition], ready: Callable[[], bool],
                 landing_page: Callable[[str], bytes], web: Optional[WebConfigFile] = None,
                 reload: Optional[Callable[[], ReloadOutcome]] = None,
                 health: Callable[[], Optional[str]] = lambda: None,
                 exposition_may_be_slow: Callable[[bool, bool], bool] = lambda openmetrics, compressed: False):
        self.telemetry_path = telemetry_path
        self.exposition = exposition
        #: Whether ``exposition`` will render or compress first for a scrape of that format (OpenMetrics?, gzip?):
        #: the scrape is then answered on the pool.
        self.exposition_may_be_slow = exposition_may_be_slow
        self.ready = ready
        self.landing_page = landing_page
        self.web = web or WebConfigFile(None)
        self.reload = reload
        self.health = health  # None, or why the daemon is not healthy (a reload stuck past its deadline)


#: Paths anyone who reaches the port may ask, even with basic auth on: they tell only up or not.
OPEN_PATHS = ("/-/healthy", "/-/ready")
#: A keep-alive connection may wait this long for the first byte of its next request.
IDLE_TIMEOUT = 30.0
#: From a connection's start (TLS handshake included) or a request's first byte to the end of its head.
HEAD_TIMEOUT = 10.0
#: Request line plus headers; a longer head gets 431.
MAX_HEAD_BYTES = 16 * 1024
#: A response must be written within this time plus its size at ``MIN_WRITE_RATE``; progress does not renew it,
#: so a client reading a byte now and then cannot hold a response for ever.
WRITE_TIMEOUT = 30.0
MIN_WRITE_RATE = 256 * 1024
#: Bodies held by responses still being written, each counted once however many connections share it (an
#: exposition is one immutable buffer): past this, the response writing longest is dropped for the new one.
MAX_PENDING_BODY_BYTES = 32 * 1024 * 1024
#: Kernel send buffer of a connection (the kernel doubles it): what a slow client holds in kernel memory, and
#: ample for a scrape across a WAN link (bandwidth x delay).
SEND_BUFFER = 256 * 1024
#: TLS handshake steps taken per round of the loop: a flood of handshakes waits its turn behind requests.
HANDSHAKES_PER_ROUND = 4
#: Connections open at once, and at most half the process's descriptor limit (the other half is left to
#: the files). An idle one costs about 4 KB (plain) or 40 KB (TLS); at the limit the one waiting longest
#: for a request is closed for the new one.
MAX_CONNECTIONS = 10_000
#: Threads answering what may be slow (status page, reload, a bcrypt check); the loop answers the rest.
HANDLER_THREADS = 4
#: Descriptors kept open on /dev/null so that a connection can still be taken when all others are used.
RESERVE_DESCRIPTORS = 4
#: How long the listener pauses when no descriptor is left, not even in reserve.
ACCEPT_BACKOFF = 0.1
#: After the last response of a connection, its input is read and dropped for up to this long, so the
#: client reads the response instead of a reset.
LINGER_SECONDS = 2.0
#: Deadlines are checked this often.
TICK = 0.25
LISTEN_BACKLOG = 1024
ACCEPT_BATCH = 64
SEND_CHUNK = 256 * 1024
WARN_EVERY = 60.0

KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(r"HTTP/(\d)\.\d\Z")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
TEXT = "text/plain; charset=utf-8"


# -- requests and responses -------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: Mapping[str, str]  # names in lower case

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens


def parse_head(head: bytes) -> Request:
    """One request line and its headers (without the blank line after them); raises HttpError.

    Strict wherever two parsers could read a head differently, which is how
    requests get smuggled past a proxy: a header name is a token with the
    colon right after it, no folded lines, ``Content-Length`` at most once.
    """
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise HttpError(400, "Malformed request line")
    method, target, version = (part.decode("latin-1") for part in parts)
    match = _VERSION.match(version)
    if not match:
        raise HttpError(400, "Malformed HTTP version")
    if match.group(1) != "1":
        raise HttpError(505, "HTTP version not supported")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, "Malformed header line (a space before the colon, or a folded line)")
        key = name.decode("ascii").lower()
        if key == "content-length" and key in headers:
            raise HttpError(400, "Content-Length given twice")
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    return Request(method, target, "HTTP/1.0" if version == "HTTP/1.0" else "HTTP/1.1", headers)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False  # the connection ends after this response

    def encode(self, send_body: bool, keep_alive: bool) -> Tuple[bytes, bytes]:
        """Status line and headers, and the body (empty for HEAD): the body is not copied, so every connection
        sending the same exposition shares one buffer."""
        lines = ["HTTP/1.1 %d %s" % (self.status, http.HTTPStatus(self.status).phrase),
                 "Server: renderfarm-exporter/" + __version__,
                 "Date: " + email.utils.formatdate(usegmt=True),
                 "Content-Type: " + self.content_type,
                 "Content-Length: %d" % len(self.body)]
        lines += ["%s: %s" % item for item in self.headers.items()]
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head, self.body if send_body else b""


def error(status: int, message: str) -> Response:
    """A refusal that ends the connection (what follows the head cannot be trusted)."""
    return Response(status, (message + "\n").encode(), close=True)


def _scrape_format(request: Request) -> Tuple[bool, bool]:
    """Whether a scrape asks for OpenMetrics, and for gzip."""
    return (wants_openmetrics(request.headers.get("accept", "")),
            accepts_gzip(request.headers.get("accept-encoding", "")))


class Responder:
    """What to answer to one complete request: the routes, knowing the app but not the sockets."""

    def __init__(self, app: App):
        self.app = app

    def may_be_slow(self, request: Request) -> bool:
        """Whether answering may take long enough to hold up the loop (it then runs on the pool)."""
        if request.method == "POST" or request.path == "/":
            return True
        if request.path == self.app.telemetry_path and self.app.exposition_may_be_slow(*_scrape_format(request)):
            return True
        auth = self.app.web.current().auth
        return (auth is not None and request.path not in OPEN_PATHS
                and auth.cached(request.headers.get("authorization")) is None)

    def answer(self, request: Request) -> Response:
        settings = self.app.web.current()
        response = self._route(request, settings.auth)
        return self.with_site_headers(response)

    def with_site_headers(self, response: Response) -> Response:
        """The web config's response headers (``http_server_config.headers``) on every answer."""
        return replace(response, headers=dict(response.headers, **self.app.web.current().headers))

    def _route(self, request: Request, auth: Optional[BasicAuth]) -> Response:
        if request.headers.get("transfer-encoding") or request.headers.get("content-length", "0").strip() != "0":
            return error(413, "Request bodies are not accepted")
        if request.method not in KNOWN_METHODS:
            return Response(501, b"Not Implemented\n")
        if request.method not in ("GET", "HEAD") and (request.method, request.path) != ("POST", "/-/reload"):
            return Response(405, b"Method Not Allowed\n", headers={"Allow": "GET, HEAD"})
        if (auth is not None and request.path not in OPEN_PATHS
                and not auth.allows(request.headers.get("authorization"))):
            return Response(401, b"Unauthorized\n",
                            headers={"WWW-Authenticate": 'Basic realm="renderfarm-exporter", charset="UTF-8"'})
        if request.method == "POST":
            return self._reload()
        return self._get(request)

    def _get(self, request: Request) -> Response:
        path = request.path
        if path == self.app.telemetry_path:
            return self._metrics(request)
        if path == "/":
            return Response(200, self.app.landing_page(request.query), "text/html; charset=utf-8")
        if path == "/-/healthy":
            problem = self.app.health()
            return Response(200, b"Healthy\n") if problem is None else Response(
                503, ("Unhealthy: %s\n" % problem).encode())
        if path == "/-/ready":
            ready = self.app.ready()
            return Response(200, b"Ready\n") if ready else Response(
                503, b"Not ready: first read of the sources in progress\n")
        if path == "/-/reload":
            return Response(405, b"Use POST\n", headers={"Allow": "POST"})
        return Response(404, b"Not Found\n")

    def _reload(self) -> Response:
        if self.app.reload is None:
            return Response(403, b"Lifecycle API is not enabled (start with --web.enable-lifecycle)\n")
        outcome = self.app.reload()
        warnings = "".join("warning: %s\n" % notice for notice in outcome.notices)
        if outcome.problem is None:
            return Response(200, ("Reloaded\n" + warnings).encode())
        return Response(500, ("Reload failed: %s\n" % outcome.problem).encode())

    def _metrics(self, request: Request) -> Response:
        openmetrics, compressed = _scrape_format(request)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return Response(200, self.app.exposition().body(openmetrics, compressed),
                        OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, headers)

    def safely(self, request: Request) -> Response:
        """``answer``, with a bug turned into a 500 for this request rather than a dead loop or thread."""
        try:
            return self.answer(request)
        except Exception:  # one request's failure must not take the server down
            log.exception("answering a request failed", extra=fields(method=request.method, path=request.path))
            return self.with_site_headers(error(500, "Internal Server Error"))


# -- connections and the loop -------------------------------------------------------


class Connection:
    """One client's socket and where it is in its exchange; touched only by the loop thread."""

    __slots__ = ("sock", "address", "state", "buffer", "out", "body", "writing_since", "deadline", "started",
                 "keep_alive", "events", "reserved", "closed", "queued")

    def __init__(self, sock: socket.socket, address, reserved: bool, deadline: float):
        self.sock = sock
        self.address = address
        self.state = "handshake" if isinstance(sock, ssl.SSLSocket) else "reading"
        self.buffer = bytearray()
        self.out: List[memoryview] = []  # what is left to send of the response: head, then body
        self.body = b""  # the response's body while it is being written (counted in the pending bytes)
        self.writing_since = 0.0
        self.deadline: Optional[float] = deadline
        self.started = False  # a byte of the current request head has arrived
        self.keep_alive = True
        self.events = 0
        self.reserved = reserved  # holds a descriptor taken from the reserve
        self.closed = False
        self.queued = False  # waiting for its turn at a TLS handshake step


class Server:
    """The event loop: ``serve_forever`` on one thread, ``shutdown`` and ``server_close`` from another."""

    def __init__(self, listeners: Sequence[socket.socket], app: App):
        for listener in listeners:
            listener.setblocking(False)
        self.listeners = list(listeners)
        self._responder = Responder(app)
        self._web = app.web
        self._selector = selectors.DefaultSelector()
        self._connections: Set[Connection] = set()
        self._max_connections = min(MAX_CONNECTIONS, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
        #: Connections waiting for a request head (idle, slow or in their handshake), longest-waiting first.
        self._waiting: collections.OrderedDict[Connection, None] = collections.OrderedDict()
        self._pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="http-handler")
        self._answered: Deque[Tuple[Connection, Request, Response]] = collections.deque()
        #: Keep-alive connections with input already read (pipelined requests, TLS-buffered bytes).
        self._runnable: Deque[Connection] = collections.deque()
        self._wake_reader, self._wake_writer = socket.socketpair()
        for sock in (self._wake_reader, self._wake_writer):
            sock.setblocking(False)
        self._reserve: List[int] = []
        self._refill_reserve()
        self._paused_until: Optional[float] = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._warned: Dict[str, Tuple[float, int]] = {}
        #: bodies of responses being written: id -> (connections sending it, its size)
        self._pending: Dict[int, Tuple[int, int]] = {}
        self._pending_bytes = 0
        #: connections whose next TLS handshake step waits for a later round
        self._handshakes: Deque[Connection] = collections.deque()

    # -- life cycle --

    def serve_forever(self) -> None:
        self._listen()
        self._selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        next_tick = time.monotonic() + TICK
        try:
            while not self._stopping.is_set():
                timeout = 0.0 if self._runnable or self._handshakes else None if self._nothing_to_tick() else max(
                    0.0, next_tick - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    self._dispatch_event(key.data, self._step)
                for _ in range(len(self._runnable)):
                    self._dispatch_event(self._runnable.popleft(), self._resume)
                for _ in range(min(HANDSHAKES_PER_ROUND, len(self._handshakes))):
                    conn = self._handshakes.popleft()
                    conn.queued = False
                    self._dispatch_event(conn, self._handshake)
                now = time.monotonic()
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + (ACCEPT_BACKOFF if self._paused_until is not None else TICK)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._stopping.set()
        self._wake()
        self._stopped.wait(timeout=5.0)

    def server_close(self) -> None:
        for conn in list(self._connections):
            self._close(conn)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for fd in self._reserve:
            os.close(fd)
        for sock in (*self.listeners, self._wake_reader, self._wake_writer):
            sock.close()
        self._selector.close()

    def _dispatch_event(self, data, step: Callable[[Connection], None]) -> None:
        if isinstance(data, socket.socket):
            self._accept(data)
        elif data == "wake":
            self._send_answered()
        elif not data.closed:
            try:
                step(data)
            except Exception:  # a bug with one connection must not stop the others
                log.exception("connection failed", extra=fields(client=str(data.address)))
                self._close(data)

    def _step(self, conn: Connection) -> None:
        {"handshake": self._queue_handshake, "reading": self._read, "writing": self._write,
         "lingering": self._drain}[conn.state](conn)

    def _queue_handshake(self, conn: Connection) -> None:
        """A handshake step waits for its turn (``HANDSHAKES_PER_ROUND``), unwatched meanwhile."""
        self._watch(conn, 0)
        if not conn.queued:
            conn.queued = True
            self._handshakes.append(conn)

    def _nothing_to_tick(self) -> bool:
        """No connection with a deadline, no paused listener, a full reserve: the loop sleeps until an event
        (an idle exporter does not wake up four times a second)."""
        return not self._connections and self._paused_until is None and len(self._reserve) >= RESERVE_DESCRIPTORS

    def _tick(self, now: float) -> None:
        """Drops connections past their deadline; resumes a paused listener; refills the reserve."""
        for conn in [c for c in self._connections if c.deadline is not None and now > c.deadline]:
            log.debug("connection timed out", extra=fields(client=str(conn.address), state=conn.state))
            self._close(conn, reset=conn.state == "writing")
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._listen()
        self._refill_reserve()

    # -- accepting --

    def _listen(self) -> None:
        """Every listener in the selector; its key's data is the listener itself."""
        for listener in self.listeners:
            self._selector.register(listener, selectors.EVENT_READ, listener)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(listener)
                else:
                    self._warn("accept() failed", error=exc)
                    self._pause()
                return
            if len(self._connections) >= self._max_connections:
                self._warn("too many connections; closing the ones waiting longest for a request",
                           limit=self._max_connections)
                self._evict()
            self._admit(sock, address, reserved=False)

    def _out_of_descriptors(self, listener: socket.socket) -> None:
        """No descriptor for a new connection: close an idle one, else use the reserve, else pause."""
        self._warn("out of file descriptors; closing connections waiting longest for a request, then using "
                   "reserved descriptors", reserve=len(self._reserve))
        if self._evict():
            return  # the pending connection is accepted on the next round
        if not self._reserve:
            self._pause()
            return
        os.close(self._reserve.pop())
        try:
            sock, address = listener.accept()
        except OSError:
            self._refill_reserve()
            self._pause()
            return
        self._admit(sock, address, reserved=True)

    def _evict(self) -> bool:
        if not self._waiting:
            return False
        self._close(next(iter(self._waiting)))
        return True

    def _pause(self) -> None:
        if self._paused_until is None:
            for listener in self.listeners:
                self._selector.unregister(listener)
        self._paused_until = time.monotonic() + ACCEPT_BACKOFF

    def _refill_reserve(self) -> None:
        while len(self._reserve) < RESERVE_DESCRIPTORS:
            try:
                self._reserve.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def _admit(self, sock: socket.socket, address, reserved: bool) -> None:
        sock.setblocking(False)
        context = self._web.current().ssl_context
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):  # a Unix socket from systemd has no TCP options
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a response's last bytes go at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            if context is not None:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:  # the client already went away
            sock.close()
            return
        conn = Connection(sock, address, reserved, time.monotonic() + HEAD_TIMEOUT)
        self._connections.add(conn)
        self._waiting[conn] = None
        if conn.state == "handshake":
            self._queue_handshake(conn)
        else:
            self._read(conn)

    # -- one connection's exchange --

    def _handshake(self, conn: Connection) -> None:
        """The TLS handshake, one non-blocking step at a time; its time counts against HEAD_TIMEOUT."""
        try:
            cast(ssl.SSLSocket, conn.sock).do_handshake()  # the state is "handshake" only for TLS sockets
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
        except OSError as exc:  # ssl.SSLError included: a failed handshake is the client's problem
            log.debug("TLS handshake failed", extra=fields(client=str(conn.address), error=exc))
            self._close(conn)
        else:
            self._await_request(conn)

    def _await_request(self, conn: Connection) -> None:
        """Waits for the next request; input already read is taken up by the loop's next round."""
        conn.state = "reading"
        conn.started = False
        conn.deadline = time.monotonic() + IDLE_TIMEOUT
        self._waiting[conn] = None
        self._waiting.move_to_end(conn)
        self._watch(conn, 0)
        self._runnable.append(conn)

    def _resume(self, conn: Connection) -> None:
        if not self._take_head(conn):
            self._read(conn)

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._watch(conn, selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            conn.buffer += data
            if not conn.started:
                conn.started = True
                head_deadline = time.monotonic() + HEAD_TIMEOUT
                conn.deadline = head_deadline if conn.deadline is None else min(conn.deadline, head_deadline)
            if self._take_head(conn):
                return

    def _take_head(self, conn: Connection) -> bool:
        """Hands a complete head on; True when the connection stopped reading (answered or refused)."""
        if conn.buffer[:1] in (b"\r", b"\n"):  # empty lines before a request are allowed
            del conn.buffer[:len(conn.buffer) - len(conn.buffer.lstrip(b"\r\n"))]
        end = _HEAD_END.search(conn.buffer)
        if end is None and len(conn.buffer) <= MAX_HEAD_BYTES:
            return False
        self._waiting.pop(conn, None)
        self._watch(conn, 0)
        conn.state = "handling"
        conn.deadline = None
        if end is None or end.start() > MAX_HEAD_BYTES:
            self._respond(conn, None, self._responder.with_site_headers(
                error(431, "Request head larger than %d bytes" % MAX_HEAD_BYTES)))
            return True
        head = bytes(conn.buffer[:end.start()])
        del conn.buffer[:end.end()]
        try:
            request = parse_head(head)
        except HttpError as exc:
            self._respond(conn, None, self._responder.with_site_headers(error(exc.status, str(exc))))
            return True
        if self._responder.may_be_slow(request):
            future = self._pool.submit(self._responder.safely, request)
            future.add_done_callback(lambda done: self._answered_on_pool(conn, request, done))
        else:
            self._respond(conn, request, self._responder.safely(request))
        return True

    def _answered_on_pool(self, conn: Connection, request: Request, done: Future) -> None:
        """On a pool thread: queues the answer for the loop, which alone touches sockets."""
        if not done.cancelled():
            self._answered.append((conn, request, done.result()))
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except OSError:  # full: the loop is already due to wake
            pass

    def _send_answered(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._answered:
            conn, request, response = self._answered.popleft()
            if not conn.closed:
                self._respond(conn, request, response)

    def _respond(self, conn: Connection, request: Optional[Request], response: Response) -> None:
        conn.keep_alive = request is not None and request.keep_alive and not response.close
        head, body = response.encode(request is None or request.method != "HEAD", conn.keep_alive)
        self._make_room(body)
        conn.out, conn.body = [memoryview(head), memoryview(body)], body
        self._pin(body, 1)
        conn.state = "writing"
        conn.writing_since = time.monotonic()
        conn.deadline = conn.writing_since + WRITE_TIMEOUT + (len(head) + len(body)) / MIN_WRITE_RATE
        if request is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("http", extra=fields(client=str(conn.address[0]), method=request.method, path=request.path,
                                           status=response.status))
        self._write(conn)

    def _pin(self, body: bytes, change: int) -> None:
        """Counts a connection starting (+1) or ending (-1) the write of ``body``; each body counts once."""
        if not body:
            return
        users, size = self._pending.get(id(body), (0, len(body)))
        users += change
        if users == 1 and change > 0:
            self._pending_bytes += size
        if not users:
            self._pending.pop(id(body), None)
            self._pending_bytes -= size
        else:
            self._pending[id(body)] = (users, size)

    def _make_room(self, body: bytes) -> None:
        """Drops the responses writing longest until ``body`` fits under ``MAX_PENDING_BODY_BYTES``."""
        if id(body) in self._pending or self._pending_bytes + len(body) <= MAX_PENDING_BODY_BYTES:
            return
        writers = sorted((c for c in self._connections if c.state == "writing" and c.body),
                         key=lambda c: c.writing_since)
        while writers and self._pending_bytes + len(body) > MAX_PENDING_BODY_BYTES:
            slowest = writers.pop(0)
            self._warn("too many bytes pending to slow clients; dropped the response writing longest",
                       client=str(slowest.address), pending_bytes=self._pending_bytes)
            self._close(slowest, reset=True)

    def _write(self, conn: Connection) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out[0][:SEND_CHUNK])
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            rest = conn.out[0][sent:]
            if rest:
                conn.out[0] = rest
            else:
                conn.out.pop(0)
        self._done_writing(conn)
        if conn.keep_alive:
            self._await_request(conn)
        else:
            self._linger(conn)

    def _done_writing(self, conn: Connection) -> None:
        self._pin(conn.body, -1)
        conn.out, conn.body = [], b""

    def _linger(self, conn: Connection) -> None:
        """Closes after the last response; a plain connection first drains what the client still sends."""
        if isinstance(conn.sock, ssl.SSLSocket):
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state = "lingering"
        conn.deadline = time.monotonic() + LINGER_SECONDS
        conn.buffer.clear()
        self._drain(conn)

    def _drain(self, conn: Connection) -> None:
        for _ in range(16):  # a client that keeps sending gets a turn per round until LINGER_SECONDS
            try:
                if not conn.sock.recv(65536):
                    break
            except BlockingIOError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                break
        else:
            self._watch(conn, selectors.EVENT_READ)
            return
        self._close(conn)

    def _watch(self, conn: Connection, events: int) -> None:
        """Registers interest in ``events`` (0: none) for the connection's socket."""
        if events == conn.events:
            return
        if not events:
            self._selector.unregister(conn.sock)
        elif not conn.events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: Connection, reset: bool = False) -> None:
        """``reset``: a response cut short, so the kernel drops what it still holds instead of sending it."""
        if conn.closed:
            return
        conn.closed = True
        self._done_writing(conn)
        if reset:
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._watch(conn, 0)
        self._waiting.pop(conn, None)
        self._connections.discard(conn)
        conn.sock.close()
        if conn.reserved:
            self._refill_reserve()

    def _warn(self, message: str, **context) -> None:
        """Logs the first time, then at most once a minute with how often it happened meanwhile."""
        now = time.monotonic()
        last, count = self._warned.get(message, (-WARN_EVERY, 0))
        if now - last < WARN_EVERY:
            self._warned[message] = (last, count + 1)
            return
        log.warning(message, extra=fields(since_last_warning=count, **context))
        self._warned[message] = (now, 0)


def make_server(listen_addresses: Sequence[str], app: App, systemd_socket: bool = False) -> Server:
    """Binds every address now (so a busy port fails at start-up, before READY=1), or takes systemd's sockets."""
    if systemd_socket:
        return Server(systemd_listeners(), app)
    return Server([_bind(*parse_listen_address(address)) for address in listen_addresses], app)


#: sd_listen_fds(3): systemd passes sockets from descriptor 3 on, with LISTEN_PID and LISTEN_FDS
SD_LISTEN_FDS_START = 3


def systemd_listeners() -> List[socket.socket]:
    """The listening sockets systemd passed (socket activation), as exporter-toolkit's --web.systemd-socket."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise OSError("--web.systemd-socket: no sockets from systemd (LISTEN_PID is not this process; is the "
                      "unit started by a .socket unit?)")
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    if count < 1:
        raise OSError("--web.systemd-socket: LISTEN_FDS names no socket")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for children, as sd_listen_fds(unset_environment=1) does
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        listeners.append(socket.socket(fileno=fd))
    return listeners


def _bind(host: str, port: int) -> socket.socket:
    """``:PORT`` listens on every IPv6 and IPv4 address, like Go's net.Listen."""
    if host == "" and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, backlog=LISTEN_BACKLOG,
                                    dualstack_ipv6=True)
    host = host or "0.0.0.0"
    if ":" in host:
        family = socket.AF_INET6
    elif _is_ip(host):
        family = socket.AF_INET
    else:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
