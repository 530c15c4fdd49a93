"""Quick measurements of the daemon: freshness of an appended line, scrape latency at ~30k series.

Run by hand: ``.venv/bin/python bench/quick.py``. Loopback only, bounded in
time. The full side-by-side benchmark against mtail and node_exporter is a
separate piece of work; this is the smoke check that the design targets of
the daemon core hold.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(config_path: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config_path,
                             "--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"], cwd=REPO)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/-/ready", timeout=1).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("daemon did not become ready")


def fetch(url: str, gzip: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return response.read()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def freshness(folder: str, rounds: int = 100) -> None:
    path = os.path.join(folder, "cpu.acct")
    open(path, "w").close()
    config = os.path.join(folder, "fresh.yml")
    with open(config, "w") as handle:
        handle.write("rush:\n  cpu_acct: ['%s']\n" % path)
    proc, url = start(config)
    latencies = []
    try:
        for n in range(1, rounds + 1):
            needle = ('rush_frames_total{host="fresh",status="done"} %d.0' % n).encode()
            with open(path, "a") as handle:
                handle.write("p 1 tahoe.1 T u %d fresh 100 1 0 0 0 1\n" % n)
            started = time.monotonic()
            while needle not in fetch(url + "/metrics"):
                if time.monotonic() - started > 5:
                    raise SystemExit("line %d not visible after 5 s" % n)
            latencies.append(time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait()
    print("freshness (events mode, %d appends): p50 %.0f ms, p99 %.0f ms, max %.0f ms" % (
        rounds, 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99), 1000 * max(latencies)))


def scrape_latency(folder: str, hosts: int = 4300, scrapes: int = 200) -> None:
    path = os.path.join(folder, "many.acct")
    with open(path, "w") as handle:
        for i in range(hosts):
            for code in (0, 1, 2, -9):
                handle.write("p 1 tahoe.1 T u 1 host%05d 100 10 1 1 %d 1\n" % (i, code))
            handle.write("u 1 50\n")
    config = os.path.join(folder, "many.yml")
    with open(config, "w") as handle:
        handle.write("rush:\n  cpu_acct: ['%s']\n" % path)
    proc, url = start(config)
    try:
        body = fetch(url + "/metrics").decode()
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        for label, gzip in (("text", False), ("gzip", True)):
            times = []
            for _ in range(scrapes):
                started = time.perf_counter()
                fetch(url + "/metrics", gzip)
                times.append(time.perf_counter() - started)
            print("scrape %s, %d series: median %.2f ms, p99 %.2f ms" % (
                label, series, 1000 * statistics.median(times), 1000 * percentile(times, 0.99)))
        rss = int(open("/proc/%d/status" % proc.pid).read().split("VmRSS:")[1].split()[0]) / 1024
        print("RSS with %d series: %.0f MB" % (series, rss))
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        freshness(folder)
        scrape_latency(folder)


if __name__ == "__main__":
    main()
