"""Churn: files created and deleted in a watched folder; RSS and checkpoint size before and after.

A stranger measured 60 s of churn (1,000 files a second, each created with a
frame line and deleted shortly after) beside 2 live files: the exporter's RSS
went from 33 to about 90 MB and its checkpoint to 12.3 MB, because the state
of deleted files was kept forever. This runs that churn and measures both
before it and once it has ended and the exporter has caught up (its per-file
series back to the live files, a checkpoint written after the churn).

``python -m bench.churn --against DIR`` measures another checkout (e.g. an
export of the commit before the fix) in the same run, for the "before" column;
``python -m bench`` puts the stranger's figures there.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import List, Optional, Tuple

from bench.common import REPO, Row, fetch, free_port, metric_sum, rss_mb, stop, write_text

HOSTS = ["render%02d" % i for i in range(5)]
#: A file lives this long before it is deleted (the exporter reads most of them first; those it does not are
#: lost by design, as for any reader: their frames are not counted).
LIFETIME = 0.2
#: The stranger's figures, for the "before" column when no other checkout is measured.
REPORTED = "before the fix (reported): RSS 33 -> ~90 MB, checkpoint 12.3 MB"


@dataclass
class Churned:
    rss_before: float
    rss_after: float
    rss_peak: float
    checkpoint_before: int
    checkpoint_after: int
    created: int
    counted: int
    settle_seconds: float


def _frame(host: str, when: int) -> str:
    return "p\t%d\ttahoe.1\tSHOT\tanna\t0001\t%s\t100k\t10\t1\t2\t0\t77\n" % (when, host)


def _start(tree: str, config: str, storage: str) -> Tuple[subprocess.Popen, str]:
    """The exporter of the checkout ``tree`` (its package imported from there), once ready."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "--config", config, "--storage.path", storage,
                             "--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"],
                            cwd=tree, env=dict(os.environ, PYTHONPATH=tree), stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    _wait(lambda: _ready(url, proc), "the exporter to be ready", 120)
    return proc, url


def _ready(url: str, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise SystemExit("bench.churn: the exporter exited with %s" % proc.returncode)
    try:
        return urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200
    except OSError:
        return False


def _wait(check, what: str, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit("bench.churn: timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.1)
    return time.monotonic() - started


def _writes(url: str) -> float:
    return metric_sum(fetch(url + "/metrics"), "renderfarm_exporter_checkpoint_writes_total")


def _per_file_rows(url: str) -> int:
    return sum(1 for line in fetch(url + "/metrics").split(b"\n") if line.startswith(b"renderfarm_exporter_source_up{"))


def churn(folder: str, seconds: float, rate: int, tree: str = REPO) -> Churned:
    """``rate`` files a second created (one frame each) and deleted ``LIFETIME`` later, for ``seconds``."""
    base = tempfile.mkdtemp(prefix="churn-", dir=folder)
    farm, storage = os.path.join(base, "farm"), os.path.join(base, "state")
    os.makedirs(farm)
    for name in ("live1", "live2"):
        write_text(os.path.join(farm, name + ".acct"), "".join(_frame(host, 1700000000) for host in HOSTS))
    config = write_text(os.path.join(base, "config.yml"), "rush:\n  cpu_acct: ['%s/*.acct']\n" % farm)
    checkpoint = os.path.join(storage, "rush.rush_cpu_acct.checkpoint")
    proc, url = _start(tree, config, storage)
    try:
        _wait(lambda: _writes(url) >= 1 and os.path.exists(checkpoint), "a checkpoint of the live files", 60)
        time.sleep(1.0)
        rss_before, checkpoint_before = rss_mb(proc.pid), os.path.getsize(checkpoint)
        living: collections.deque = collections.deque()
        created, peak, next_sample = 0, rss_before, 0.0
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if now - started >= seconds:
                break
            while created < rate * (now - started):
                path = os.path.join(farm, "c%07d.acct" % created)
                write_text(path, _frame(HOSTS[created % len(HOSTS)], 1700000100 + created))
                living.append((now + LIFETIME, path))
                created += 1
            while living and living[0][0] <= now:
                os.unlink(living.popleft()[1])
            if now >= next_sample:
                peak, next_sample = max(peak, rss_mb(proc.pid)), now + 0.5
            time.sleep(0.005)
        for _, path in living:
            os.unlink(path)
        ended = time.monotonic()
        _wait(lambda: _per_file_rows(url) == 2, "the per-file series back to the 2 live files", 600)
        writes = _writes(url)
        _wait(lambda: _writes(url) > writes, "a checkpoint after the churn", 600)
        settle = time.monotonic() - ended
        time.sleep(2.0)  # a render or two, and the heap trim after them
        counted = int(metric_sum(fetch(url + "/metrics"), "rush_frames_total"))
        return Churned(rss_before, rss_mb(proc.pid), max(peak, rss_mb(proc.pid)), checkpoint_before,
                       os.path.getsize(checkpoint), created, counted - 2 * len(HOSTS), settle)
    finally:
        stop(proc)


def _size(nbytes: int) -> str:
    return "%.1f KB" % (nbytes / 1e3) if nbytes < 1e6 else "%.1f MB" % (nbytes / 1e6)


def rows(mine: Churned, seconds: float, rate: int, theirs: Optional[Churned] = None) -> List[Row]:
    what = "churn: %.0f s x %d files/s created and deleted beside 2 live files" % (seconds, rate)
    counted = " (%d of %d frames counted, settled %.1f s after)" % (mine.counted, mine.created, mine.settle_seconds)
    rss_met = mine.rss_after - mine.rss_before < 20
    size_met = mine.checkpoint_after <= mine.checkpoint_before * 1.5 + 1024
    if theirs is None:
        peers = (REPORTED, REPORTED)
    else:
        peers = ("before: %.1f -> %.1f MB (peak %.1f)" % (theirs.rss_before, theirs.rss_after, theirs.rss_peak),
                 "before: %s -> %s" % (_size(theirs.checkpoint_before), _size(theirs.checkpoint_after)))
    return [
        Row(what + ": RSS before -> after" + counted,
            "%.1f -> %.1f MB (peak %.1f)" % (mine.rss_before, mine.rss_after, mine.rss_peak), peers[0], "",
            "after within 20 MB of before", rss_met),
        Row(what + ": checkpoint size before -> after",
            "%s -> %s" % (_size(mine.checkpoint_before), _size(mine.checkpoint_after)), peers[1], "",
            "after <= 1.5x before + 1 KiB", size_met),
    ]


def churn_rows(folder: str, seconds: float, rate: int) -> List[Row]:
    """The rows of ``python -m bench``: this checkout, beside the stranger's figures."""
    return rows(churn(folder, seconds, rate), seconds, rate)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000, help="files created (and deleted) a second")
    parser.add_argument("--against", metavar="DIR", help="another checkout, measured in the same run")
    args = parser.parse_args()
    from bench.__main__ import table

    with tempfile.TemporaryDirectory(prefix="renderfarm-churn-") as folder:
        theirs = churn(folder, args.seconds, args.rate, os.path.abspath(args.against)) if args.against else None
        mine = churn(folder, args.seconds, args.rate)
    print(table(rows(mine, args.seconds, args.rate, theirs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
