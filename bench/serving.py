"""``python -m bench.serving``: scrapes beside slow readers and a flood of TLS handshakes, on a big exposition.

A Rush farm of ``--hosts`` hosts (about 1.7 KB of exposition a host), one line
appended every half second so that every slow reader gets a new version of the
body. Two figures, each with keep-alive scrapers timing their scrapes as
Prometheus does, and the exporter's RSS sampled throughout:

- ``--slow`` readers: each asks for ``/metrics`` with a 4 KiB receive buffer
  and then reads one byte every 20 s (they reconnect when dropped);
- ``--handshakes`` clients over TLS, each opening a new connection,
  handshaking and closing, over and over.

``--against DIR`` runs the same figures on another checkout's exporter in the
same run (e.g. a worktree of the previous release), for the "before" column.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Callable, List, Optional, Tuple

from bench.common import REPO, Row, free_port, ms, percentile, rss_mb, write_text
from bench.connections import raise_nofile_limit
from bench.data import write_cpu_acct

READ_EVERY = 20.0


def start(tree: str, config: str, web_config: Optional[str] = None) -> Tuple[subprocess.Popen, int]:
    """The exporter of the checkout ``tree`` (its package imported from there), once ready."""
    port = free_port()
    extra = ["--web.config.file", web_config] if web_config else []
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config, "--web.listen-address",
                             "127.0.0.1:%d" % port, "--log.level", "error", "--storage.path", "", *extra],
                            cwd=tree, env=dict(os.environ, PYTHONPATH=tree))
    context = _client_context() if web_config else None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            url = "%s://127.0.0.1:%d/-/ready" % ("https" if context else "http", port)
            if urllib.request.urlopen(url, timeout=2, context=context).status == 200:
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("exporter of %s exited with %d" % (tree, proc.returncode)) from None
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("exporter of %s not ready" % tree)


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Background(threading.Thread):
    """Runs ``step`` until stopped; ``step`` returns how long to wait before it runs again."""

    def __init__(self, step: Callable[[], float]):
        super().__init__(daemon=True)
        self._step, self._stopped = step, threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._step()):
            pass

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=30)

    def __enter__(self) -> Background:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def appender(path: str) -> Background:
    counter = [0]

    def append() -> float:
        counter[0] += 1
        with open(path, "a") as handle:
            handle.write("p %d bench.1 SHOT/beauty user00 0001 render000 100k 10 1 2 0 100\n"
                         % (1700100000 + counter[0]))
        return 0.5

    return Background(append)


class SlowReaders:
    """``count`` connections that ask for the metrics, then read one byte every ``READ_EVERY`` seconds."""

    def __init__(self, port: int, count: int):
        self.port, self.reconnects = port, 0
        self.socks = [self._open() for _ in range(count)]
        self._thread = Background(self._read_a_byte)

    def _open(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        sock.setblocking(False)
        return sock

    def _read_a_byte(self) -> float:
        for i, sock in enumerate(self.socks):
            try:
                if sock.recv(1):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sock.close()
            self.reconnects += 1
            self.socks[i] = self._open()
        return READ_EVERY

    def __enter__(self) -> SlowReaders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.stop()
        for sock in self.socks:
            sock.close()


class Handshakers:
    """``count`` threads, each opening a TLS connection, completing the handshake and closing, over and over."""

    def __init__(self, port: int, count: int):
        context = _client_context()

        def handshake() -> float:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                    with context.wrap_socket(raw):
                        pass
            except OSError:
                pass
            return 0.0

        self._threads = [Background(handshake) for _ in range(count)]

    def __enter__(self) -> Handshakers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for thread in self._threads:
            thread._stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)


def scrape_latencies(port: int, seconds: float, tls: bool, every: float = 0.2) -> Tuple[List[float], int]:
    """Keep-alive scrapes (OpenMetrics, gzip) for ``seconds``: their latencies and how many failed."""
    timings: List[float] = []
    failed = 0
    until = time.monotonic() + seconds
    conn = None
    while time.monotonic() < until:
        if conn is None:
            conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=_client_context()) if tls
                    else http.client.HTTPConnection("127.0.0.1", port, timeout=30))
        started = time.monotonic()
        try:
            conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                                     "Accept-Encoding": "gzip"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise OSError("status %d" % response.status)
            timings.append(time.monotonic() - started)
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = None
        time.sleep(every)
    if conn is not None:
        conn.close()
    return timings, failed


def _during(pid: int, load, port: int, seconds: float, tls: bool) -> Tuple[List[float], int, float, float]:
    """Scrapes while ``load`` runs; (latencies, failures, RSS before, highest RSS) of the exporter."""
    before = rss_mb(pid)
    peak = [before]
    sampler = Background(lambda: (peak.__setitem__(0, max(peak[0], rss_mb(pid))), 0.5)[1])
    sampler.start()
    try:
        with load:
            timings, failed = scrape_latencies(port, seconds, tls)
    finally:
        sampler.stop()
    return timings, failed, before, peak[0]


def measure(tree: str, folder: str, hosts: int, slow: int, handshakes: int, seconds: float) -> List[Tuple]:
    """(figure, p99 of scrapes, failures, RSS growth) for the slow readers and the handshakes."""
    os.makedirs(folder, exist_ok=True)
    acct = os.path.join(folder, "cpu.acct")
    write_cpu_acct(acct, lines=hosts * 20, hosts=hosts, jobs=hosts)
    config = write_text(os.path.join(folder, "config.yml"),
                        "rush:\n  cpu_acct: ['%s']\n  hosts:\n    series_budget: %d\n" % (acct, 100 * hosts))
    results = []
    proc, port = start(tree, config)
    try:
        size = len(urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30).read())
        with appender(acct):
            timings, failed, before, peak = _during(proc.pid, SlowReaders(port, slow), port, seconds, False)
        results.append(("%d slow readers (1 byte / %.0f s) on a %.1f MB exposition" % (slow, READ_EVERY, size / 1e6),
                        timings, failed, peak - before))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    web = _tls_web_config(folder)
    proc, port = start(tree, config, web)
    try:
        timings, failed, before, peak = _during(proc.pid, Handshakers(port, handshakes), port, seconds, True)
        results.append(("%d clients handshaking TLS over and over" % handshakes, timings, failed, peak - before))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return results


def _tls_web_config(folder: str) -> str:
    import trustme

    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    key_path, cert_path = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    return write_text(os.path.join(folder, "web.yml"), "tls_server_config:\n  cert_file: %s\n  key_file: %s\n"
                      % (cert_path, key_path))


def rows(folder: str, hosts: int, slow: int, handshakes: int, seconds: float,
         against: Optional[str] = None) -> List[Row]:
    mine = measure(REPO, os.path.join(folder, "mine"), hosts, slow, handshakes, seconds)
    theirs = (measure(against, os.path.join(folder, "before"), hosts, slow, handshakes, seconds) if against
              else [None] * len(mine))
    targets = ((0.100, 50.0), (0.250, None))
    out = []
    for (figure, timings, failed, grown), before, (p99_target, rss_target) in zip(mine, theirs, targets):
        p99 = percentile(timings, 0.99) if timings else float("inf")
        met = p99 <= p99_target and failed == 0 and (rss_target is None or grown <= rss_target)
        peer = "" if before is None else "before: p99 %s, %d failed, RSS +%.0f MB" % (
            ms(percentile(before[1], 0.99)) if before[1] else "-", before[2], before[3])
        target = "p99 <= %s%s" % (ms(p99_target), "" if rss_target is None else ", RSS +%.0f MB at most" % rss_target)
        out.append(Row(figure + ", keep-alive scrapes", "p99 %s, %d failed, RSS +%.0f MB" % (ms(p99), failed, grown),
                       peer, "", target, met))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--against", metavar="DIR", help="another checkout, measured in the same run")
    args = parser.parse_args()
    raise_nofile_limit()
    with tempfile.TemporaryDirectory() as folder:
        found = rows(folder, args.hosts, args.slow, args.handshakes, args.seconds, args.against)
    for row in found:
        print("%s: %s | %s | target %s | %s" % (row.figure, row.exporter, row.peer, row.target,
                                                "met" if row.met else "NOT MET"))
    return 0 if all(row.met for row in found) else 1


if __name__ == "__main__":
    sys.exit(main())
