"""A simulated Royal Render farm of 1,000 clients: full re-read time, series, scrapes meanwhile.

Run by hand: ``.venv/bin/python bench/rr_farm.py [clients]``. Loopback and a
temporary folder only, bounded in time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quick import fetch, percentile, start  # noqa: E402

from exporter.royalrender.simulator import RrFarmSimulator  # noqa: E402


def series_count(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def newest_client_time(url: str) -> float:
    times = [float(line.rsplit(" ", 1)[1]) for line in fetch(url + "/metrics").decode().splitlines()
             if line.startswith("royalrender_client_stats_timestamp_seconds{")]
    return min(times) if times else 0.0


def main(clients: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as folder:
        offset = [0.0]  # moved forward before the rewrite, so every client gets a newer latest item
        sim = RrFarmSimulator(os.path.join(folder, "rr"), clients=clients, seed=1,
                              clock=lambda: time.time() + offset[0])
        started = time.monotonic()
        sim.write_all()
        print("simulator wrote %d client files in %.1f s" % (clients, time.monotonic() - started))
        config = os.path.join(folder, "rr.yml")
        with open(config, "w") as handle:
            handle.write(sim.config_text() + "watch:\n  rescan_interval: 1h\n")
        started = time.monotonic()
        proc, url = start(config)
        print("daemon ready (first full read through the worker) after %.1f s" % (time.monotonic() - started))
        try:
            body = fetch(url + "/metrics")
            print("series: %d total, %d royalrender_*" % (series_count(body), sum(
                1 for line in body.decode().splitlines() if line.startswith("royalrender_"))))
            before = newest_client_time(url)
            latencies = []
            stop = threading.Event()

            def scrape():
                while not stop.is_set():
                    t = time.perf_counter()
                    fetch(url + "/metrics", gzip=True)
                    latencies.append(time.perf_counter() - t)

            scraper = threading.Thread(target=scrape)
            scraper.start()
            time.sleep(1.0)
            offset[0] = 60.0
            rewrite_started = time.monotonic()
            sim.step()
            rewritten = time.monotonic()
            deadline = rewritten + 300
            while newest_client_time(url) <= before and time.monotonic() < deadline:
                time.sleep(0.1)
            done = time.monotonic()
            stop.set()
            scraper.join()
            print("rewrite of every file took %.1f s; all clients re-read %.1f s after the rewrite ended "
                  "(%.1f s after it began)" % (rewritten - rewrite_started, done - rewritten, done - rewrite_started))
            print("scrapes during the re-read (gzip): %d, median %.1f ms, p99 %.1f ms, max %.1f ms" % (
                len(latencies), 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99),
                1000 * max(latencies)))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
