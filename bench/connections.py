"""``python -m bench.connections``: scrapes on new connections while idle and slowloris clients hold thousands.

Against the demo farm, for ``--seconds``: ``--idle`` connections that never
send a byte and ``--slow`` ones that send one byte of a never-ending request
head a second (both reconnect when the exporter drops them), while
``--scrapers`` threads each open a new connection per scrape. Reports the
share of scrapes that succeeded, latency percentiles, and the exporter's
memory (RSS) at the start and at its highest. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import List

from bench.common import free_port, percentile, rss_mb
from bench.load import run_demo_daemon, wait_ready

SLOW_HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000


def raise_nofile_limit() -> int:
    """Lifts this process's soft descriptor limit to the hard one (children inherit it); returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Holders(threading.Thread):
    """Keeps ``count`` connections open, one byte a second on each when ``drip``; reopens dropped ones."""

    def __init__(self, port: int, count: int, drip: bool):
        super().__init__(daemon=True)
        self.port, self.count, self.drip = port, count, drip
        self.reconnects = 0
        self._selector = selectors.DefaultSelector()
        self._finished = threading.Event()
        self._sent = {}  # socket -> bytes of SLOW_HEAD sent

    def open_all(self) -> None:
        for _ in range(self.count):
            self._open()

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ)
        self._sent[sock] = 0

    def run(self) -> None:
        next_drip = time.monotonic()
        while not self._finished.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                self._reopen_if_closed(key.fileobj)
            if self.drip and time.monotonic() >= next_drip:
                next_drip += 1.0
                for sock in list(self._sent):
                    self._drip(sock)

    def _drip(self, sock: socket.socket) -> None:
        try:
            sock.send(SLOW_HEAD[self._sent[sock]:self._sent[sock] + 1])
            self._sent[sock] += 1
        except OSError:
            self._replace(sock)

    def _reopen_if_closed(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._replace(sock)

    def _replace(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._sent[sock]
        sock.close()
        self.reconnects += 1
        try:
            self._open()
        except OSError:
            pass  # counted as a reconnect; the holder runs one short

    def stop(self) -> None:
        self._finished.set()
        self.join(timeout=5)
        for sock in list(self._sent):
            sock.close()


@dataclass
class ScrapeResult:
    ok: int = 0
    failures: List[str] = field(default_factory=list)
    latencies: List[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        total = self.ok + len(self.failures)
        return self.ok / total if total else 0.0


def scrape_on_new_connections(port: int, seconds: float, threads: int) -> ScrapeResult:
    """``threads`` loops of: connect, GET /metrics, read it all, close; each counted and timed."""
    result, lock = ScrapeResult(), threading.Lock()
    until = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or len(body) != int(response.getheader("Content-Length")):
                    raise ValueError("status %d, %d bytes" % (response.status, len(body)))
                with lock:
                    result.ok += 1
                    result.latencies.append(time.monotonic() - started)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                with lock:
                    result.failures.append("%s: %s" % (type(exc).__name__, exc))
            finally:
                conn.close()

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return result


@dataclass
class Figures:
    scrapes: ScrapeResult
    reconnects: int
    rss_start_mb: float
    rss_max_mb: float


def measure(port: int, pid: int, idle: int, slow: int, seconds: float, scrapers: int) -> Figures:
    """Opens the idle and slow connections, scrapes for ``seconds`` beside them, samples RSS throughout."""
    holders = [Holders(port, idle, drip=False), Holders(port, slow, drip=True)]
    rss_start = rss_mb(pid)
    for holder in holders:
        holder.open_all()
        holder.start()
    peak = [rss_start]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(0.5):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    try:
        scrapes = scrape_on_new_connections(port, seconds, scrapers)
    finally:
        sampling.set()
        sampler.join()
        for holder in holders:
            holder.stop()
    return Figures(scrapes, sum(h.reconnects for h in holders), rss_start, peak[0])


def report(figures: Figures, idle: int, slow: int, seconds: float) -> str:
    s = figures.scrapes
    lines = ["%d idle + %d slowloris connections for %.0f s: %d of %d scrapes on new connections succeeded "
             "(%.3f%%), %d holder reconnects" % (idle, slow, seconds, s.ok, s.ok + len(s.failures),
                                                 100 * s.ratio, figures.reconnects)]
    if s.latencies:
        lines.append("latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % tuple(
            1000 * percentile(s.latencies, q) for q in (0.5, 0.99, 1.0)))
    lines.append("exporter RSS %.0f MB at the start, %.0f MB at most" % (figures.rss_start_mb, figures.rss_max_mb))
    lines += ["  failure: %s" % f for f in sorted(set(s.failures))[:10]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connections", description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--scrapers", type=int, default=2)
    parser.add_argument("--exporter-nofile", type=int, metavar="N",
                        help="the exporter's descriptor limit (e.g. systemd's default 1024); default: the hard limit")
    args = parser.parse_args()
    hard = raise_nofile_limit()
    port = free_port()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.exporter_nofile or hard, hard))  # inherited by the exporter
    daemon: subprocess.Popen = run_demo_daemon(port)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        wait_ready(port)
        figures = measure(port, daemon.pid, args.idle, args.slow, args.seconds, args.scrapers)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    print(report(figures, args.idle, args.slow, args.seconds))
    return 0 if figures.scrapes.ratio >= 0.999 and percentile(figures.scrapes.latencies, 0.99) < 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
