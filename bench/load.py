"""``python -m bench.load``: many concurrent scrapers against a daemon whose files keep changing.

Each scraper checks every response whole: status 200, the body length the
header announced, gzip that decompresses, an exposition that parses with
no family or series twice and ends where its format ends, and counters
that never go backwards between one scraper's scrapes. Any violation is
an error; the report gives the error count and latency percentiles.

Clients run in several processes (threads in one Python process would
mostly measure the client's own GIL).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from bench.common import REPO, free_port

OPENMETRICS = "application/openmetrics-text;version=1.0.0"
#: Counters checked for going backwards; Rush frame counts only grow while the demo runs.
MONOTONIC_PREFIX = "rush_frames_total"


@dataclass
class LoadResult:
    scrapes: int = 0
    errors: List[str] = field(default_factory=list)
    latencies: List[float] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.scrapes += other.scrapes
        self.errors.extend(other.errors)
        self.latencies.extend(other.latencies)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def check_exposition(body: bytes, openmetrics: bool) -> Dict[Tuple[str, Tuple], float]:
    """Samples of a whole, well-formed exposition; raises ValueError on anything torn or doubled."""
    text = body.decode("utf-8")
    if openmetrics and not text.endswith("# EOF\n"):
        raise ValueError("OpenMetrics body does not end with # EOF")
    if not openmetrics and not text.endswith("\n"):
        raise ValueError("text body does not end with a newline")
    families = list((parse_openmetrics if openmetrics else parse_text)(text))
    names = [f.name for f in families]
    if len(names) != len(set(names)):
        raise ValueError("a family appears twice")
    samples: Dict[Tuple[str, Tuple], float] = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in samples:
                raise ValueError("series %s appears twice" % (key,))
            samples[key] = sample.value
    return samples


def _scraper(port: int, path: str, until: float, index: int, result: LoadResult, lock: threading.Lock,
             check: bool) -> None:
    openmetrics = index % 2 == 1
    compressed = index % 4 >= 2
    headers = {"Accept": OPENMETRICS if openmetrics else "text/plain", "Accept-Encoding":
               "gzip" if compressed else "identity"}
    last: Dict[Tuple[str, Tuple], float] = {}
    mine = LoadResult()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            mine.latencies.append(time.monotonic() - started)
            mine.scrapes += 1
            if response.status != 200:
                raise ValueError("status %d" % response.status)
            if int(response.getheader("Content-Length")) != len(body):
                raise ValueError("Content-Length does not match the body")
            if not check:
                continue
            if compressed:
                body = gzip.decompress(body)
            samples = check_exposition(body, openmetrics)
            for key, value in samples.items():
                if key[0].startswith(MONOTONIC_PREFIX) and value < last.get(key, value):
                    raise ValueError("counter %s went back from %s to %s" % (key, last[key], value))
            last = samples
        except (OSError, ValueError, http.client.HTTPException) as exc:
            mine.errors.append("%s: %s" % (type(exc).__name__, exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    with lock:
        result.merge(mine)


def _client_process(port: int, path: str, until: float, first: int, threads: int, check: bool, queue) -> None:
    result, lock = LoadResult(), threading.Lock()
    workers = [threading.Thread(target=_scraper, args=(port, path, until, first + i, result, lock, check))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(result)


def hammer(port: int, scrapers: int, seconds: float, path: str = "/metrics", processes: int = 4,
           check: bool = True) -> LoadResult:
    """``scrapers`` concurrent keep-alive connections for ``seconds``, in ``processes`` client processes.

    ``check=False`` only reads the bodies: the clients then cost little CPU, and on a 2-core machine the
    latencies are the server's rather than the checking clients'.
    """
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    until = time.monotonic() + seconds
    per_process = [scrapers // processes + (1 if i < scrapers % processes else 0) for i in range(processes)]
    starts = [sum(per_process[:i]) for i in range(processes)]
    clients = [context.Process(target=_client_process, args=(port, path, until, starts[i], per_process[i], check,
                                                                  queue))
               for i in range(processes) if per_process[i]]
    for client in clients:
        client.start()
    total = LoadResult()
    for _ in clients:
        total.merge(queue.get(timeout=seconds + 120))
    for client in clients:
        client.join(timeout=10)
    return total


def run_demo_daemon(port: int) -> subprocess.Popen:
    """The exporter on its demo farm: Rush logs appended and rotated, RR files rewritten, all the time."""
    return subprocess.Popen([sys.executable, "-m", "exporter", "--demo", "--web.listen-address",
                             "127.0.0.1:%d" % port, "--log.level", "warn"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tempfile.gettempdir(),
                                                                                 "load-demo.log"), "wb"))


def wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/-/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("demo exporter not ready after %.0f s" % timeout)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--scrapers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="only read the bodies (measures the server, not the checking clients)")
    args = parser.parse_args()
    port = free_port()
    daemon = run_demo_daemon(port)
    try:
        wait_ready(port)
        result = hammer(port, args.scrapers, args.seconds, check=args.check)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    print("%d scrapers for %.0f s against the demo farm (%s): %d scrapes, %d errors" % (
        args.scrapers, args.seconds, "every response checked" if args.check else "bodies read, not checked",
        result.scrapes, len(result.errors)))
    print("latency p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms" % tuple(
        1000 * result.percentile(q) for q in (0.5, 0.9, 0.99, 1.0)))
    for error in sorted(set(result.errors))[:10]:
        print("  error:", error)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
