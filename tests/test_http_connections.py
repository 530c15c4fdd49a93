"""The event loop under connection floods and descriptor exhaustion, on the real daemon (loopback only)."""

import http.client
import os
import re
import resource
import socket
import ssl
import time

import pytest
import trustme
from conftest import value, wait_until

from bench.common import percentile
from bench.connections import measure, raise_nofile_limit
from bench.data import write_cpu_acct
from exporter.web import httpserver

pytestmark = pytest.mark.daemon


def rush_daemon(start_daemon, write_config, tmp_path):
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n")
    return start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s']\n" % path))


def open_descriptors(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_and_slowloris_connections_do_not_starve_scrapes(tmp_path, start_daemon, write_config):
    """The CI cut of ``python -m bench.connections`` (2,000 idle + 300 slowloris for 60 s, run by hand)."""
    raise_nofile_limit()
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    figures = measure(daemon.port, daemon.proc.pid, idle=1000, slow=150, seconds=10.0, scrapers=2)
    scrapes = figures.scrapes
    assert scrapes.ok >= 500, "scrapes kept going"
    assert scrapes.ratio >= 0.999, sorted(set(scrapes.failures))[:5]
    assert percentile(scrapes.latencies, 0.99) < 0.5  # the 100 ms target is measured by bench.connections
    assert figures.rss_max_mb - figures.rss_start_mb < 50, "memory stays bounded"
    assert daemon.proc.poll() is None


def test_idle_connections_beyond_the_descriptor_limit_make_room_for_scrapes(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    pid = daemon.proc.pid
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_descriptors(pid) + 40, hard))
    held = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(120)]
    try:
        for sock in held[::2]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # slowloris: a head begun, never finished
        statuses = [daemon.get("/metrics")[0] for _ in range(20)]
        assert statuses == [200] * 20, "each scrape took the place of the connection waiting longest"
        assert daemon.log().count("out of file descriptors") == 1, "logged once, not per connection"
    finally:
        for sock in held:
            sock.close()


def _links(pid):
    """What the process's descriptors point at; one closed while they are listed is skipped."""
    links = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            links.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:  # the daemon closed it meanwhile (a file read, a finished request)
            continue
    return links


def take_every_descriptor(pid):
    """Lowers the limit to the lowest free descriptor number, once no client connection is left open."""
    def only_own_sockets():  # the listener and the loop's wake-up pair
        return sum(link.startswith("socket:") for link in _links(pid)) == 3

    wait_until(only_own_sockets, 5, "the readiness probes' connections to close")
    used = {int(fd) for fd in os.listdir("/proc/%d/fd" % pid)}
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(set(range(len(used) + 1)) - used), hard))


def test_the_reserve_serves_scrapes_when_every_descriptor_is_taken(tmp_path, start_daemon, write_config):
    """Files (or anything else) holding every descriptor: scrapes still get one, from the reserve."""
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    take_every_descriptor(daemon.proc.pid)
    statuses = [daemon.get(path)[0] for path in ("/metrics", "/-/healthy", "/-/ready") * 5]
    assert statuses == [200] * 15
    assert daemon.log().count("out of file descriptors") == 1


def test_with_no_descriptor_left_at_all_the_listener_backs_off_instead_of_spinning(tmp_path, start_daemon,
                                                                                    write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    pid = daemon.proc.pid
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))  # not even the reserve can take a connection
    waiting = socket.create_connection(("127.0.0.1", daemon.port))  # sits in the listen backlog
    waiting.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: "out of file descriptors" in daemon.log(), 5, "the exhaustion to be noticed")
    cpu_before, samples = cpu_seconds(pid), 0

    def observed_two_seconds():
        nonlocal samples
        samples += 1
        return samples >= 40  # 40 polls of 50 ms

    wait_until(observed_two_seconds, 5, "two seconds of observation")
    assert cpu_seconds(pid) - cpu_before < 0.5, "the accept loop spins"
    assert daemon.log().count("out of file descriptors") == 1

    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200"), "the waiting client is served once descriptors return"
    waiting.close()
    assert daemon.get("/metrics")[0] == 200


def test_pipelined_requests_and_http_1_0_are_answered_in_order(tmp_path, start_daemon, write_config):
    daemon = rush_daemon(start_daemon, write_config, tmp_path)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = read_until_closed(sock)
    assert re.findall(rb"HTTP/1\.1 (\d+) ", replies) == [b"200", b"200", b"404"]
    assert b"Healthy\nHTTP/1.1 200 OK\r\n" in replies, "the HEAD answer follows the first, without a body"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
        reply = read_until_closed(sock)  # HTTP/1.0 without keep-alive: closed after one answer
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\nHealthy\n")


def read_until_closed(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_stalled_tls_handshakes_hold_up_no_scrape(tmp_path, start_daemon, write_config):
    """Handshakes are non-blocking steps of the loop: clients that stop mid-handshake wait alone, then go."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    path = tmp_path / "cpu.acct"
    path.write_text("")
    daemon = start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s']\n" % path),
                          "--web.config.file", str(tmp_path / "web.yml"), ready=False)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def https_status():
        conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context, timeout=5)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    wait_until(lambda: https_status() == 200, 20, "https to answer")
    stalled = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(200)]
    for sock in stalled[::2]:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the first bytes of a ClientHello, never the rest
    try:
        started = time.monotonic()
        assert [https_status() for _ in range(20)] == [200] * 20
        assert time.monotonic() - started < 5
        stalled[0].settimeout(httpserver.HEAD_TIMEOUT + 5)
        assert stalled[0].recv(1) == b"", "a stalled handshake is dropped after HEAD_TIMEOUT"
    finally:
        for sock in stalled:
            sock.close()


def big_rush_daemon(start_daemon, write_config, tmp_path, hosts=2000):
    """A daemon whose exposition is about 0.4 MB per 1,000 hosts (2,000: a slow reader's socket buffers hold a
    quarter of it), every host under its own label."""
    path = tmp_path / "cpu.acct"
    write_cpu_acct(str(path), lines=hosts * 20, hosts=hosts, jobs=hosts)
    config = "rush:\n  cpu_acct: ['%s']\n  hosts:\n    series_budget: %d\n" % (path, 20 * hosts)
    return start_daemon("--config", write_config(config)), path


def slow_reader(port):
    """A client that asks for the metrics with a 4 KiB receive buffer, so the exporter holds the rest."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    sock.settimeout(0.5)
    return sock


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def dropped(sock):
    """Reads one byte (progress, however slow); True once the exporter reset or closed the connection, seen in
    the socket's TCP state: the bytes already in its receive buffer would hide it from ``recv`` for minutes."""
    try:
        sock.recv(1)
    except socket.timeout:
        pass
    except OSError:
        return True
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (TCP_CLOSE, TCP_CLOSE_WAIT)


def test_a_reader_taking_a_byte_now_and_then_is_dropped_when_the_response_outlasts_its_bound(
        tmp_path, start_daemon, write_config):
    daemon, _ = big_rush_daemon(start_daemon, write_config, tmp_path)
    size = len(daemon.get("/metrics")[2])
    assert size > 700_000
    bound = httpserver.WRITE_TIMEOUT + size / httpserver.MIN_WRITE_RATE
    sock = slow_reader(daemon.port)
    started = time.monotonic()
    try:
        wait_until(lambda: dropped(sock), bound + 10, "the slow reader to be dropped")
    finally:
        sock.close()
    assert time.monotonic() - started > httpserver.WRITE_TIMEOUT - 1, "its progress bought it no more time"
    assert daemon.get("/-/healthy")[0] == 200


def test_slow_readers_pinning_old_expositions_are_dropped_oldest_first(tmp_path, start_daemon, write_config):
    """Each reader holds a different version of a 2 MB body; past 32 MiB pending the longest writing goes.

    Each version is served about half a second after its line (the render ahead of the expected scrape), so
    the 24 versions take some 15 s: well within the oldest reader's own write deadline (30 s and more), which
    must not be what drops it."""
    daemon, path = big_rush_daemon(start_daemon, write_config, tmp_path, hosts=5000)
    readers = []
    try:
        done = value(daemon.samples(), "rush_frames_total", host="render000", status="done")
        for n in range(1, 25):
            with open(path, "a") as handle:
                handle.write("p %d t.1 S u 1 render000 100k 10 1 2 0 9\n" % (1700200000 + n))
            daemon.wait_for_value("rush_frames_total", done + n, host="render000", status="done", timeout=10)
            readers.append(slow_reader(daemon.port))
        wait_until(lambda: dropped(readers[0]), 10, "the oldest slow reader to be dropped")
        assert not dropped(readers[-1]), "the newest keeps its response"
        assert "too many bytes pending to slow clients" in daemon.log()
        status, _, body = daemon.get("/metrics")
        assert status == 200 and b"rush_frames_total" in body
    finally:
        for sock in readers:
            sock.close()
