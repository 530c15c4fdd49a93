"""The watcher in-process: real folders in tmp_path, real watchdog observers, both watch modes."""

from __future__ import annotations

import logging
import os
import stat
import threading
from typing import List, Set

import pytest
from conftest import wait_until

from exporter import watcher as watcher_module
from exporter.config import WatchConfig
from exporter.paths import PathPattern
from exporter.watcher import Watcher, _BoundedSnapshot

pytestmark = pytest.mark.inprocess


class Reports:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.paths: Set[str] = set()
        self.rescans = 0
        self.status_changes = 0

    def batch(self, paths: Set[str]) -> None:
        with self._lock:
            self.paths |= paths

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
                          reports.batch, reports.rescan, on_status_change=reports.status_changed)
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


# -- polled folders: bounded snapshots ----------------------------------------------------------------------------


def test_a_poll_follows_no_symlinked_folder_and_only_symlinks_that_stay_inside(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "cpu.acct").write_text("x" * 10)
    (tmp_path / "outside.txt").write_text("y" * 20)
    os.symlink(root / "real" / "cpu.acct", root / "inside.acct")
    os.symlink(tmp_path / "outside.txt", root / "outside.acct")
    for name in ("loop1", "loop2"):  # followed, two links to their own folder make 2**40 paths
        os.symlink(".", root / name)
    os.symlink("/usr", root / "usr")
    deep = root / "real"
    for _ in range(1100):  # deeper than Python's recursion limit: watchdog's walk recursed
        deep = deep / "d"
        os.mkdir(deep)
    try:
        snapshot = _BoundedSnapshot(str(root), recursive=True, limit=10_000)
    finally:  # pytest's clean-up (shutil.rmtree) recurses too
        folder = deep
        while folder != root / "real":
            os.rmdir(folder)
            folder = folder.parent
    assert not snapshot.capped and snapshot.outside in (str(root / "usr"), str(root / "outside.acct"))
    assert snapshot.size(str(root / "inside.acct")) == 10, "a symlink to a file inside: the file's size"
    assert stat.S_ISLNK(snapshot.mode(str(root / "outside.acct"))), "a symlink out: its own lstat, nothing followed"
    for name in ("loop1", "loop2", "usr"):
        assert stat.S_ISLNK(snapshot.mode(str(root / name)))
    assert not [p for p in snapshot.paths if p.startswith((str(root / "loop1") + "/", str(root / "usr") + "/"))]
    assert str(deep) in snapshot.paths
    assert len(snapshot.paths) == 1 + 6 + 1 + 1100  # the folder, its 6 entries, the file, the deep folders
    capped = _BoundedSnapshot(str(root), recursive=True, limit=5)
    assert capped.capped and len(capped.paths) == 1 + 5


def test_a_polled_folder_over_the_limit_is_polled_in_part_with_one_warning(tmp_path, watching, monkeypatch, caplog):
    monkeypatch.setattr(watcher_module, "MAX_POLLED_ENTRIES", 50)
    logs = tmp_path / "logs"
    (logs / "many").mkdir(parents=True)
    (logs / "a.acct").write_text("line\n")  # in the folder itself: taken before any subfolder's entries
    for i in range(100):
        (logs / "many" / ("%03d" % i)).write_text("")
    reports = Reports()
    with caplog.at_level(logging.WARNING, logger="exporter.watcher"):
        watching([str(logs / "**" / "*.acct")], "poll", reports)
        wait_until(lambda: any("more entries than a poll takes" in r.getMessage() for r in caplog.records), 10,
                   "the first poll to warn")  # taken: later changes are seen
        for _ in range(3):  # later polls are capped as well, and warn no more
            reports.paths.clear()
            with open(logs / "a.acct", "a") as handle:
                handle.write("more\n")
            wait_until(lambda: str(logs / "a.acct") in reports.paths, 10, "the change to be polled")
    warnings = [r for r in caplog.records if "more entries than a poll takes" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].fields == {"directory": str(logs), "limit": 50}
