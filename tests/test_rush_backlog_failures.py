"""A backlog read in worker processes that fails, hangs or is interrupted loses no line and counts none twice."""

import errno
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest
from conftest import wait_until
from fusefs import HangingFile

from exporter.rush.backlog import BacklogReader, ReadInterrupted, Task, new_pool, tally_range
from exporter.rush.config import CpuAcctEntry, RushConfig
from exporter.rush.cpu_acct import CpuAcctReader

pytestmark = pytest.mark.inprocess

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


@pytest.mark.ecosystem
@pytest.mark.parametrize("read_error", [errno.EIO, errno.ENOENT])
@pytest.mark.parametrize("local_lines", [5, BIG_LINES], ids=["in-process", "pool"])
def test_a_backlog_that_cannot_be_read_is_read_again_later_and_the_others_are_counted(tmp_path, read_error,
                                                                                       local_lines):
    """A share that answers a read with an error (ENOENT too: a FUSE server may) while its backlog is read:
    that file is down and its backlog read again once the share answers; the other files are counted now."""
    local = write_files(tmp_path, {"a": local_lines})["a"]
    share = tmp_path / "share"
    share.mkdir()
    lines = 20000  # 1.2 MB: a backlog
    content = "".join(LINE % (1700000000 + i, "b") for i in range(lines)).encode()
    fs = HangingFile(str(share), "cpu.acct", content)
    try:
        shared = str(share / "cpu.acct")
        reader = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=local), CpuAcctEntry(path=shared)),
                                          read_processes=2))
        fs.failing = (read_error, len(content) // 2, len(content) // 2 + 1)  # the range read, not the hand-over
        snapshot = reader.sync(None)
        assert done(snapshot, "ab") == {"a": local_lines, "b": None}
        assert [file.up for file in snapshot.files if file.path == shared] == [False]
        fs.failing = None
        snapshot = reader.sync([shared])
        assert done(snapshot, "ab") == {"a": local_lines, "b": lines}
        assert all(file.up for file in snapshot.files)
    finally:
        fs.close()


def _children(pid: int) -> list:
    """Every live process whose parent is ``pid``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def test_worker_processes_end_when_the_exporter_is_killed_during_a_backlog_read(tmp_path, start_daemon,
                                                                                write_config):
    line = b"p 1700000000 tahoe.1 T anna 0001 render01 100 5 1 2 0 77\n"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cpu.acct").write_bytes(line * 600000)  # 35 MB each: read by worker processes
    daemon = start_daemon("--config", write_config("rush:\n  cpu_acct: ['%s/*/cpu.acct']\n  read_processes: 2\n"
                                                   % tmp_path), ready=False)
    forkservers = []

    def workers_running() -> bool:
        forkservers[:] = _children(daemon.proc.pid)
        return any(_children(server) for server in forkservers)

    wait_until(workers_running, 30, "worker processes reading the backlog")
    spawned = forkservers + [worker for server in forkservers for worker in _children(server)]
    daemon.proc.kill()  # as the OOM killer or kill -9 would
    daemon.proc.wait()
    wait_until(lambda: not any(os.path.exists("/proc/%d" % pid) and _state(pid) != "Z" for pid in spawned), 15,
               "the forkserver and its workers to end with the exporter")


def _state(pid: int) -> str:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
