"""Batches of changes: the window (``batch_seconds``), the ingest's inbox, and a real watcher's batches."""

from __future__ import annotations

import os
import threading
import time
from typing import List, Set

import pytest
from conftest import wait_until

from exporter.config import WatchConfig
from exporter.debounce import Inbox, batch_seconds
from exporter.paths import PathPattern
from exporter.watcher import Watcher

pytestmark = pytest.mark.inprocess


def test_the_batch_window_is_debounce_bounded_by_max_wait():
    assert batch_seconds(WatchConfig()) == 0.1
    assert batch_seconds(WatchConfig(debounce=0.02, debounce_max_wait=0.1)) == 0.02
    assert batch_seconds(WatchConfig(debounce=0.5, debounce_max_wait=0.2)) == 0.2


def test_the_inbox_hands_over_everything_at_once_and_a_rescan_takes_the_paths_with_it():
    inbox = Inbox()
    inbox.add({"/a", "/b"})
    inbox.add({"/b", "/c"})
    assert inbox.take(0) == ({"/a", "/b", "/c"}, False)
    assert inbox.take(0) == (set(), False)
    inbox.add({"/d"})
    inbox.request_rescan()
    assert inbox.take(0) == ({"/d"}, True)
    assert inbox.take(0) == (set(), False)


def test_a_waiting_take_returns_when_paths_arrive_and_at_once_after_close():
    inbox = Inbox()
    taken: List[object] = []
    waiter = threading.Thread(target=lambda: taken.append(inbox.take(timeout=30)))
    waiter.start()
    inbox.add({"/a"})
    waiter.join(timeout=5)
    assert taken == [({"/a"}, False)]
    inbox.close()
    started = time.monotonic()
    assert inbox.take(timeout=30) == (set(), False) and time.monotonic() - started < 1


class Batches:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: List[Set[str]] = []

    def add(self, paths: Set[str]) -> None:
        with self.lock:
            self.batches.append(set(paths))


def test_the_watcher_hands_over_a_burst_of_changes_to_many_files_as_few_batches(tmp_path):
    """200 files each appended five times, open-append-close (as Rush writes), within about one window: every
    file is handed over, in a few batches, never one per event."""
    files = [tmp_path / ("h%03d.acct" % i) for i in range(200)]
    for path in files:
        path.write_text("")
    seen = Batches()
    watcher = Watcher([PathPattern(str(tmp_path / "*.acct"))], WatchConfig(mode="events", debounce=0.2,
                                                                           debounce_max_wait=0.2),
                      seen.add, lambda: None, supervise_interval=3600)
    watcher.start()
    try:
        for _ in range(5):
            for path in files:
                with open(path, "a") as handle:
                    handle.write("p\n")
        wanted = {str(path) for path in files}
        wait_until(lambda: set().union(*seen.batches) >= wanted if seen.batches else False, 10, "every file")
        with seen.lock:
            assert len(seen.batches) <= 5, "1,000 events, %d batches" % len(seen.batches)
    finally:
        watcher.stop()


def test_a_change_is_handed_over_one_window_after_it_not_sooner(tmp_path):
    path = tmp_path / "a.acct"
    path.write_text("")
    seen = Batches()
    handed: List[float] = []

    def batch(paths: Set[str]) -> None:
        handed.append(time.monotonic())
        seen.add(paths)

    config = WatchConfig(mode="events", debounce=0.3, debounce_max_wait=1.0)
    watcher = Watcher([PathPattern(str(tmp_path / "*.acct"))], config,
                      batch, lambda: None, supervise_interval=3600)
    watcher.start()
    try:
        written = time.monotonic()
        with open(path, "a") as handle:
            handle.write("p\n")
        os.utime(path)
        wait_until(lambda: bool(handed), 10, "the batch")
        assert handed[0] - written >= 0.25 and seen.batches[0] == {str(path)}
    finally:
        watcher.stop()
