"""An inotify queue overflow costs one fresh watch and one rescan request, never a loop.

A real inotify watcher in this process; the overflow is forced by a burst of
events from ``touch`` (C, far faster than the watcher reads) that is
larger than the kernel's queue (``fs.inotify.max_queued_events``, 16,384 by default).
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import List, Set

import pytest
from conftest import wait_until

from exporter.config import WatchConfig
from exporter.paths import PathPattern
from exporter.watcher import Watcher

pytestmark = pytest.mark.inprocess

FOLDERS = 2000


def _queue_size() -> int:
    with open("/proc/sys/fs/inotify/max_queued_events") as handle:
        return int(handle.read())


class Seen:
    """What the watcher reported, from its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: Set[str] = set()
        self.rescans: List[float] = []

    def batch(self, paths: Set[str]) -> None:
        with self.lock:
            self.paths |= paths

    def rescan(self) -> None:
        with self.lock:
            self.rescans.append(time.monotonic())


def test_an_overflow_burst_costs_one_fresh_watch_and_one_rescan(tmp_path):
    farm = tmp_path / "farm"
    names = []
    for i in range(FOLDERS):
        (farm / ("h%04d" % i)).mkdir(parents=True)
        (farm / ("h%04d" % i) / "cpu.acct").write_text("")
        names.append("h%04d/cpu.acct" % i)
    seen = Seen()
    # The test runs each supervision tick itself, so that it knows how many have passed.
    watcher = Watcher([PathPattern(str(farm / "*" / "cpu.acct"))], WatchConfig(mode="events", rescan_interval=3600),
                      seen.batch, seen.rescan, supervise_interval=3600)
    watcher.start()
    try:
        assert len(seen.rescans) == 1  # the first schedule's
        # Every file in turn, again and again: consecutive events differ, so the kernel merges none.
        passes = 3 * _queue_size() // FOLDERS + 1
        subprocess.run(["touch", "-c", *names * passes], cwd=farm, check=True)
        wait_until(lambda: watcher.overflows >= 1, what="an inotify queue overflow")

        watcher.supervise()
        assert len(seen.rescans) == 2
        watcher.supervise()
        watcher.supervise()
        assert len(seen.rescans) == 2, "one rescan per burst, however many overflows (%d)" % watcher.overflows

        # The fresh queue watches every folder, including one made after the overflow.
        (farm / "late").mkdir()
        (farm / "late" / "cpu.acct").write_text("p\n")
        wait_until(lambda: str(farm / "late" / "cpu.acct") in seen.paths, what="an event from the fresh watch")
        with seen.lock:
            seen.paths.discard(str(farm / "h0007" / "cpu.acct"))
        with open(farm / "h0007" / "cpu.acct", "a") as handle:
            handle.write("p\n")
        wait_until(lambda: str(farm / "h0007" / "cpu.acct") in seen.paths, what="an event from an old folder")
        assert watcher.restarts == 0  # an overflow is not a lost watch
    finally:
        watcher.stop()
