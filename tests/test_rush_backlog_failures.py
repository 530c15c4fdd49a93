"""A backlog read in worker processes that fails, hangs or is interrupted loses no line and counts none twice."""

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest
from conftest import wait_until

from exporter.rush.backlog import BacklogReader, ReadInterrupted, Task, new_pool, tally_range
from exporter.rush.config import CpuAcctEntry, RushConfig
from exporter.rush.cpu_acct import CpuAcctReader

LINE = "p\t%d\ttahoe.1\tT\tanna\t0001\t%s\t100k\t10\t1\t1\t0\t1234\n"
BIG_LINES = 60000  # about 3.5 MB a file: two of them are a backlog for the pool


def write_files(folder, counts):
    paths = {}
    for host, count in counts.items():
        os.makedirs(os.path.join(str(folder), host))
        path = paths[host] = os.path.join(str(folder), host, "cpu.acct")
        with open(path, "w") as handle:
            handle.write("".join(LINE % (1700000000 + i, host) for i in range(count)))
    return paths


def config(folder, processes):
    return RushConfig(cpu_acct=(CpuAcctEntry(path=os.path.join(str(folder), "*", "cpu.acct")),),
                      read_processes=processes)


def done(snapshot, hosts):
    return {host: snapshot.frames.get((host, "done")) for host in hosts}


def _dies(_task: Task):
    os._exit(9)


def broken_pool(processes: int) -> ProcessPoolExecutor:
    """A real pool whose worker was killed: every submit raises BrokenProcessPool (an OOM kill early on)."""
    pool = new_pool(processes)
    with pytest.raises(BrokenProcessPool):
        pool.submit(_dies, None).result()
    return pool


def _hangs(task: Task):
    """A worker stuck on a hung share."""
    time.sleep(600)
    return tally_range(task)


def test_a_pool_broken_while_tasks_are_submitted_loses_nothing_and_files_are_read_on(tmp_path, caplog):
    paths = write_files(tmp_path, {"a": BIG_LINES, "b": BIG_LINES, "c": 5})
    reader = CpuAcctReader(config(tmp_path, 2), backlogs=BacklogReader(2, pools=broken_pool))
    assert done(reader.sync(None), "abc") == {"a": BIG_LINES, "b": BIG_LINES, "c": 5}
    assert "reading it in the daemon instead" in caplog.text
    for host, path in paths.items():
        with open(path, "a") as handle:
            handle.write(LINE % (1700099999, host))
    assert done(reader.sync(None), "abc") == {"a": BIG_LINES + 1, "b": BIG_LINES + 1, "c": 6}


def test_an_interrupted_backlog_read_merges_the_queued_lines_and_rewinds_its_files(tmp_path):
    write_files(tmp_path, {"a": BIG_LINES, "b": BIG_LINES, "c": 5})
    reader = CpuAcctReader(config(tmp_path, 2), backlogs=BacklogReader(2, work=_hangs))
    failure = []
    syncing = threading.Thread(target=lambda: failure.append(pytest.raises(ReadInterrupted, reader.sync, None)))
    syncing.start()
    wait_until(lambda: reader.reading is not None and multiprocessing.active_children(), what="a pool read")
    reader.interrupt()
    syncing.join(timeout=30)
    assert not syncing.is_alive() and failure
    assert not multiprocessing.active_children()  # no worker left to hold the daemon's exit
    assert done(reader.sync([]), "abc") == {"a": None, "b": None, "c": 5}  # c was queued after the backlogs
    again = CpuAcctReader(config(tmp_path, 1))
    assert again.restore(reader.checkpoint())  # the rewound files are in the checkpoint, from their start
    assert done(again.sync(None), "abc") == {"a": BIG_LINES, "b": BIG_LINES, "c": 5}


def test_workers_past_their_deadline_are_killed_and_their_ranges_read_here(tmp_path, caplog):
    write_files(tmp_path, {"a": BIG_LINES, "b": BIG_LINES})
    reader = CpuAcctReader(config(tmp_path, 2), backlogs=BacklogReader(2, work=_hangs, deadline=lambda total: 1.0))
    assert done(reader.sync(None), "ab") == {"a": BIG_LINES, "b": BIG_LINES}
    assert "longer than their deadline" in caplog.text
    assert not multiprocessing.active_children()
