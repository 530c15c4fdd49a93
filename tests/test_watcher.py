"""The watcher in-process: real folders in tmp_path, real watchdog observers, both watch modes."""

from __future__ import annotations

import threading
from typing import List, Set

import pytest
from conftest import wait_until

from exporter.config import WatchConfig
from exporter.paths import PathPattern
from exporter.watcher import Watcher


class Reports:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.paths: Set[str] = set()
        self.rescans = 0
        self.status_changes = 0

    def path(self, path: str) -> None:
        with self._lock:
            self.paths.add(path)

    def rescan(self) -> None:
        with self._lock:
            self.rescans += 1

    def status_changed(self) -> None:
        with self._lock:
            self.status_changes += 1


@pytest.fixture
def watching():
    started: List[Watcher] = []

    def start(patterns: List[str], mode: str, reports: Reports) -> Watcher:
        watcher = Watcher([PathPattern(p) for p in patterns], WatchConfig(mode=mode, poll_interval=0.2),
                          reports.path, reports.rescan, on_status_change=reports.status_changed)
        started.append(watcher)
        watcher.start()
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_changed_files_are_reported_and_only_paths_under_the_roots(tmp_path, watching, mode):
    logs = tmp_path / "logs"
    logs.mkdir()
    reports = Reports()
    watcher = watching([str(logs / "*.acct")], mode, reports)
    assert watcher.alive()
    assert [(w.directory, w.mode, w.up) for w in watcher.statuses()] == [(str(logs), mode, True)]
    assert reports.rescans >= 1, "starting a watch asks for a full rescan"

    (logs / "a.acct").write_text("line\n")
    (tmp_path / "elsewhere.acct").write_text("line\n")
    wait_until(lambda: str(logs / "a.acct") in reports.paths, 10, "the new file to be reported")
    assert str(tmp_path / "elsewhere.acct") not in reports.paths


def test_a_folder_that_appears_later_is_watched_and_rescanned(tmp_path, watching):
    later = tmp_path / "later"
    reports = Reports()
    watcher = watching([str(later / "*.acct")], "events", reports)
    assert [w.up for w in watcher.statuses()] == [False]
    rescans = reports.rescans

    later.mkdir()
    wait_until(lambda: [w.up for w in watcher.statuses()] == [True], 10, "the new folder to be watched")
    assert reports.rescans > rescans
    wait_until(lambda: reports.status_changes >= 1, 10, "the status change to be reported")
    (later / "b.acct").write_text("line\n")
    wait_until(lambda: str(later / "b.acct") in reports.paths, 10, "a file in the new folder to be reported")
