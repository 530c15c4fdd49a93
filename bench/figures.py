"""Each benchmark figure, measured side by side in one run; every loop is bounded, loopback only."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable, List

from bench.common import (
    REPO,
    Row,
    cpu_seconds,
    fetch,
    free_port,
    latencies,
    ms,
    percentile,
    rss_mb,
    series_count,
    start_exporter,
    stop,
    timed,
    visible_after,
    wait_http,
    write_text,
)
from bench.data import Totals, check_totals, parse_exposition, write_cpu_acct, write_mtail_progs
from exporter.simulation.simulator import RrFarmSimulator

#: Alternated runs of each side in the ingest row; the medians are compared (one run is noise here).
INGEST_RUNS = 3


def ingest(folder: str, lines: int) -> List[Row]:
    path = os.path.join(folder, "cpu.acct")
    totals = write_cpu_acct(path, lines)
    progs = write_mtail_progs(folder)
    config = write_text(os.path.join(folder, "ingest.yml"), "rush:\n  cpu_acct: ['%s']\n" % path)
    mtail_runs, exporter_runs = [], []
    for _ in range(INGEST_RUNS):
        mtail_runs.append(_mtail_one_shot(progs, path, totals))
        exporter_runs.append(_exporter_once(config, totals))
    mtail_seconds, exporter_seconds = statistics.median(mtail_runs), statistics.median(exporter_runs)
    wc_seconds = min(timed(["wc", "-l", path])[0] for _ in range(3))
    ratio = mtail_seconds / exporter_seconds
    return [
        Row("cpu.acct ingest, %d lines (identical totals checked; median of %d alternated runs)"
            % (lines, INGEST_RUNS), "%.0f lines/s" % (lines / exporter_seconds),
            "mtail %.0f lines/s" % (lines / mtail_seconds), "%.1fx" % ratio, ">= 5x mtail", ratio >= 5),
        Row("physical limit: wc -l, warm cache", "%.2f s" % exporter_seconds, "wc %.3f s" % wc_seconds,
            "%.0fx slower" % (exporter_seconds / wc_seconds), "report", None),
    ]


def _mtail_one_shot(progs: str, path: str, totals: Totals) -> float:
    """Seconds mtail takes to read ``path`` once, its totals checked."""
    seconds, mtail = timed(["mtail", "--one_shot", "--one_shot_format", "prometheus", "--progs", progs,
                            "--logs", path, "--logtostderr", "--address", "127.0.0.1", "--port", str(free_port())],
                           timeout=3600)
    if mtail.returncode != 0:
        raise SystemExit("mtail failed: %s" % mtail.stderr.decode()[-2000:])
    check_totals("mtail", parse_exposition(mtail.stdout.decode()), totals)
    return seconds


def _exporter_once(config: str, totals: Totals) -> float:
    """Seconds ``--once`` takes to read the file (every core, rush.read_processes: auto), its totals checked."""
    seconds, once = timed([sys.executable, "-m", "exporter", "--config", config, "--once"], cwd=REPO, timeout=3600)
    if once.returncode != 0:
        raise SystemExit("exporter --once failed: %s" % once.stderr.decode()[-2000:])
    check_totals("exporter", parse_exposition(once.stdout.decode()), totals)
    return seconds


def _node_exporter(folder: str, exposition: bytes):
    textfiles = os.path.join(folder, "textfile")
    os.makedirs(textfiles, exist_ok=True)
    own = (b"process_", b"python_", b"# HELP process_", b"# TYPE process_", b"# HELP python_", b"# TYPE python_")
    with open(os.path.join(textfiles, "farm.prom"), "wb") as handle:
        handle.write(b"".join(line + b"\n" for line in exposition.splitlines() if not line.startswith(own)))
    port = free_port()
    proc = subprocess.Popen(["prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
                             "--collector.textfile.directory", textfiles, "--web.disable-exporter-metrics",
                             "--web.listen-address", "127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/metrics" % port
    wait_http(url)
    return proc, url


def farm_figures(folder: str, clients: int, rush_hosts: int, scrapes: int, idle_seconds: float) -> List[Row]:
    """Scrape latency against node_exporter, footprint, and the RR re-read, on one ~30k-series farm."""
    offset = [0.0]
    sim = RrFarmSimulator(os.path.join(folder, "rr"), clients=clients, seed=1, clock=lambda: time.time() + offset[0])
    sim.write_all()
    acct = os.path.join(folder, "farm.acct")
    write_cpu_acct(acct, rush_hosts * 20, hosts=rush_hosts)
    config = write_text(os.path.join(folder, "farm.yml"),
                    sim.config_text() + "rush:\n  cpu_acct: ['%s']\nwatch:\n  rescan_interval: 1h\n" % acct)
    empty, _ = start_exporter(write_text(os.path.join(folder, "empty.yml"), "rush:\n  cpu_acct: []\n"))
    empty_rss = rss_mb(empty.pid)
    stop(empty)
    proc, url = start_exporter(config)
    rows = []
    try:
        body = fetch(url + "/metrics")
        series = series_count(body)
        node, node_url = _node_exporter(folder, body)
        try:
            node_series = series_count(fetch(node_url))
            for gzip in (False, True):
                mine = latencies(url + "/metrics", gzip, scrapes)
                theirs = latencies(node_url, gzip, scrapes)
                ratio = statistics.median(mine) / statistics.median(theirs)
                rows.append(Row("scrape %s, %d series (node_exporter: %d)" % ("gzip" if gzip else "text", series,
                                                                            node_series),
                                "median %s, p99 %s" % (ms(statistics.median(mine)), ms(percentile(mine, 0.99))),
                                "node_exporter textfile: median %s, p99 %s" % (
                                    ms(statistics.median(theirs)), ms(percentile(theirs, 0.99))),
                                "%.3fx" % ratio, "<= 0.1x node_exporter", ratio <= 0.1))
        finally:
            stop(node)
        rss = rss_mb(proc.pid)
        before = cpu_seconds(proc.pid)
        time.sleep(idle_seconds)
        idle = 100.0 * (cpu_seconds(proc.pid) - before) / idle_seconds
        per_series = (rss - empty_rss) * 1024 * 1024 / series
        rows.append(Row("footprint, %d series" % series, "RSS %.0f MB (%.0f bytes per series over an empty "
                        "exporter's %.0f MB); idle CPU %.2f%% of a core over %.0f s" % (
                            rss, per_series, empty_rss, idle, idle_seconds), "", "",
                        "RSS <= 60 MB, about 0.9 KiB per series, idle <= 0.2%", rss <= 60 and idle <= 0.2))
        rows.append(_rr_reread(sim, offset, url, clients))
    finally:
        stop(proc)
    return rows


def _newest_client_time(url: str) -> float:
    times = [float(line.rsplit(b" ", 1)[1]) for line in fetch(url + "/metrics").splitlines()
             if line.startswith(b"royalrender_client_stats_timestamp_seconds{")]
    return min(times) if times else 0.0


def _rr_reread(sim: RrFarmSimulator, offset: List[float], url: str, clients: int) -> Row:
    before = _newest_client_time(url)
    latencies: List[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            started = time.perf_counter()
            fetch(url + "/metrics", gzip=True)
            latencies.append(time.perf_counter() - started)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        offset[0] += 60.0  # every client gets a newer latest item
        for client in sim.clients:
            sim.write_client_stats(client)
        written = time.monotonic()
        deadline = written + 600
        while _newest_client_time(url) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        seconds = time.monotonic() - written
    finally:
        done.set()
        scraper.join()
    return Row("RR re-read of %d client files through the worker" % clients, "%.1f s after the rewrite" % seconds,
               "", "", "report; scrapes meanwhile p99 %s (median %s)" % (
                   ms(percentile(latencies, 0.99)), ms(statistics.median(latencies))), None)


def freshness(folder: str, rounds: int, poll_rounds: int) -> List[Row]:
    acct = os.path.join(folder, "fresh.acct")
    open(acct, "w").close()
    proc, url = start_exporter(write_text(os.path.join(folder, "fresh.yml"), "rush:\n  cpu_acct: ['%s']\n" % acct))
    try:
        def append(n: int) -> Callable[[], None]:
            def write() -> None:
                with open(acct, "a") as handle:
                    handle.write("p 1 tahoe.1 T u %d fresh 100 1 0 0 0 1\n" % n)
            return write

        events = [visible_after(url, append(n), lambda body, n=n: (
            b'rush_frames_total{host="fresh",status="done"} %d.0' % n) in body, 5) for n in range(1, rounds + 1)]
    finally:
        stop(proc)
    offset = [0.0]
    sim = RrFarmSimulator(os.path.join(folder, "fresh-rr"), clients=2, seed=2, clock=lambda: time.time() + offset[0])
    sim.write_all()
    config = write_text(os.path.join(folder, "fresh-rr.yml"),
                    sim.config_text() + "watch:\n  mode: poll\n  poll_interval: 2s\n  rescan_interval: 1h\n")
    proc, url = start_exporter(config)
    try:
        def rewrite() -> None:
            offset[0] += 600.0
            sim.write_server_stats()

        polled = []
        for _ in range(poll_rounds):
            old = [line for line in fetch(url + "/metrics").splitlines()
                   if line.startswith(b"royalrender_server_stats_last_save_timestamp_seconds ")]
            polled.append(visible_after(url, rewrite, lambda body, old=old: old[0] not in body, 10))
    finally:
        stop(proc)
    return [
        Row("freshness, events: append one line (%d rounds)" % rounds,
            "p50 %s, p99 %s" % (ms(statistics.median(events)), ms(percentile(events, 0.99))), "", "",
            "p99 <= 1 s", percentile(events, 0.99) <= 1.0),
        Row("freshness, poll 2 s: rewrite an RR file (%d rounds)" % poll_rounds,
            "p50 %s, p99 %s" % (ms(statistics.median(polled)), ms(percentile(polled, 0.99))), "", "",
            "p99 <= 2.25 s", percentile(polled, 0.99) <= 2.25),
    ]


def _cpu_per_append(folder: str, name: str, lines: int, appends: int) -> float:
    """CPU seconds one appended line costs the exporter, idle CPU subtracted; nothing scrapes meanwhile."""
    path = os.path.join(folder, name + ".acct")
    write_cpu_acct(path, lines, seed=3)
    proc, url = start_exporter(write_text(os.path.join(folder, name + ".yml"), "rush:\n  cpu_acct: ['%s']\n" % path))
    try:
        time.sleep(2)
        idle_start, wall_start = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(3)
        idle_rate = (cpu_seconds(proc.pid) - idle_start) / (time.monotonic() - wall_start)
        start_cpu, start_wall = cpu_seconds(proc.pid), time.monotonic()
        for n in range(appends):
            with open(path, "a") as handle:
                handle.write("p 1 tahoe.1 T u %d marker 100 1 0 0 0 1\n" % n)
            time.sleep(0.3)  # longer than the debounce and a render: each append is read on its own
        used = cpu_seconds(proc.pid) - start_cpu - idle_rate * (time.monotonic() - start_wall)
        expected = b'rush_frames_total{host="marker",status="done"} %d.0' % appends
        if expected not in fetch(url + "/metrics"):
            raise SystemExit("the appended lines were not all counted")
        return max(0.0, used) / appends
    finally:
        stop(proc)


def incremental(folder: str, big_lines: int, appends: int) -> List[Row]:
    big = _cpu_per_append(folder, "big", big_lines, appends)
    small = _cpu_per_append(folder, "small", 1000, appends)
    size_mb = os.path.getsize(os.path.join(folder, "big.acct")) / 1e6
    return [Row("incremental: append one line to an ingested %.0f MB cpu.acct" % size_mb,
                "%.2f ms CPU per append" % (1000 * big), "same on a 1,000-line file: %.2f ms" % (1000 * small),
                "%.2fx" % (big / small if small else float("nan")), "O(appended bytes), <= 5 ms", big <= 0.005)]


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        memory = int(handle.readline().split()[1]) / 1024 / 1024
    mtail = subprocess.run(["mtail", "--version"], capture_output=True, text=True).stdout.split(" git")[0]
    version = subprocess.run(["prometheus-node-exporter", "--version"], capture_output=True, text=True)
    node = (version.stdout or version.stderr).splitlines()[0]
    return "%d cores (%s), %.0f GiB; Python %s; %s; %s" % (os.cpu_count(), model, memory,
                                                           sys.version.split()[0], mtail, node)


def ensure_peers() -> None:
    """The peers come from Debian's packages: install them when missing (as root)."""
    missing = [pkg for tool, pkg in (("mtail", "mtail"), ("prometheus-node-exporter", "prometheus-node-exporter"))
               if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit("missing %s: sudo apt-get install %s" % (", ".join(missing), " ".join(missing)))
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
