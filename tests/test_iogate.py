"""The I/O gate in process: bounded waits, busy mounts, freed mounts, descriptors of abandoned opens, holes."""

import os
import threading
import time

import pytest
from conftest import wait_until

from exporter import iogate
from exporter.iogate import Gate, MountBusy
from exporter.rush.config import Breakdown, CpuAcctEntry, RushConfig
from exporter.rush.cpu_acct import CpuAcctReader
from exporter.tailer import open_regular

pytestmark = pytest.mark.inprocess


@pytest.fixture
def gate(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/vda rw\n"
                         "40 22 0:50 / /mnt/a rw - nfs4 srv:/a rw\n"
                         "41 22 0:51 / /mnt/a/b rw - nfs4 srv:/b rw\n"
                         "42 22 0:52 / /mnt/c\\040d rw - nfs4 srv:/c rw\n")
    gate = Gate(wait_seconds=0.1, max_threads=4, mountinfo=str(mountinfo))
    gate.enable()
    return gate


def test_the_mount_of_a_path_is_the_longest_mount_point_by_name(gate):
    assert gate.mount_of("/mnt/a/b/host/cpu.acct") == "/mnt/a/b"
    assert gate.mount_of("/mnt/a/bc/cpu.acct") == "/mnt/a"
    assert gate.mount_of("/mnt/a/../x/cpu.acct") == "/"
    assert gate.mount_of("/mnt/c d/cpu.acct") == "/mnt/c d"


def test_a_stuck_operation_makes_its_mount_busy_and_no_other(gate):
    release = threading.Event()
    freed = []
    gate.on_free(freed.append)
    started = time.monotonic()
    with pytest.raises(MountBusy) as busy:
        gate.call("/mnt/a", "/mnt/a/h1/cpu.acct", release.wait)
    assert time.monotonic() - started < 0.5
    assert (busy.value.mount, busy.value.path) == ("/mnt/a", "/mnt/a/h1/cpu.acct")
    started = time.monotonic()
    with pytest.raises(MountBusy):  # at once, without waiting
        gate.call("/mnt/a", "/mnt/a/h2/cpu.acct", lambda: 1)
    assert time.monotonic() - started < 0.05
    assert gate.call("/mnt/a/b", "/mnt/a/b/h3/cpu.acct", lambda: 3) == 3, "another mount is not held"
    assert set(gate.busy()) == {"/mnt/a"}
    release.set()
    wait_until(lambda: freed == ["/mnt/a"], 5, "the mount to be free")
    assert gate.busy() == {} and gate.call("/mnt/a", "/mnt/a/h2/cpu.acct", lambda: 2) == 2


def test_an_open_that_returns_after_its_caller_left_is_closed(gate, tmp_path):
    path = tmp_path / "f"
    path.write_text("x\n")
    release = threading.Event()
    opened = []

    def slow_open(p):
        release.wait()
        opened.append(open_regular(p))
        return opened[-1]

    with pytest.raises(MountBusy):
        gate.call("/mnt/a", str(path), slow_open, str(path), cleanup=lambda result: os.close(result[0]))
    release.set()
    wait_until(lambda: not gate.busy(), 5, "the open to return")
    with pytest.raises(OSError):
        os.fstat(opened[0][0])  # closed by the gate, not leaked


def test_a_close_on_a_busy_mount_waits_behind_the_stuck_operation_without_blocking(gate, tmp_path):
    path = tmp_path / "f"
    path.write_text("x\n")
    fd = os.open(str(path), os.O_RDONLY)
    gate.register(fd, "/mnt/a", str(path))
    release = threading.Event()
    with pytest.raises(MountBusy):
        gate.call("/mnt/a", str(path), release.wait)
    started = time.monotonic()
    gate.close(fd)
    assert time.monotonic() - started < 0.05
    os.fstat(fd)  # still open: queued behind the stuck read
    release.set()
    wait_until(lambda: not gate.busy(), 5, "the mount to be free")

    def closed():
        try:
            os.fstat(fd)
        except OSError:
            return True
        return False

    wait_until(closed, 5, "the queued close")


def test_a_slow_mount_that_answers_is_waited_for_longer_not_skipped_forever(gate):
    with pytest.raises(MountBusy):
        gate.call("/mnt/a", "p", time.sleep, 0.2)
    wait_until(lambda: not gate.busy(), 5, "the slow operation to return")
    assert gate.call("/mnt/a", "p", lambda: time.sleep(0.2) or "read") == "read"


def test_threads_are_bounded_and_past_the_bound_run_in_the_caller(gate):
    for index in range(6):
        assert gate.call("/m%d" % index, "p", threading.current_thread) is not None
    names = {gate.call("/m%d" % index, "p", lambda: threading.current_thread().name) for index in range(6)}
    assert sum(1 for name in names if name.startswith("io-")) == 4
    assert threading.current_thread().name in names


def test_a_walk_that_returns_late_answers_the_next_call(gate):
    iogate_gate, iogate.GATE = iogate.GATE, gate
    try:
        with pytest.raises(MountBusy):
            iogate.apart("scan x", lambda: time.sleep(0.3) or ["late"])
        assert gate.busy() == {}, "a walk is not a mount: no file is reported behind it"
        answers = []

        def answered():
            try:
                answers.append(iogate.apart("scan x", lambda: ["again"]))
            except MountBusy:
                return False
            return True

        wait_until(answered, 5, "the walk to return")
        assert answers == [["late"]], "the late walk's result, not a new walk"
    finally:
        iogate.GATE = iogate_gate


@pytest.mark.parametrize("processes", [1, 2], ids=["tail", "backlog ranges"])
def test_holes_are_skipped_and_the_lines_around_them_counted_as_documented(tmp_path, processes):
    """A line before a hole counts; a partial line cut by a hole is one malformed line; the hole is bytes."""
    path = tmp_path / "cpu.acct"
    line = "p 1700000000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n"
    before = 30000  # 1.6 MB of data: a backlog, read in ranges by worker processes when there are 2
    with open(path, "w") as handle:
        handle.write(line * before + "p 1700000001 tahoe.1 T an")  # cut by the hole
    os.truncate(path, 1 << 30)
    with open(path, "a") as handle:
        handle.write(line)
    size = os.path.getsize(path)
    reader = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=str(path)),), read_processes=processes))
    started = time.process_time()
    (status,) = reader.sync(None).files
    assert time.process_time() - started < 1.0, "1 GiB of hole read in proportion to its data"
    assert (status.lines_read_total, status.malformed_lines_total, status.bytes_read_total) == (before + 2, 1, size)
    assert reader.sync(None).frames[("render01", "done")] == before + 1


class FlakyGate(Gate):
    """A gate whose operations find their mount busy at random (before they run), in the calling thread."""

    def __init__(self, rng, chance):
        super().__init__()
        self.rng, self.chance, self.busy_count = rng, chance, 0
        self.enable()

    def call(self, mount, path, fn, *args, cleanup=None, keep=False):
        if self.rng.random() < self.chance:
            self.busy_count += 1
            raise MountBusy(mount, path, 0.0)
        return fn(*args)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("deferred", [False, True], ids=["tail", "backlogs"])
def test_a_mount_busy_at_any_operation_loses_no_line_and_counts_none_twice(tmp_path, monkeypatch, seed, deferred):
    """Appends, partial lines, rotations by rename, rsync-style replacements and files that come back, each
    followed by reads that find the mount busy at random operations (30%): once it answers, every line was
    counted exactly once."""
    import random

    from exporter.tailer import LineState, Tailer, read_range

    rng = random.Random(seed)
    lines = []
    sink = lambda label, block, key: lines.extend(block.decode().splitlines())  # noqa: E731
    waiting = []
    tailer = Tailer(sink, grace_seconds=0.0, backlog=(lambda backlog, fd: waiting.append(backlog)))
    tailer.defer_bytes = 1 if deferred else None
    gate = FlakyGate(rng, 0.3)
    monkeypatch.setattr(iogate, "GATE", gate)
    share = tmp_path / "share"
    share.mkdir()
    path = str(share / "cpu.acct")
    written, partial, rotations = [], "", 0

    def read():
        for _ in range(50):
            try:
                try:
                    tailer.follow(path)
                except FileNotFoundError:  # rotated, not re-created yet: as the Rush reader does
                    tailer.forget(path)
                tailer.drain_retired()
                for backlog in list(waiting):
                    state = LineState(backlog.partial, backlog.skipping)
                    read_range(backlog, backlog.start, backlog.end, state, sink, lambda *discarded: None)
                    tailer.caught_up(backlog.ticket, state)
                    waiting.remove(backlog)
                return
            except MountBusy:
                continue

    for step in range(40):
        action = rng.choice(["line", "line", "partial", "rotate", "replace", "comeback"])
        if action in ("replace", "comeback") and os.path.exists(path) and not partial:
            with open(path) as handle:
                content = handle.read()
            text = "line%d" % step
            if action == "comeback":  # gone with its folder (a share unmounted), then back with one more line
                # After the grace period of a file rotated before (a retired file of the same name is taken for
                # the predecessor of a file that comes back: a limit of the tailer, whatever the gate does).
                chance, gate.chance = gate.chance, 0.0
                read()
                gate.chance = chance
                share.rename(tmp_path / "unmounted")
                read()
                (tmp_path / "unmounted").rename(share)
            copy = str(tmp_path / "copy")
            with open(copy, "w") as handle:
                handle.write(content + text + "\n")
            os.rename(copy, path)  # rsync's way: a new inode, the old content and more
            written.append(text)
        elif action == "rotate" and os.path.exists(path):
            rotations += 1
            os.rename(path, str(share / ("Ocpu.acct.%d" % rotations)))
            written.append(partial) if partial else None  # a renamed file's last line counts when it closes
            partial = ""
        elif action == "partial":
            text = "half%d" % step
            with open(path, "a") as handle:
                handle.write(text)
            partial += text
        else:
            text = "line%d" % step
            with open(path, "a") as handle:
                handle.write(text + "\n")
            written.append(partial + text)
            partial = ""
        read()
    chance, gate.chance = gate.chance, 0.0
    read()
    tailer.drain_retired()
    assert gate.busy_count > 10 or not chance
    assert sorted(lines) == sorted(written)


LINE = b"p 1700000000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n"


def test_a_line_appended_while_the_end_is_looked_for_is_data_not_a_hole(tmp_path, monkeypatch):
    """SEEK_DATA finds no data at the end, a writer appends, then the size is taken: the appended bytes were once
    taken for a hole, the file's last bytes saved as zeros, and the whole file counted again at the next read."""
    from exporter.tailer import CHUNK_BYTES

    path = str(tmp_path / "cpu.acct")
    body = LINE * (CHUNK_BYTES // len(LINE))
    body += b"#" * (CHUNK_BYTES - len(body) - 1) + b"\n"  # one whole chunk: the next read asks at its end
    with open(path, "wb") as handle:
        handle.write(body)
    real_lseek, raced = os.lseek, []

    def lseek(fd, pos, how):
        try:
            return real_lseek(fd, pos, how)
        except OSError:
            if not raced:  # the writer appends right now, between the look for data and the size
                raced.append(pos)
                with open(path, "ab") as writer:
                    writer.write(LINE * 3)
            raise

    reader = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=path),), read_processes=1))
    monkeypatch.setattr(os, "lseek", lseek)
    reader.sync(None)
    monkeypatch.setattr(os, "lseek", real_lseek)
    with open(path, "ab") as writer:
        writer.write(LINE)
    snapshot = reader.sync(None)
    records = sum(1 for line in open(path, "rb") if line.startswith(b"p "))
    assert raced == [CHUNK_BYTES]
    assert snapshot.frames[("render01", "done")] == records
    (status,) = snapshot.files
    assert (status.malformed_lines_total, status.bytes_read_total) == (1, os.path.getsize(path))


def test_the_symlink_check_of_a_path_on_a_share_whose_lookups_hang_holds_back_only_its_mount(tmp_path,
                                                                                              monkeypatch):
    """A dead hard-mounted NFS server hangs path lookups, not only reads (the FUSE helper hangs only reads, so
    the lookups are made to hang here): the containment check runs on the mount's thread like every operation,
    and the files of the other mount are read on time."""
    a, b = tmp_path / "a", tmp_path / "b"
    for share in (a, b):
        (share / "h").mkdir(parents=True)
        (share / "h" / "cpu.acct").write_bytes(LINE)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/vda rw\n40 22 0:50 / %s rw - nfs4 s:/a rw\n"
                         "41 22 0:51 / %s rw - nfs4 s:/b rw\n" % (a, b))
    gate = Gate(wait_seconds=0.1, mountinfo=str(mountinfo))
    gate.enable()
    monkeypatch.setattr(iogate, "GATE", gate)
    hung, released = threading.Event(), threading.Event()
    real = {name: getattr(os, name) for name in ("lstat", "stat", "open")}

    def hanging(name):
        def call(path, *args, **kwargs):
            if hung.is_set() and os.fsdecode(path).startswith(str(a) + "/"):
                released.wait(30)  # the server is dead: the call does not return until released
            return real[name](path, *args, **kwargs)
        return call

    for name in real:
        monkeypatch.setattr(os, name, hanging(name))
    reader = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=str(a / "*" / "cpu.acct")),
                                                CpuAcctEntry(path=str(b / "*" / "cpu.acct")))))
    reader.sync(None)
    hung.set()
    with open(b / "h" / "cpu.acct", "ab") as writer:
        writer.write(LINE)
    synced = []
    worker = threading.Thread(target=lambda: synced.append(reader.sync([str(a / "h" / "cpu.acct"),
                                                                         str(b / "h" / "cpu.acct")])), daemon=True)
    worker.start()
    try:
        wait_until(lambda: bool(synced), 5, "the sync to return while the lookups of one share hang")
        assert synced[0].frames[("render01", "done")] == 3, "b's append counted, a's file waits"
    finally:
        released.set()
        worker.join(10)


class BusyUnder(Gate):
    """A gate whose operations on paths under ``busy`` (a folder; None: none) find their mount busy."""

    def __init__(self):
        super().__init__()
        self.busy = None
        self.enable()

    def call(self, mount, path, fn, *args, cleanup=None, keep=False):
        if self.busy is not None and path is not None and str(path).startswith(self.busy + os.sep):
            raise MountBusy(mount, path, 0.0)
        return fn(*args)


def _done(snapshot):
    return {host: count for (host, status), count in snapshot.frames.items() if status == "done"}


def _records(first, count, host):
    title = "a.very.long.title.of.a.job.in.rush"  # longer than max_label_length: counted by the budget
    return "".join("p %d tahoe.%d %s anna 1 %s 100 10 0 0 0 1\n" % (1700000000 + n, n, title, host)
                   for n in range(first, first + count))


@pytest.mark.parametrize("rewritten", [True, False], ids=["rewritten", "appended"])
def test_a_file_its_mount_busy_at_restore_is_checked_at_its_first_read_and_counted_once(tmp_path, monkeypatch,
                                                                                      rewritten):
    """A checkpoint restored while one file's mount is busy: that file cannot be checked then. Rewritten in
    place while the exporter was stopped (same inode, 3 records instead of 10), its checkpointed contribution
    is taken out at its first read once the mount answers, and its 3 records counted once; only appended to,
    it keeps its contribution and its new records are counted once. The other file is read meanwhile."""
    gate = BusyUnder()
    monkeypatch.setattr(iogate, "GATE", gate)
    for host in ("render01", "render02"):
        (tmp_path / host).mkdir()
        (tmp_path / host / "cpu.acct").write_text(_records(0, 10, host))
    busy = str(tmp_path / "render01")
    config = RushConfig(cpu_acct=(CpuAcctEntry(path=str(tmp_path / "*" / "cpu.acct")),), read_processes=1,
                        titles=Breakdown(enabled=True), max_label_length=20)
    first = CpuAcctReader(config)
    assert _done(first.sync(None)) == {"render01": 10, "render02": 10}
    state = first.checkpoint()
    first.close()
    if rewritten:
        with open(os.path.join(busy, "cpu.acct"), "r+") as handle:  # same inode, other content
            handle.truncate(0)
            handle.write(_records(50, 3, "render01"))
    else:
        with open(os.path.join(busy, "cpu.acct"), "a") as handle:
            handle.write(_records(50, 3, "render01"))
    (tmp_path / "render02" / "cpu.acct").open("a").write(_records(50, 1, "render02"))
    reader = CpuAcctReader(config)
    gate.busy = busy
    assert reader.restore(state)
    during = reader.sync(None)
    assert _done(during) == {"render01": 10, "render02": 11}  # as checkpointed, until read
    gate.busy = None
    after = reader.sync(None)
    assert _done(after) == {"render01": 3 if rewritten else 13, "render02": 11}
    assert after.labels_truncated["title"] == (3 if rewritten else 13) + 11  # budget counters: not twice either
    assert reader.sync(None).frames == after.frames


class CountingGate(Gate):
    """A real gate (one thread per mount) that counts the operations handed to a mount's thread."""

    def __init__(self):
        super().__init__()
        self.operations = 0
        self.enable()

    def call(self, mount, path, fn, *args, cleanup=None, keep=False):
        self.operations += 1
        return super().call(mount, path, fn, *args, cleanup=cleanup, keep=keep)


def test_a_changed_file_is_read_in_one_operation_and_files_read_ahead_in_one_for_many(tmp_path, monkeypatch):
    """Each hand-over to a mount's thread costs two context switches: a changed file (the containment checks, the
    open, the check that it still holds what was read, the read of the append, the close) is one operation, and
    twenty files read ahead (as the Rush reader does with the files of a sync) are one in all; every line once,
    also through a hard link to a file read ahead under its other name."""
    from exporter.containment import Containment
    from exporter.paths import PathPattern
    from exporter.tailer import Tailer

    gate = CountingGate()
    monkeypatch.setattr(iogate, "GATE", gate)
    lines = []
    pattern = PathPattern(str(tmp_path / "*.acct"))
    tailer = Tailer(lambda label, block, key: lines.extend(block.splitlines()), containment=Containment([pattern]))
    paths = [str(tmp_path / ("h%02d.acct" % n)) for n in range(20)]
    for path in paths:
        with open(path, "wb") as handle:
            handle.write(LINE)
        tailer.follow(path)
    os.link(paths[0], str(tmp_path / "link.acct"))
    tailer.follow(str(tmp_path / "link.acct"))
    with open(paths[1], "ab") as handle:
        handle.write(LINE)
    before = gate.operations
    tailer.follow(paths[1])
    assert gate.operations - before == 1
    for path in paths:
        with open(path, "ab") as handle:
            handle.write(LINE * 2)
    before = gate.operations
    both = paths + [str(tmp_path / "link.acct")]
    with tailer.reading_ahead(both):
        for path in both:
            tailer.follow(path)
    assert gate.operations - before == 2, "one for the twenty files; the link, its cursor moved since, reads again"
    assert len(lines) == 20 * 3 + 1


def test_an_operation_for_many_files_stuck_names_the_file_it_is_stuck_on(gate, monkeypatch):
    monkeypatch.setattr(iogate, "GATE", gate)
    release = threading.Event()

    def read_each():
        iogate.working_on("/mnt/a/h1/cpu.acct")
        iogate.working_on("/mnt/a/h2/cpu.acct")
        release.wait()

    with pytest.raises(MountBusy) as busy:
        iogate.on_mount("/mnt/a", "/mnt/a/h1/cpu.acct", read_each)
    assert busy.value.path == "/mnt/a/h2/cpu.acct"
    assert gate.busy()["/mnt/a"][0] == "/mnt/a/h2/cpu.acct"
    release.set()
    wait_until(lambda: not gate.busy(), 5, "the mount to be free")
