"""The pipeline and the status board in-process: real files in tmp_path, real watcher and ingest threads.

Beside the subprocess tests of the whole daemon, these point at the part
that broke: reading, reconfiguring, or counting.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Dict, Iterable, List, Set

import pytest
from conftest import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from linereader import KIND, LineReader

from exporter.config import WatchConfig
from exporter.ingest import DownFiles
from exporter.pipeline import Pipeline
from exporter.sources import FileStatus
from exporter.statusboard import StatusBoard

pytestmark = pytest.mark.inprocess


class Changes:
    """What the pipeline reported as changed, from its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sources: Set[str] = set()
        self.count = 0

    def record(self, sources: Iterable[str]) -> None:
        with self._lock:
            self.sources.update(sources)
            self.count += 1


def lines(pipeline: Pipeline, source: str) -> Dict[str, float]:
    return {sample.labels["file"]: sample.value for family in pipeline.families(source) for sample in family.samples}


def ingest_threads(source: str) -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ingest-" + source and thread.is_alive()]


@pytest.fixture
def running():
    """Starts pipelines for a test and stops them after it, whatever the test's outcome."""
    started: List[Pipeline] = []

    def start(pipeline: Pipeline) -> Pipeline:
        started.append(pipeline)
        pipeline.start()
        return pipeline

    yield start
    for pipeline in started:
        pipeline.stop()


def test_an_appended_line_is_read_and_its_source_reported_changed(tmp_path, running):
    log = tmp_path / "a.log"
    log.write_text("one\n")
    changes = Changes()
    pipeline = running(Pipeline({"appended": [LineReader(str(tmp_path / "*.log"))]}, WatchConfig(), StatusBoard(),
                                changes.record))
    wait_until(lambda: pipeline.ingested() and lines(pipeline, "appended") == {"a.log": 1}, 10, "the first read")
    assert pipeline.alive()
    with open(log, "a") as handle:
        handle.write("two\n")
    wait_until(lambda: lines(pipeline, "appended") == {"a.log": 2}, 10, "the appended line")
    assert changes.sources == {"appended"}
    (tmp_path / "b.log").write_text("x\ny\nz\n")
    wait_until(lambda: lines(pipeline, "appended") == {"a.log": 2, "b.log": 3}, 10, "a new file")
    readings = pipeline.readings()
    assert sorted((f.path, f.lines_read_total) for f in readings.files) == [(str(log), 2),
                                                                             (str(tmp_path / "b.log"), 3)]
    assert [(kind, pattern.pattern) for kind, pattern in readings.patterns] == [(KIND, str(tmp_path / "*.log"))]


def test_ingest_once_reads_everything_in_the_calling_thread_without_watching(tmp_path):
    """And starts no thread at all (not even the watcher's inotify reader), so that a one-shot read may fork its
    worker processes (``exporter.rush.backlog.start_method``)."""
    (tmp_path / "a.log").write_text("one\ntwo\n")
    threads_before = set(threading.enumerate())
    pipeline = Pipeline({"once": [LineReader(str(tmp_path / "*.log"))], "empty": []}, WatchConfig(), StatusBoard(),
                        Changes().record)
    try:
        assert pipeline.ingest_once() == ["once"]
        assert lines(pipeline, "once") == {"a.log": 2}
        assert set(threading.enumerate()) <= threads_before  # threads of earlier tests may end meanwhile
    finally:
        pipeline.close_readers()


def test_reconfigure_keeps_the_ingest_whose_readers_are_the_same_objects(tmp_path, running):
    log = tmp_path / "a.log"
    log.write_text("one\n")
    reader = LineReader(str(tmp_path / "*.log"))
    board = StatusBoard()
    pipeline = running(Pipeline({"kept": [reader]}, WatchConfig(), board, Changes().record))
    wait_until(lambda: lines(pipeline, "kept") == {"a.log": 1}, 10, "the first read")
    rescans = board.status(pipeline.readings()).rescans

    pipeline.reconfigure({"kept": [reader]}, WatchConfig(debounce=0.05, debounce_max_wait=0.2))

    assert pipeline.readers() == {"kept": (reader,)}
    assert len(ingest_threads("kept")) == 1, "a second thread would read the same reader and count lines twice"
    assert not reader.closed.is_set()
    # The kept ingest goes on with its counters, rescans at once for the new settings, and still reads.
    wait_until(lambda: board.status(pipeline.readings()).rescans > rescans, 10, "the rescan the new settings ask")
    with open(log, "a") as handle:
        handle.write("two\n")
    wait_until(lambda: lines(pipeline, "kept") == {"a.log": 2}, 10, "the appended line")
    assert pipeline.alive()


def test_reconfigure_retires_replaced_readers_and_no_counter_goes_down(tmp_path, running):
    (tmp_path / "good.log").write_text("one\n")
    bad = tmp_path / "bad.log"
    bad.write_text("fail\n")
    pattern = str(tmp_path / "*.log")
    old = LineReader(pattern)
    board = StatusBoard()
    pipeline = running(Pipeline({"swapped": [old]}, WatchConfig(), board, Changes().record))

    def counters():
        status = board.status(pipeline.readings())
        return status.rescans, status.reader_failures.get(KIND, 0), status.watch_restarts

    wait_until(lambda: counters()[:2] >= (1, 1), 10, "the first read and its failure")
    seen = [counters()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(counters())

    sampler = threading.Thread(target=sample, name="sampler")
    sampler.start()
    try:
        new = LineReader(pattern)
        pipeline.reconfigure({"swapped": [new]}, WatchConfig())
        assert pipeline.readers() == {"swapped": (new,)}
        wait_until(old.closed.is_set, 10, "the replaced reader to be closed")
        wait_until(lambda: counters()[:2] >= (seen[0][0] + 1, seen[0][1] + 1), 10,
                   "the new reader's first read and failure, on top of the old one's")
    finally:
        done.set()
        sampler.join()
    assert len(seen) > 2
    for name, column in zip(("rescans", "reader failures", "watch restarts"), zip(*seen)):
        assert list(column) == sorted(column), "%s went down during a reload: %s" % (name, column)
    assert len(ingest_threads("swapped")) == 1
    bad.unlink()
    wait_until(lambda: lines(pipeline, "swapped") == {"good.log": 1}, 10, "the new reader's snapshot")


_FILE_SETS = st.lists(st.lists(st.tuples(st.sampled_from(["/f/a", "/f/b", "/f/c", "/g/d"]), st.booleans()),
                               unique_by=lambda f: f[0], max_size=4), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(syncs=_FILE_SETS, keep=st.lists(st.booleans(), min_size=8, max_size=8))
def test_down_files_kept_from_the_changed_statuses_equal_a_walk_of_every_file(syncs, keep):
    """The ingest's down files after each sync (files come, go, go down and come up; an unchanged file keeps its
    status object, an unchanged reader its tuple, as readers hand them out) are those a walk of every file finds."""
    down, reader, previous = DownFiles(), object(), ()
    for files, keep_objects in zip(syncs, keep):
        now = tuple(FileStatus(kind=KIND, path=path, up=up, last_success_time=None, errors_total=int(not up),
                               malformed_lines_total=0, bytes_read_total=0, lines_read_total=0)
                    for path, up in sorted(files))
        if keep_objects:
            kept = {f.path: f for f in previous}
            now = tuple(kept[f.path] if kept.get(f.path) == f else f for f in now)
            if now == previous:
                now = previous
        previous = now
        snapshot = SimpleNamespace(files=now)
        assert down.paths([(reader, snapshot)]) == {f.path for f in now if not f.up}


def test_a_reader_failing_at_every_sync_logs_once_with_its_traceback_then_once_when_it_syncs_again(
        tmp_path, running, caplog):
    bad = tmp_path / "bad.log"
    bad.write_text("fail\n")
    board = StatusBoard()
    pipeline = running(Pipeline({"failing": [LineReader(str(tmp_path / "*.log"))]}, WatchConfig(), board,
                                Changes().record))
    caplog.set_level("INFO", logger="exporter.ingest")

    def failures() -> int:
        return board.status(pipeline.readings()).reader_failures.get(KIND, 0)

    for number in range(2, 12):  # a failure per change, each a sync that raises
        with open(bad, "a") as handle:
            handle.write("line %d\n" % number)
        wait_until(lambda number=number: failures() >= number, 10, "the failing sync %d" % number)
    logged = [r for r in caplog.records if r.getMessage() == "reader failed; keeping its last good values"]
    assert len(logged) == 1, "one line a minute, not one per sync"
    assert logged[0].exc_info is not None and "a reader bug, on purpose" in str(logged[0].exc_info[1])
    bad.write_text("fixed\n")
    wait_until(lambda: lines(pipeline, "failing") == {"bad.log": 1}, 10, "a sync that works")
    again = [r for r in caplog.records if r.getMessage() == "reader syncs again"]
    assert len(again) == 1 and again[0].fields["suppressed_since_last"] >= 9
