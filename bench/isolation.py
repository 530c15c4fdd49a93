"""Isolation between files: one file hung on a FUSE share and one 32 GiB sparse file beside healthy files.

``python -m bench.isolation`` (as root: it mounts a FUSE file system served by
this process, ``tests/fusefs.py``) starts the exporter over FILES healthy
``cpu.acct`` files, one file on a FUSE share and one sparse file (a line, a
hole of 32 GiB, a line). Once it is ready, the share's server stops answering
(a hard-mounted share whose server died) and the exporter meets the hung
read at its next rescan; meanwhile the sparse file grows by a hole of 1 GiB
and a line every 2 seconds. Then SAMPLES appends, each to a healthy file,
each timed until ``/metrics`` shows it.

Target: every append visible within 1 s (100% of samples).

``--tree PATH`` runs the exporter of another source tree (``python -m
exporter`` with PATH as its working folder): the figure before a change, from a
worktree of the old commit (``git worktree add /tmp/before <commit>``).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Dict, List, Optional

from bench.common import REPO, Row, free_port, metric_sum, percentile, tree_cpu_seconds

TARGET_SECONDS = 1.0
#: An append not visible after this long is a miss; after MISSES_IN_A_ROW of them the run stops.
CAP_SECONDS = 5.0
MISSES_IN_A_ROW = 10
NOW = int(time.time())


def frame(host: str) -> str:
    return "p %d tahoe.7 T anna 1 %s 100 100 0 0 0 1\n" % (NOW, host)


def _done(body: bytes, host: str) -> float:
    needle = ('rush_frames_total{host="%s",status="done"} ' % host).encode()
    for line in body.splitlines():
        if line.startswith(needle):
            return float(line[len(needle):])
    return 0.0


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


class _SparseGrowth:
    """Grows the sparse file by a hole of 1 GiB and a line every ``every`` seconds, on a thread."""

    def __init__(self, path: str, every: float = 2.0):
        self.path, self.every, self.lines = path, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            os.truncate(self.path, os.path.getsize(self.path) + (1 << 30))
            with open(self.path, "a") as handle:
                handle.write(frame("sparse01"))
            self.lines += 1

    def __enter__(self) -> _SparseGrowth:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(folder: str, files: int, samples: int, sparse_gib: int = 32, tree: str = REPO,
        rescan: str = "5s", out=sys.stderr, hang: bool = True) -> Dict[str, float]:
    """The figures of one run: seconds to ready, share of appends within the target, p50/p99/max, CPU."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from fusefs import HangingFile  # the test suite's FUSE server (root only)

    local = os.path.join(folder, "local")
    paths = []
    for index in range(files):
        os.makedirs(os.path.join(local, "h%03d" % index))
        paths.append(os.path.join(local, "h%03d" % index, "cpu.acct"))
        with open(paths[-1], "w") as handle:
            handle.write(frame("render%03d" % index))
    sparse = os.path.join(local, "sparse", "cpu.acct")
    os.makedirs(os.path.dirname(sparse))
    with open(sparse, "w") as handle:
        handle.write(frame("sparse01"))
    os.truncate(sparse, sparse_gib << 30)
    with open(sparse, "a") as handle:
        handle.write(frame("sparse01"))
    share = os.path.join(folder, "share")
    os.makedirs(share)
    fs = HangingFile(share, "cpu.acct", (frame("hung01") * 2).encode())
    config = os.path.join(folder, "config.yml")
    with open(config, "w") as handle:
        handle.write("rush:\n  cpu_acct: ['%s', '%s']\nwatch:\n  mode: events\n  rescan_interval: %s\n"
                     % (os.path.join(local, "*", "cpu.acct"), os.path.join(share, "cpu.acct"), rescan))
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    proc: Optional[subprocess.Popen] = None
    log = open(os.path.join(folder, "exporter.log"), "wb")
    try:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config, "--web.listen-address",
                                 "127.0.0.1:%d" % port, "--log.level", "warn", "--storage.path", ""],
                                cwd=tree, stderr=log)
        ready = _wait_ready(url, proc, 600.0)
        ready_seconds = time.monotonic() - started
        print("ready after %.1f s" % ready_seconds, file=out, flush=True)
        if hang:
            fs.hang.set()
        deadline = time.monotonic() + 30
        while hang and fs.reads_waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        print("reads hung on the share: %d" % fs.reads_waiting, file=out, flush=True)
        rng = random.Random(5)
        times: List[float] = []
        misses_in_a_row = 0
        cpu_before, cpu_started = tree_cpu_seconds(proc.pid), time.monotonic()
        with _SparseGrowth(sparse):
            counts = [1.0] * files
            for _ in range(samples):
                index = rng.randrange(files)
                host = "render%03d" % index
                with open(paths[index], "a") as handle:
                    handle.write(frame(host))
                counts[index] += 1
                appended = time.monotonic()
                while _done(_fetch(url + "/metrics"), host) < counts[index]:
                    if time.monotonic() - appended > CAP_SECONDS:
                        break
                    time.sleep(0.005)
                took = time.monotonic() - appended
                times.append(took)
                misses_in_a_row = misses_in_a_row + 1 if took > TARGET_SECONDS else 0
                if misses_in_a_row >= MISSES_IN_A_ROW:
                    print("stopped after %d misses in a row" % misses_in_a_row, file=out, flush=True)
                    break
                time.sleep(rng.uniform(0.05, 0.3))
        cpu = (tree_cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - cpu_started)
        body = _fetch(url + "/metrics")
        within = sum(1 for t in times if t <= TARGET_SECONDS)
        figures = {"ready_seconds": ready_seconds, "samples": float(len(times)), "within": float(within),
                   "share": within / max(1, len(times)), "p50": percentile(times, 0.5), "p99": percentile(times, 0.99),
                   "max": max(times), "cpu_percent": 100 * cpu,
                   "up": metric_sum(body, "renderfarm_exporter_source_up"), "ready": float(ready)}
        print("appends visible within %.0f s: %d of %d (%.0f%%); p50 %.3f s, p99 %.3f s, max %.3f s; CPU %.1f%% of "
              "a core" % (TARGET_SECONDS, within, len(times), 100 * figures["share"], figures["p50"], figures["p99"],
                          figures["max"], figures["cpu_percent"]), file=out, flush=True)
        return figures
    except BaseException:
        log.flush()
        with open(log.name, "rb") as handle:
            print("exporter log:\n" + handle.read()[-3000:].decode(errors="replace"), file=out, flush=True)
        raise
    finally:
        log.close()
        fs.release()  # first: a process with a thread in a hung FUSE read cannot be reaped
        if proc is not None:
            proc.kill()
            proc.wait()
        fs.close()


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200:
                return True
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("exporter exited with %s" % proc.returncode) from None
        time.sleep(0.05)
    raise SystemExit("exporter not ready after %.0f s" % timeout)


def isolation_row(folder: str, files: int, samples: int) -> List[Row]:
    """The row of ``python -m bench`` (root: it mounts a FUSE file system)."""
    os.makedirs(folder)
    figures = run(folder, files, samples)
    return [Row("isolation: %d files beside a hung FUSE file and a 32 GiB sparse file" % files,
                "%d of %d appends within 1 s, p99 %.2f s" % (figures["within"], figures["samples"], figures["p99"]),
                "before (de54af1): 0 of 10, each over 5 s", "", "100% within 1 s", figures["share"] == 1.0)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--sparse-gib", type=int, default=32)
    parser.add_argument("--tree", default=REPO, help="source tree whose exporter runs (default: this one)")
    parser.add_argument("--no-hang", action="store_true", help="the FUSE share keeps answering (the sparse file "
                        "alone)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("python -m bench.isolation mounts a FUSE file system: run it as root")
    with tempfile.TemporaryDirectory(prefix="renderfarm-isolation-") as folder:
        figures = run(folder, args.files, args.samples, args.sparse_gib, os.path.abspath(args.tree),
                      out=sys.stdout, hang=not args.no_hang)
    return 0 if figures["share"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
