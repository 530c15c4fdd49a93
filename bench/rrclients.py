"""Royal Render with thousands of client stats files, rewritten one at a time, beside a Rush folder being appended.

``python -m bench.rrclients [--smoke] [--against TREE]`` runs this row alone;
``--against`` also runs it, in the same run and on the same files, with the
exporter of another tree (e.g. ``git archive`` of an older commit unpacked
in a folder), printed as its own rows: before and after side by side.

The farm is the simulated one (``module: simulated``, the stand-in module
read through the real worker): ``clients`` client stats files, each
rewritten (atomically, as the simulator does) in turn by one thread, spread
evenly at ``writes`` files a second, while ``rush_hosts`` cpu.acct files get
a line a second each. Measured:

- **start**: from the exporter's exec until the first RR series (server
  stats, the farm overview) is served, and until every client file is read
  (``/-/ready``);
- **CPU**: the exporter's own process and the RR worker's, each from
  /proc, over the same window, beside the same Rush load read by an
  exporter without RR (run first, on the same files);
- **freshness of a changed client**: a client file rewritten with a newer
  latest item, until its new timestamp is served (after the CPU window, the
  load still running: the polling would be charged to the exporter);
- **Rush freshness**: a line appended to one host until it is counted, with
  RR and without; each poll fetches the whole exposition, so the median
  fetch of it is given beside.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import List, Optional, Tuple

from bench.common import (
    REPO,
    Row,
    cpu_seconds,
    fetch,
    latencies,
    metric_sum,
    ms,
    percentile,
    spawn_exporter,
    stop,
    wait_for,
    write_text,
)
from bench.steady import MARKER_EXIT, MARKER_HOST, Appenders
from exporter.simulation.simulator import SHAPES, RrFarmSimulator

FULL = {"clients": 5000, "writes": 50.0, "rush_hosts": 20, "seconds": 60.0, "rounds": 50}
SMOKE = {"clients": 30, "writes": 10.0, "rush_hosts": 10, "seconds": 3.0, "rounds": 3}
#: How an RR worker's command line names what it runs: the launcher script (today), or the module (older trees).
WORKER_MARKS = (b"exporter/royalrender/vendor/launch.py", b"exporter.royalrender.vendor.worker")
#: The marker client: rewritten by the freshness rounds only, never by the load.
MARKER = "rrclient001"
SERVED_RR = b"\nroyalrender_server_stats_last_save_timestamp_seconds "


class ClientWriters:
    """Rewrites the client files but the marker's in turn, ``rate`` files a second spread evenly, one thread."""

    def __init__(self, sim: RrFarmSimulator, rate: float):
        self._sim = sim
        self._clients = [c for c in sim.clients if c != MARKER]
        self._period = 1.0 / rate
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self._sim.write_client_stats(self._clients[self.written % len(self._clients)])
            self.written += 1
            due += self._period

    def __enter__(self) -> ClientWriters:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _workers(pid: int) -> List[int]:
    """The RR worker processes the exporter ``pid`` started (its children running the worker)."""
    found = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                children = [int(child) for child in handle.read().split()]
        except OSError:
            continue
        for child in children:
            try:
                with open("/proc/%d/cmdline" % child, "rb") as handle:
                    if any(arg.endswith(WORKER_MARKS) for arg in handle.read().split(b"\0")):
                        found.append(child)
            except OSError:
                pass
    return found


def _cpu(pids: List[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # a worker replaced meanwhile: its time is lost to this window, not counted twice
            pass
    return total


def _window(exporter: int, seconds: float) -> Tuple[float, float]:
    """CPU of the exporter's own process and of its RR workers over ``seconds``, in percent of a core."""
    workers = _workers(exporter)
    before, worker_before, started = cpu_seconds(exporter), _cpu(workers), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return (100.0 * (cpu_seconds(exporter) - before) / elapsed,
            100.0 * (_cpu(workers) - worker_before) / elapsed)


def _client_time(body: bytes, client: str) -> Optional[float]:
    prefix = b'royalrender_client_stats_timestamp_seconds{client="%s"} ' % client.encode()
    at = body.find(prefix)
    if at < 0:
        return None
    return float(body[at + len(prefix):body.index(b"\n", at)])


def _visible(url: str, what: str, check, timeout: float) -> float:
    started = time.monotonic()
    while not check(fetch(url + "/metrics")):
        if time.monotonic() - started > timeout:
            raise SystemExit("%s: not visible after %.0f s" % (what, timeout))
    return time.monotonic() - started


def _rush_freshness(url: str, load: Appenders, rounds: int) -> List[float]:
    """An appended failed frame of the marker host, until it is counted (each round one more)."""
    times = []
    for _ in range(rounds):
        key = b'\nrush_frames_total{host="%s",status="fail"} ' % MARKER_HOST.encode()
        body = fetch(url + "/metrics")
        at = body.find(key)
        count = 0 if at < 0 else int(float(body[at + len(key):body.index(b"\n", at + 1)]))
        expected = b"%s%d.0\n" % (key, count + 1)
        started = time.monotonic()
        load.append(0, MARKER_EXIT)
        while expected not in fetch(url + "/metrics"):
            if time.monotonic() - started > 10:
                raise SystemExit("Rush freshness: the appended line not counted after 10 s")
        times.append(time.monotonic() - started)
    return times


def _client_freshness(url: str, marker: RrFarmSimulator, offset: List[float], rounds: int) -> List[float]:
    """The marker client rewritten one item later each round, until its new latest item is served."""
    item = 86400.0 / SHAPES[marker.shape]["client_items"]
    times = []
    for _ in range(rounds):
        before = _client_time(fetch(url + "/metrics"), MARKER) or 0.0
        offset[0] += item
        started = time.monotonic()
        marker.write_client_stats(MARKER)
        while (_client_time(fetch(url + "/metrics"), MARKER) or 0.0) <= before:
            if time.monotonic() - started > 30:
                raise SystemExit("RR freshness: the rewritten client not served after 30 s")
        times.append(time.monotonic() - started)
    return times


def _p(values: List[float]) -> str:
    return "p50 %s, p99 %s" % (ms(statistics.median(values)), ms(percentile(values, 0.99)))


def rr_clients(folder: str, clients: int, writes: float, rush_hosts: int, seconds: float, rounds: int,
               trees: Tuple[Tuple[str, str], ...] = (("", REPO),)) -> List[Row]:
    """The row for each exporter tree in ``trees`` ((name, path): the name prefixes its rows)."""
    base = os.path.join(folder, "rrclients")
    root = os.path.join(base, "rr")
    sim = RrFarmSimulator(root, clients=clients, seed=11)
    sim.write_all()
    offset = [0.0]
    marker = RrFarmSimulator(root, clients=1, seed=12, clock=lambda: time.time() + offset[0])
    acct = os.path.join(base, "rush")
    os.makedirs(acct)
    load = Appenders(acct, rush_hosts, 1.0)
    rush = "rush:\n  cpu_acct: ['%s']\nwatch:\n  rescan_interval: 1h\n" % os.path.join(acct, "*.acct")
    rush_only = write_text(os.path.join(base, "rush.yml"), rush)
    both = write_text(os.path.join(base, "both.yml"), sim.config_text() + rush)
    rows: List[Row] = []
    with load:
        for name, tree in trees:
            rows += _one_tree(name, tree, rush_only, both, sim, marker, offset, load, clients, writes, rush_hosts,
                              seconds, rounds)
    return rows


def _one_tree(name: str, tree: str, rush_only: str, both: str, sim: RrFarmSimulator, marker: RrFarmSimulator,
              offset: List[float], load: Appenders, clients: int, writes: float, rush_hosts: int, seconds: float,
              rounds: int) -> List[Row]:
    proc, url = spawn_exporter(rush_only, repo=tree)
    try:
        wait_for(lambda: _ok(url) and metric_sum(fetch(url + "/metrics"), "rush_frames_total") > 0,
                 "Rush alone sees the load", 60)
        alone_cpu, _ = _window(proc.pid, seconds)
        alone_fresh = _rush_freshness(url, load, rounds)
    finally:
        stop(proc)

    started = time.monotonic()
    proc, url = spawn_exporter(both, repo=tree)
    try:
        wait_for(lambda: _ok(url) and SERVED_RR in fetch(url + "/metrics"), "a first RR series", 600)
        first = time.monotonic() - started
        wait_for(lambda: _ready(url), "every RR file read", 1800)
        ready = time.monotonic() - started
        with ClientWriters(sim, writes) as writers:
            before = writers.written
            exporter_cpu, worker_cpu = _window(proc.pid, seconds)
            written = writers.written - before
            client_fresh = _client_freshness(url, marker, offset, rounds)
            rush_fresh = _rush_freshness(url, load, rounds)
            fetches = latencies(url + "/metrics", False, max(3, rounds))
    finally:
        stop(proc)

    what = "%sRR %d client files, %g rewritten/s, beside Rush %d hosts x 1 line/s" % (name, clients, writes,
                                                                                       rush_hosts)
    return [
        Row(what + ", %.0f s (%d rewrites)" % (seconds, written),
            "exporter CPU %.1f%% of a core; RR worker %.1f%%" % (exporter_cpu, worker_cpu),
            "same Rush load, no RR: %.1f%%" % alone_cpu, "", "exporter <= 10% of a core", exporter_cpu <= 10.0),
        Row(what + ": a changed client until served (%d rounds)" % rounds, _p(client_fresh), "", "",
            "p99 <= 2 s", percentile(client_fresh, 0.99) <= 2.0),
        Row(what + ": Rush freshness, append to one host (%d rounds; a fetch of /metrics: median %s)"
            % (rounds, ms(statistics.median(fetches))), _p(rush_fresh), "no RR: " + _p(alone_fresh),
            "%.2fx" % (percentile(rush_fresh, 0.99) / percentile(alone_fresh, 0.99)), "p99 <= 1 s",
            percentile(rush_fresh, 0.99) <= 1.0),
        Row(what + ": start until the first RR series is served", "%.2f s (every client file read: %.1f s)"
            % (first, ready), "", "", "<= 2 s", first <= 2.0),
    ]


def _ok(url: str) -> bool:
    try:
        fetch(url + "/-/healthy")
        return True
    except OSError:
        return False


def _ready(url: str) -> bool:
    try:
        fetch(url + "/-/ready")
        return True
    except OSError:
        return False


def main() -> int:
    from bench.__main__ import table

    parser = argparse.ArgumentParser(prog="python -m bench.rrclients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small inputs")
    parser.add_argument("--against", metavar="TREE", help="also run the exporter of this tree (before/after)")
    parser.add_argument("--tree", metavar="TREE", help="run only the exporter of this tree")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    trees: Tuple[Tuple[str, str], ...] = (("", REPO),)
    if args.tree:
        trees = (("%s: " % os.path.basename(os.path.abspath(args.tree)), os.path.abspath(args.tree)),)
    elif args.against:
        trees = (("before (%s): " % os.path.basename(os.path.abspath(args.against)), os.path.abspath(args.against)),
                 ("after: ", REPO))
    for _, tree in trees:  # as an install leaves them (bench.common.compile_exporter)
        if not compileall.compile_dir(os.path.join(tree, "exporter"), quiet=1):
            raise SystemExit("bench: cannot compile %s" % tree)
    with tempfile.TemporaryDirectory(prefix="renderfarm-bench-") as folder:
        print(table(rr_clients(folder, trees=trees, **sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
