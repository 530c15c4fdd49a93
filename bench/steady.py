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

import argparse
import heapq
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Sequence, Tuple

from bench.common import (
    Row,
    cpu_percent,
    cpu_ratio,
    fetch,
    metric_sum,
    ms,
    percentile,
    series_count,
    start_exporter,
    start_mtail,
    stop,
    visible_after,
    wait_for,
    write_text,
)
from bench.data import write_mtail_progs

LINE = "p %d tahoe.1 T u %d %s 100 1 0 0 %d 1\n"
UTILIZATION = "u %d %d\n"
#: The marker is a failed frame of the first host: the load's frames are all done.
MARKER_HOST, MARKER_EXIT = "h0000", 1
#: Prometheus's usual scrape interval; the scrape row scrapes at it.
SCRAPE_INTERVAL = 15.0


class Load:
    """What each host's cpu.acct gets: a frame every ``frame_periods[host]`` seconds, a ``u`` record every
    ``utilization_period`` (None: none), each host's first record spread evenly over its period."""

    def __init__(self, frame_periods: Sequence[float], utilization_period: Optional[float] = None):
        self.frame_periods = list(frame_periods)
        self.utilization_period = utilization_period

    @classmethod
    def uniform(cls, hosts: int, rate: float) -> Load:
        """Every host a frame line every ``1 / rate`` s: ``hosts * rate`` lines a second, evenly spread."""
        return cls([1.0 / rate] * hosts)

    @classmethod
    def farm(cls, hosts: int, seed: int = 26) -> Load:
        """A realistic farm: each host renders a frame every 60-300 s (its own period), and logs how busy it is
        in a ``u`` record a minute."""
        draw = random.Random(seed)
        return cls([draw.uniform(60.0, 300.0) for _ in range(hosts)], 60.0)


class Appenders:
    """One cpu.acct per host, appended by one thread as ``load`` says, each line opened, written and closed as a
    Rush daemon does. ``written`` counts frame lines."""

    def __init__(self, folder: str, hosts: int, rate: float = 1.0, load: Optional[Load] = None):
        self.load = load or Load.uniform(hosts, rate)
        self.paths = [os.path.join(folder, "h%04d.acct" % i) for i in range(len(self.load.frame_periods))]
        for path in self.paths:
            open(path, "w").close()
        self.written = 0
        self.lines = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def append(self, index: int, exit_code: int = 0) -> None:
        """One frame line."""
        with self._lock:
            self._write(index, LINE % (self.written, self.written, "h%04d" % index, exit_code))
            self.written += 1

    def _write(self, index: int, line: str) -> None:
        with open(self.paths[index], "a") as handle:
            handle.write(line)
        self.lines += 1

    def _schedule(self) -> List[Tuple[float, int, float, bool]]:
        """(due, host, period, frame?) of each host's first record of each kind, spread over its period."""
        start, hosts = time.monotonic(), len(self.paths)
        due = [(start + period * index / hosts, index, period, True)
               for index, period in enumerate(self.load.frame_periods)]
        every = self.load.utilization_period
        if every is not None:
            due += [(start + every * (index + 0.5) / hosts, index, every, False) for index in range(hosts)]
        heapq.heapify(due)
        return due

    def _run(self) -> None:
        due = self._schedule()
        draw = random.Random(1)
        while not self._stop.wait(max(0.0, due[0][0] - time.monotonic())):
            at, index, period, frame = heapq.heappop(due)
            if frame:
                self.append(index)
            else:
                with self._lock:
                    self._write(index, UTILIZATION % (time.time(), draw.randint(0, 100)))
            heapq.heappush(due, (at + period, index, period, frame))

    def __enter__(self) -> Appenders:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _frames(url: str) -> float:
    return metric_sum(fetch(url + "/metrics"), "rush_frames_total")


#: What each steady load must cost at most, as a multiple of mtail's CPU on the same load in the same run.
TARGETS = {"uniform-200": 2.0, "uniform-2000": 0.5, "farm": 0.4}


def steady_state(folder: str, hosts: int, rate: float, seconds: float, rounds: int, scrapes: int,
                 scrape_interval: float = SCRAPE_INTERVAL, realistic: bool = False,
                 repo: Optional[str] = None) -> List[Row]:
    """The exporter and mtail on the same load at once (uniform: ``hosts`` x ``rate`` lines a second; realistic:
    ``Load.farm(hosts)``): CPU over ``seconds``, then ``rounds`` freshness rounds and ``scrapes`` gzip
    OpenMetrics scrapes ``scrape_interval`` apart, as Prometheus scrapes (after three unmeasured ones, from which
    the exporter learns the interval), and the first scrape after the start. ``repo``: another checkout's
    exporter (before/after)."""
    name = "farm-%d" % hosts if realistic else "steady-%d" % hosts
    base = os.path.join(folder, name + ("" if repo is None else "-" + os.path.basename(repo.rstrip("/"))))
    os.makedirs(base)
    files = os.path.join(base, "*.acct")
    load = Appenders(base, hosts, rate, Load.farm(hosts) if realistic else None)
    # The default host budget (2,000 hosts) is spent before 2,000 files' hosts are all counted: room for all.
    config = write_text(base + ".yml", "rush:\n  cpu_acct: ['%s']\n  hosts:\n    series_budget: %d\n" % (
        files, 100 * hosts))
    state = base + "-state"
    os.makedirs(state)
    exporter, url = start_exporter(config, "--storage.path", state, **({} if repo is None else {"repo": repo}))
    mtail, mtail_url = start_mtail(write_mtail_progs(folder), files)
    try:
        with load:
            first = _first_scrape(url)
            wait_for(lambda: _frames(url) > 0 and _frames(mtail_url) > 0, "both see the load", 400)
            mine, theirs = cpu_percent([exporter.pid, mtail.pid], seconds)
            fresh = [_freshness(url, load, n) for n in range(1, rounds + 1)]
            scrape = _scrapes(url, scrapes, scrape_interval)
            series = series_count(fetch(url + "/metrics"))
        for who, at in (("exporter", url), ("mtail", mtail_url)):
            wait_for(lambda at=at: _frames(at) == load.written, "%s counts every line written" % who, 60)
    finally:
        stop(exporter)
        stop(mtail)
    if realistic:
        what, target = "realistic farm, %d hosts (a frame every 60-300 s, a u record a minute), %.0f s" % (
            hosts, seconds), TARGETS["farm"]
    else:
        what, target = "steady state, %d hosts x %g line/s, %.0f s" % (hosts, rate, seconds), TARGETS[
            "uniform-200" if hosts < 1000 else "uniform-2000"]
    if repo is not None:
        what += " [%s]" % repo
    return [
        Row(what + " (%d lines, both totals checked)" % load.lines, "CPU %.1f%% of a core" % mine,
            "mtail %.1f%%" % theirs, cpu_ratio(mine, theirs), "<= %gx mtail" % target, mine <= target * theirs),
        Row(what + ": freshness, append to one host (%d rounds)" % rounds,
            "p50 %s, p99 %s" % (ms(statistics.median(fresh)), ms(percentile(fresh, 0.99))), "", "",
            "p99 <= 1 s", percentile(fresh, 0.99) <= 1.0),
        Row(what + ": scrape OpenMetrics gzip every %g s under the load, %d series (%d scrapes)" % (
            scrape_interval, series, scrapes),
            "median %s, p99 %s" % (ms(statistics.median(scrape)), ms(percentile(scrape, 0.99))), "", "",
            "p99 <= 25 ms", percentile(scrape, 0.99) <= 0.025),
        Row(what + ": first scrape after the start (OpenMetrics gzip, once ready)", ms(first), "", "",
            "< 1 s", first < 1.0),
    ]


def _first_scrape(url: str) -> float:
    """The first scrape once the exporter is ready (``start_exporter`` returns once it is)."""
    started = time.perf_counter()
    fetch(url + "/metrics", gzip=True, openmetrics=True)
    return time.perf_counter() - started


def _scrapes(url: str, count: int, interval: float) -> List[float]:
    """``count`` gzip OpenMetrics scrapes ``interval`` apart, after three unmeasured ones (two gaps alike: the
    exporter then expects the next, ``renderer.Scrapes``)."""
    times: List[float] = []
    due = time.monotonic()
    for number in range(count + 3):
        time.sleep(max(0.0, due - time.monotonic()))
        due += interval
        started = time.perf_counter()
        fetch(url + "/metrics", gzip=True, openmetrics=True)
        if number >= 3:
            times.append(time.perf_counter() - started)
    return times


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
    overflows, rescans, restarts, settled = overflow
    return rows + [Row("inotify queue overflow forced at %d folders" % count,
                       "%d overflow(s) -> %d rescan(s), %d watch restart(s); settled %s after the rescan began, "
                       "then CPU %.2f%% of a core" % (overflows, rescans, restarts,
                                                      "never" if settled is None else "%.1f s" % settled,
                                                      after_cpu), "", "", "exactly one rescan, no loop",
                       rescans == 1 and settled is not None and after_cpu < 1.0)]


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
                    log_path: str) -> Tuple[Optional[Tuple[int, int, int, Optional[float]]], float]:
    """Touches every file in turn, over and over (``touch``, in C), faster than inotify's queue is read.

    Returns (overflows, rescans, watch restarts, seconds until the exporter
    settled or None) counted after the burst, or None when no overflow
    happened; and the CPU of the following seconds, when an overflow loop
    would show.
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
    # The rescan is counted as it starts, and re-reads every folder's file: measured once it has settled (a second
    # under 1% of a core, within a minute), so that what follows shows a loop, not the one rescan's own work.
    try:
        settled: Optional[float] = wait_for(lambda: cpu_percent([pid], 1.0)[0] < 1.0, "settled", 60)
    except SystemExit:  # a loop never settles: measured all the same, and reported
        settled = None
    after_cpu = cpu_percent([pid], 5.0)[0]  # five supervision ticks: a loop would rescan again
    now_rescans, now_restarts = _watch_counters(url)
    return (_overflows(url, log_path), int(now_rescans - rescans), int(now_restarts - restarts), settled), after_cpu


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.steady", description="the steady-state rows alone")
    parser.add_argument("--load", choices=("200", "2000", "farm"), action="append",
                        help="200 hosts x 1 line/s, 2,000 x 0.1, the realistic farm of 3,000 (repeat; default all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU window")
    parser.add_argument("--rounds", type=int, default=100, help="freshness rounds")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes, --interval apart")
    parser.add_argument("--interval", type=float, default=SCRAPE_INTERVAL)
    parser.add_argument("--against", metavar="TREE", help="also run the exporter of this tree (before/after)")
    args = parser.parse_args()
    specs = {"200": (200, 1.0, False), "2000": (2000, 0.1, False), "farm": (3000, 0.0, True)}
    rows: List[Row] = []
    with tempfile.TemporaryDirectory(prefix="renderfarm-steady-") as folder:
        for load in args.load or list(specs):
            hosts, rate, realistic = specs[load]
            for repo in ([None, os.path.abspath(args.against)] if args.against else [None]):
                rows += steady_state(folder, hosts, rate, args.seconds, args.rounds, args.scrapes, args.interval,
                                     realistic, repo)
                print("\n".join(str(row) for row in rows[-4:]), file=sys.stderr, flush=True)
    for row in rows:
        print("| %s | %s | %s | %s | %s | %s |" % (row.figure, row.exporter, row.peer, row.ratio, row.target,
                                                   "" if row.met is None else "yes" if row.met else "**no**"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
