"""A live farm: the exporter beside mtail on the same growing files, and many idle watched folders.

Both daemons run at the same time on the same load, and each one's CPU is read
from /proc for its own process tree: the load, the machine's noise and the
page cache are then the same for both, which alternating runs cannot promise.
Freshness and scrape latency are measured after the CPU window (their scrapes
would be charged to the exporter alone), with the load still running. The
exporter runs as installed: with checkpoints (``--storage.path``), whose
writes are part of its steady-state cost.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from typing import List, Optional, Tuple

from bench.common import (
    Row,
    cpu_percent,
    cpu_ratio,
    fetch,
    latencies,
    metric_sum,
    ms,
    percentile,
    start_exporter,
    start_mtail,
    stop,
    visible_after,
    wait_for,
    write_text,
)
from bench.data import write_mtail_progs

LINE = "p %d tahoe.1 T u %d %s 100 1 0 0 %d 1\n"
#: The marker is a failed frame of the first host: the load's frames are all done.
MARKER_HOST, MARKER_EXIT = "h0000", 1


class Appenders:
    """``hosts`` cpu.acct files, each appended one line every ``1 / rate`` s, spread evenly, by one thread."""

    def __init__(self, folder: str, hosts: int, rate: float):
        self.paths = [os.path.join(folder, "h%04d.acct" % i) for i in range(hosts)]
        for path in self.paths:
            open(path, "w").close()
        self.written = 0
        self._period = 1.0 / (hosts * rate)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def append(self, index: int, exit_code: int = 0) -> None:
        """One frame line, opened, written and closed as a Rush daemon does."""
        with self._lock:
            with open(self.paths[index], "a") as handle:
                handle.write(LINE % (self.written, self.written, "h%04d" % index, exit_code))
            self.written += 1

    def _run(self) -> None:
        due, turn = time.monotonic(), 0
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.append(turn % len(self.paths))
            turn, due = turn + 1, due + self._period

    def __enter__(self) -> Appenders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _frames(url: str) -> float:
    return metric_sum(fetch(url + "/metrics"), "rush_frames_total")


def steady_state(folder: str, hosts: int, rate: float, seconds: float, rounds: int, scrapes: int) -> List[Row]:
    base = os.path.join(folder, "steady-%d" % hosts)
    os.makedirs(base)
    files = os.path.join(base, "*.acct")
    load = Appenders(base, hosts, rate)
    # The default host budget (2,000 hosts) is spent before 2,000 files' hosts are all counted: room for all.
    config = write_text(base + ".yml", "rush:\n  cpu_acct: ['%s']\n  hosts:\n    series_budget: %d\n" % (
        files, 100 * hosts))
    state = os.path.join(folder, "state-%d" % hosts)
    os.makedirs(state)
    exporter, url = start_exporter(config, "--storage.path", state)
    mtail, mtail_url = start_mtail(write_mtail_progs(folder), files)
    try:
        with load:
            wait_for(lambda: _frames(url) > 0 and _frames(mtail_url) > 0, "both see the load", 30)
            mine, theirs = cpu_percent([exporter.pid, mtail.pid], seconds)
            fresh = [_freshness(url, load, n) for n in range(1, rounds + 1)]
            scrape = latencies(url + "/metrics", True, scrapes)
        for name, at in (("exporter", url), ("mtail", mtail_url)):
            wait_for(lambda at=at: _frames(at) == load.written, "%s counts every line written" % name, 60)
    finally:
        stop(exporter)
        stop(mtail)
    what = "steady state, %d hosts x %g line/s, %.0f s" % (hosts, rate, seconds)
    return [
        Row(what + " (%d lines, both totals checked)" % load.written, "CPU %.1f%% of a core" % mine,
            "mtail %.1f%%" % theirs, cpu_ratio(mine, theirs), "<= 0.5x mtail", mine <= 0.5 * theirs),
        Row(what + ": freshness, append to one host (%d rounds)" % rounds,
            "p50 %s, p99 %s" % (ms(statistics.median(fresh)), ms(percentile(fresh, 0.99))), "", "",
            "p99 <= 250 ms", percentile(fresh, 0.99) <= 0.25),
        Row(what + ": scrape gzip under the load (%d scrapes)" % scrapes,
            "median %s, p99 %s" % (ms(statistics.median(scrape)), ms(percentile(scrape, 0.99))), "", "",
            "p99 <= 10 ms", percentile(scrape, 0.99) <= 0.010),
    ]


def _freshness(url: str, load: Appenders, count: int) -> float:
    expected = b'rush_frames_total{host="%s",status="fail"} %d.0' % (MARKER_HOST.encode(), count)
    return visible_after(url, lambda: load.append(0, MARKER_EXIT), lambda body: expected in body, 10)


def many_folders(folder: str, count: int, seconds: float) -> List[Row]:
    """``count`` folders with a cpu.acct each, idle; then one forced inotify queue overflow."""
    base = os.path.join(folder, "folders")
    names = ["h%05d/cpu.acct" % i for i in range(count)]
    for i, name in enumerate(names):
        os.makedirs(os.path.join(base, os.path.dirname(name)))
        write_text(os.path.join(base, name), LINE % (i, i, "h%05d" % i, 0))
    config = write_text(base + ".yml", "rush:\n  cpu_acct: ['%s/*/cpu.acct']\nwatch:\n  rescan_interval: 1h\n"
                        % base)
    log_path = base + ".log"
    with open(log_path, "wb") as log:
        exporter, url = start_exporter(config, log=log)
    try:
        wait_for(lambda: _frames(url) == count, "every folder's file read", 60)
        idle = cpu_percent([exporter.pid], seconds)[0]
        overflow, after_cpu = _force_overflow(base, names, url, exporter.pid, log_path)
    finally:
        stop(exporter)
    rows = [Row("many folders: %d watched, idle %.0f s" % (count, seconds), "CPU %.2f%% of a core" % idle, "", "",
                "< 1% of a core", idle < 1.0)]
    if overflow is None:
        return rows + [Row("inotify queue overflow", "not forced: the kernel queue kept up", "", "",
                           "one bounded rescan", None)]
    overflows, rescans, restarts = overflow
    return rows + [Row("inotify queue overflow forced at %d folders" % count,
                       "%d overflow(s) -> %d rescan(s), %d watch restart(s); then CPU %.2f%% of a core" % (
                           overflows, rescans, restarts, after_cpu), "", "", "exactly one rescan, no loop",
                       rescans == 1 and after_cpu < 1.0)]


def _watch_counters(url: str) -> Tuple[float, float]:
    body = fetch(url + "/metrics")
    return (metric_sum(body, "renderfarm_exporter_rescans_total"),
            metric_sum(body, "renderfarm_exporter_watch_restarts_total"))


def _overflows(url: str, log_path: str) -> int:
    """The exporter's overflow counter when it exports one, else its overflow warnings."""
    body = fetch(url + "/metrics")
    if b"renderfarm_exporter_watch_overflows_total" in body:
        return int(metric_sum(body, "renderfarm_exporter_watch_overflows_total"))
    with open(log_path, "rb") as handle:
        return handle.read().count(b"inotify queue overflowed")


def _force_overflow(base: str, names: List[str], url: str, pid: int,
                    log_path: str) -> Tuple[Optional[Tuple[int, int, int]], float]:
    """Touches every file in turn, over and over (``touch``, in C), faster than inotify's queue is read.

    Returns (overflows, rescans, watch restarts) counted after the burst, or
    None when no overflow happened; and the CPU of the following seconds, when
    an overflow loop would show.
    """
    with open("/proc/sys/fs/inotify/max_queued_events") as handle:
        queue = int(handle.read())
    rescans, restarts = _watch_counters(url)
    subprocess.run(["touch", "-c", *names * (3 * queue // len(names) + 1)], cwd=base, check=True)
    try:
        wait_for(lambda: _overflows(url, log_path) > 0, "an overflow", 10)
    except SystemExit:
        return None, 0.0
    wait_for(lambda: _watch_counters(url)[0] > rescans, "the rescan after the overflow", 60)
    after_cpu = cpu_percent([pid], 5.0)[0]  # five supervision ticks: a loop would rescan again
    now_rescans, now_restarts = _watch_counters(url)
    return (_overflows(url, log_path), int(now_rescans - rescans), int(now_restarts - restarts)), after_cpu
