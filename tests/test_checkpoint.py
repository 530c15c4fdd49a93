"""Checkpoints: a restart reads only new bytes, and its totals equal a full re-read, also after kill -9."""

import dataclasses
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest
from conftest import REPO, parse_samples, value, wait_until

from exporter import checkpoint, cli
from exporter.checkpoint import Checkpointer, CheckpointStore
from exporter.config import WatchConfig
from exporter.pipeline import Pipeline
from exporter.rush.config import Breakdown, CpuAcctEntry, RushConfig
from exporter.rush.cpu_acct import CpuAcctReader
from exporter.rush.saved import FileState
from exporter.sources import Checkpointed
from exporter.statusboard import StatusBoard
from exporter.tailer import TailerClosed

pytestmark = pytest.mark.inprocess

HOSTS = ("render01", "render02", "render03", "render04")
USERS = ("anna", "bob", "chloé")
TITLES = ("SHOT_010/beauty", "SHOT 020 fx", "SHOT_030")


def random_line(rng: random.Random, when: int, host: str) -> str:
    roll = rng.random()
    if roll < 0.8:
        wall = rng.choice((str(rng.randrange(1, 900)), "%d.%d" % (rng.randrange(900), rng.randrange(10))))
        return "p\t%d\ttahoe.%d\t%s\t%s\t%04d\t%s\t100k\t%s\t%d\t%d\t%d\t%d\n" % (
            when, rng.randrange(50), rng.choice(TITLES), rng.choice(USERS), rng.randrange(1000), host, wall,
            rng.randrange(20), rng.randrange(200), rng.choice((0, 0, 0, 1, 2, -9)), rng.randrange(1000, 9000))
    if roll < 0.9:
        return "u %d %d\n" % (when, rng.randrange(101))
    if roll < 0.95:
        return "d start %d online\n" % when
    return "p %d broken line\n" % when


def write_lines(path: str, rng: random.Random, count: int, start: int, host: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(random_line(rng, start + i, host) for i in range(count)))


def config_for(folder) -> RushConfig:
    return RushConfig(cpu_acct=(CpuAcctEntry(path=os.path.join(str(folder), "*", "cpu.acct")),),
                      users=Breakdown(enabled=True), titles=Breakdown(enabled=True), read_processes=1)


def rush_values(snapshot) -> dict:
    """Every mapping of a snapshot but the file statuses' times."""
    values = {name: dict(getattr(snapshot, name)) for name in snapshot.__dataclass_fields__
              if name != "files" and getattr(snapshot, name) is not None}
    values["files"] = [(f.path, f.bytes_read_total, f.lines_read_total, f.malformed_lines_total)
                       for f in snapshot.files]
    return values


def farm(tmp_path, rng, lines=300):
    paths = []
    for host in HOSTS:
        (tmp_path / host).mkdir()
        path = str(tmp_path / host / "cpu.acct")
        write_lines(path, rng, lines, 1700000000, host)
        paths.append(path)
    return paths


def full_read(config: RushConfig) -> dict:
    reader = CpuAcctReader(config)
    return rush_values(reader.sync(None))


def restarted(config: RushConfig, state: bytes) -> CpuAcctReader:
    reader = CpuAcctReader(config)
    assert reader.restore(state)
    return reader


def test_the_rush_reader_is_checkpointed():
    assert isinstance(CpuAcctReader(RushConfig()), Checkpointed)


def test_restart_after_appends_and_a_half_written_line_equals_a_full_re_read(tmp_path):
    rng = random.Random(7)
    paths = farm(tmp_path, rng)
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    reader.sync(None)
    with open(paths[0], "a") as handle:
        handle.write("p\t1700009999\ttahoe.1\tT\tanna\t0001\trender01\t100\t5")  # no newline yet
    reader.sync(None)
    state = reader.checkpoint()
    with open(paths[0], "a") as handle:
        handle.write("\t1\t2\t0\t77\n")
    for path, host in zip(paths, HOSTS):
        write_lines(path, rng, 50, 1700001000, host)
    assert rush_values(restarted(config, state).sync(None)) == full_read(config)


def test_a_file_rewritten_while_stopped_is_read_again_without_its_old_contribution(tmp_path):
    rng = random.Random(8)
    paths = farm(tmp_path, rng)
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    reader.sync(None)
    state = reader.checkpoint()
    with open(paths[1], "r+") as handle:  # same inode, other content (copytruncate, an editor)
        handle.truncate(0)
        handle.write("p 1700000000 tahoe.1 T anna 0001 render02 100 5 1 2 0 77\n")
    again = restarted(config, state).sync(None)
    assert rush_values(again) == full_read(config)
    assert again.frames[("render02", "done")] == 1


def test_a_file_deleted_while_stopped_keeps_what_it_contributed(tmp_path):
    rng = random.Random(9)
    paths = farm(tmp_path, rng)
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    before = reader.sync(None)
    state = reader.checkpoint()
    os.unlink(paths[2])
    after = restarted(config, state).sync(None)
    assert after.frames == before.frames and after.wall_seconds == before.wall_seconds
    assert after.user_frames == before.user_frames and after.records == before.records


def test_a_file_rotated_while_stopped_is_drained_under_its_new_name(tmp_path):
    rng = random.Random(10)
    paths = farm(tmp_path, rng)
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    reader.sync(None)
    state = reader.checkpoint()
    write_lines(paths[3], rng, 20, 1700002000, HOSTS[3])  # written before the rotation, not read yet
    os.rename(paths[3], paths[3].replace("cpu.acct", "Ocpu.acct"))
    write_lines(paths[3], rng, 30, 1700003000, HOSTS[3])
    after = restarted(config, state).sync(None)
    rotated_and_new = CpuAcctReader(RushConfig(cpu_acct=(CpuAcctEntry(path=os.path.join(str(tmp_path), "*", "*")),),
                                               users=config.users, titles=config.titles, read_processes=1))
    assert after.frames == rotated_and_new.sync(None).frames


class HeldReader(CpuAcctReader):
    """The Rush reader, whose syncs wait for ``release``: a long cold read in progress when the daemon stops."""

    def __init__(self, config: RushConfig):
        super().__init__(config)
        self.entered, self.release = threading.Event(), threading.Event()

    def sync(self, paths=None):
        self.entered.set()
        assert self.release.wait(30)
        return super().sync(paths)


def closed(reader: CpuAcctReader) -> bool:
    try:
        reader.checkpoint()
    except TailerClosed:
        return True
    return False


def test_a_stop_during_a_long_sync_saves_every_cursor_then_closes_the_reader(tmp_path):
    (tmp_path / "farm").mkdir()
    farm(tmp_path / "farm", random.Random(11))
    config = config_for(tmp_path / "farm")
    store = CheckpointStore(str(tmp_path / "state"))
    reader = HeldReader(config)
    pipeline = Pipeline({"rush": [reader]}, WatchConfig(), StatusBoard(), lambda sources: None, store)
    pipeline.start()
    assert reader.entered.wait(10)
    pipeline.stop()  # gives the ingest thread 1 s; its sync goes on
    assert not closed(reader)  # closed by the ingest thread once it has saved, not under it
    reader.release.set()
    wait_until(lambda: closed(reader), what="the ingest thread to save and close its reader")
    state = store.read("rush", reader.kind, reader.checkpoint_config())
    assert state is not None and json.loads(state)["tailer"]["cursors"]
    assert rush_values(restarted(config, state).sync(None)) == full_read(config)


def test_store_round_trip_and_every_reason_to_ignore_a_checkpoint(tmp_path, caplog):
    store = CheckpointStore(str(tmp_path / "state"))
    store.write("rush", "rush_cpu_acct", "config A", b"state")
    assert store.read("rush", "rush_cpu_acct", "config A") == b"state"
    assert [name for name in os.listdir(tmp_path / "state")] == ["rush.rush_cpu_acct.checkpoint"]
    caplog.set_level(logging.INFO, logger="exporter.checkpoint")

    def logged():
        return " ".join(record.getMessage() + " " + str(getattr(record, "fields", ""))
                        for record in caplog.records)

    assert store.read("rush", "rush_cpu_acct", "config B") is None
    assert "another configuration" in logged()
    path = store.path("rush", "rush_cpu_acct")
    with open(path, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        handle.write(b"X")
    assert store.read("rush", "rush_cpu_acct", "config A") is None
    assert "checksum mismatch" in logged()
    head, _, state = open(path, "rb").read().partition(b"\n")
    header = json.loads(head[len(checkpoint.MAGIC):])
    header["exporter"] = "0.0.0-older"
    with open(path, "wb") as handle:
        handle.write(checkpoint.MAGIC + json.dumps(header).encode() + b"\n" + state)
    assert store.read("rush", "rush_cpu_acct", "config A") is None
    assert "exporter version" in logged()
    os.unlink(path)
    assert store.read("rush", "rush_cpu_acct", "config A") is None
    assert "no checkpoint yet" in logged()


def test_a_state_encoded_in_pieces_is_the_text_json_gives_for_it_whole(tmp_path):
    from exporter.rush import saved

    (tmp_path / "farm").mkdir()
    farm(tmp_path / "farm", random.Random(5))
    reader = CpuAcctReader(config_for(tmp_path / "farm"))
    reader.sync(None)
    state = reader.checkpoint()
    assert state == json.dumps(json.loads(state), separators=(",", ":"), sort_keys=True).encode()
    limits = reader._limits()
    assert saved.load(state, limits) == saved.load(saved.dump(saved.load(state, limits)), limits)
    with pytest.raises(TypeError, match="must be a string"):  # json.dumps would quote it; never write bad JSON
        "".join(saved._pieces({"files": {1: "a"}}, 0))


def test_checkpointer_writes_only_a_changed_state_and_restores_it(tmp_path):
    rng = random.Random(11)
    (tmp_path / "farm").mkdir()
    paths = farm(tmp_path / "farm", rng)
    config = config_for(tmp_path / "farm")
    store = CheckpointStore(str(tmp_path / "state"))
    reader = CpuAcctReader(config)
    saver = Checkpointer(store, "rush", [reader], interval=0.0, cpu_share=math.inf)
    reader.sync(None)
    saver.after_sync()
    saver.after_sync()
    assert saver.writes == 1
    write_lines(paths[0], rng, 10, 1700005000, HOSTS[0])
    reader.sync(None)
    saver.after_sync()
    assert saver.writes == 2
    again = CpuAcctReader(config)
    loader = Checkpointer(store, "rush", [again])
    loader.restore()
    assert loader.restored == 1
    assert rush_values(again.sync(None)) == full_read(config)


class SlowToCheckpoint:
    """A checkpointed reader whose state costs ``cpu_seconds`` of CPU to take (a big farm's)."""

    kind = "slow"
    patterns = ()

    def __init__(self, cpu_seconds):
        self.cpu_seconds, self.taken = cpu_seconds, 0

    def checkpoint_config(self):
        return "slow"

    def checkpoint(self):
        started = time.thread_time()
        while time.thread_time() - started < self.cpu_seconds:
            pass
        self.taken += 1
        return b"state %d" % self.taken

    def restore(self, state):
        return False


def test_a_checkpoint_that_costs_much_cpu_is_written_less_often(tmp_path):
    """Writing checkpoints takes at most CPU_SHARE of a core: a 50 ms checkpoint is next due 100 s later, not 2 s."""
    reader = SlowToCheckpoint(0.05)
    saver = Checkpointer(CheckpointStore(str(tmp_path)), "slow", [reader])
    saver.save()
    saver.after_sync()
    wait = saver.due_at() - time.monotonic()
    assert 0.05 / checkpoint.CPU_SHARE - 0.5 < wait <= 0.06 / checkpoint.CPU_SHARE
    assert reader.taken == 1 and saver.writes == 1
    cheap = Checkpointer(CheckpointStore(str(tmp_path)), "slow", [SlowToCheckpoint(0.0)])
    cheap.save()
    cheap.after_sync()
    assert cheap.due_at() - time.monotonic() <= checkpoint.WRITE_INTERVAL


@pytest.mark.daemon
def test_storage_path_defaults_to_the_systemd_state_directory():
    assert checkpoint.default_path({"STATE_DIRECTORY": "/var/lib/renderfarm-exporter"}) == \
        "/var/lib/renderfarm-exporter"
    assert checkpoint.default_path({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}) == "/var/lib/a"
    assert checkpoint.default_path({}) == ""


@pytest.mark.daemon
def test_demo_keeps_no_checkpoints_unless_a_storage_path_is_given():
    parser = cli.build_parser()
    state = "/var/lib/renderfarm-exporter"
    assert cli.storage_path(parser.parse_args(["--demo"]), state) == ""
    assert cli.storage_path(parser.parse_args(["--demo", "--storage.path", "/tmp/s"]), state) == "/tmp/s"
    assert cli.storage_path(parser.parse_args(["--config", "c.yml"]), state) == state
    assert cli.storage_path(parser.parse_args(["--config", "c.yml", "--storage.path="]), state) == ""


# -- a real daemon killed at random moments ------------------------------------------------------


def scrape(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return parse_samples(response.read().decode())


def rush_samples(samples) -> dict:
    """The Rush series and the per-file read counters: what a restart must not change."""
    keep = ("rush_", "renderfarm_exporter_source_read_", "renderfarm_exporter_source_malformed_lines")
    return {key: sample for key, sample in samples.items() if key[0].startswith(keep)}


@pytest.mark.daemon
def test_kill_9_at_random_moments_then_totals_equal_a_full_re_read(tmp_path):
    seed = int(os.environ.get("CHECKPOINT_SEED", random.randrange(1 << 30)))
    print("kill -9 test seed: %d (rerun with CHECKPOINT_SEED=%d)" % (seed, seed))
    rng = random.Random(seed)
    farm_dir = tmp_path / "farm"
    farm_dir.mkdir()
    paths = farm(farm_dir, rng, lines=20000)  # about 1.3 MiB each: the first read goes to worker processes
    config = tmp_path / "config.yml"
    config.write_text("rush:\n  cpu_acct: ['%s/*/cpu.acct']\n  breakdowns:\n    users: {enabled: true}\n"
                      "    titles: {enabled: true}\nwatch:\n  debounce: 50ms\n" % farm_dir)
    state = tmp_path / "state"
    clock = [1700100000]
    for iteration in range(5):
        daemon = _Daemon(config, state, tmp_path / ("daemon-%d.log" % iteration))
        appender = threading.Thread(target=_append_for, args=(rng, paths, clock, rng.uniform(0.2, 1.5)))
        appender.start()
        deadline = rng.uniform(0.1, 2 * checkpoint.WRITE_INTERVAL + 1)
        if iteration == 4:  # the last kill comes after a checkpoint, however slow the machine: restore is tested
            saved = os.path.join(str(state), "rush.rush_cpu_acct.checkpoint")
            wait_until(lambda saved=saved: os.path.exists(saved), 120, "a checkpoint")
        with pytest.raises(subprocess.TimeoutExpired):  # a random moment: the daemon must still be running
            daemon.proc.wait(timeout=deadline)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        appender.join()
    once = subprocess.run([sys.executable, "-m", "exporter", "--config", str(config), "--once"],
                          capture_output=True, cwd=REPO, check=True)  # the files no longer change
    once_samples = parse_samples(once.stdout.decode())
    full = rush_samples(once_samples)
    daemon = _Daemon(config, state, tmp_path / "final.log")
    try:
        sizes = {path: os.path.getsize(path) for path in paths}
        wait_until(lambda: daemon.caught_up(sizes), 60, "the restarted daemon to catch up")
        served = _serving(daemon, full)
        wait_until(lambda: value(scrape(daemon.url), "renderfarm_exporter_checkpoint_writes_total") >= 1, 10,
                   "a checkpoint of the caught-up state")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(timeout=20)
    assert rush_samples(served) == full, "seed %d" % seed
    assert value(served, "renderfarm_exporter_checkpoint_restored_readers", source="rush") == 1
    once_restored = value(once_samples, "renderfarm_exporter_checkpoint_restored_readers", source="rush")
    assert once_restored == 0, "--once uses no checkpoint"
    assert "checkpoint restored" in open(tmp_path / "final.log").read()


def _append_for(rng: random.Random, paths, clock, seconds: float) -> None:
    """Appends lines (and now and then half a line, finished later) to random files for ``seconds``."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        path = rng.choice(paths)
        line = random_line(rng, clock[0], HOSTS[paths.index(path)])
        clock[0] += 1
        cut = rng.randrange(len(line)) if rng.random() < 0.2 else len(line)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line[:cut])
            handle.flush()
            time.sleep(rng.uniform(0, 0.01))
            handle.write(line[cut:])


class _Daemon:
    def __init__(self, config, state, log_path):
        from conftest import free_port

        self.url = "http://127.0.0.1:%d" % free_port()
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config", str(config), "--storage.path", str(state),
             "--web.listen-address", self.url[len("http://"):], "--log.level", "debug"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._log)

    def caught_up(self, sizes) -> bool:
        try:
            samples = scrape(self.url)
        except OSError:
            return False
        return all(value(samples, "renderfarm_exporter_source_read_bytes_total", kind="rush_cpu_acct",
                         path=path) == size for path, size in sizes.items())


def _serving(daemon: _Daemon, full: dict, timeout: float = 5.0) -> dict:
    """The daemon's exposition once its Rush series equal ``full``, or the last one at the deadline. The
    per-file counters (the exporter's section) and the Rush section are rendered apart: right after a
    read, one may show it a render pass (80 ms) before the other."""
    deadline = time.monotonic() + timeout
    while True:
        served = scrape(daemon.url)
        if rush_samples(served) == full or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def _without_present(state):
    del state["present"]


def _short_host_totals(state):
    for saved in state["files"].values():
        saved["hosts"] = {host: [1] for host in saved["hosts"]}


def _huge_exponent(state):
    saved = next(iter(state["files"].values()))
    saved["hosts"] = {host: ["1e999999999"] + totals[1:] for host, totals in saved["hosts"].items()}


def _negative_offset(state):
    state["tailer"]["cursors"][0]["offset"] = -5


def _identity_of_one_number(state):
    state["tailer"]["cursors"][-1]["identity"] = [1]


def _budget_as_a_list(state):
    state["budgets"]["host"] = [1, 2]


def _bool_as_count(state):
    next(iter(state["files"].values()))["lines"] = True


def _gone_position(state, *line_state):
    """A remembered position of a file gone mid-line (``Tailer.save``): [label, fingerprint, offset, tail,
    partial, skipping]."""
    state["tailer"]["gone"].append([state["tailer"]["cursors"][0]["label"], "p 1\n", 10, "0123456789",
                                    *line_state])


def _gone_partial_past_its_offset(state):
    _gone_position(state, 11, False)


def _gone_skipping_as_a_number(state):
    _gone_position(state, 0, 1)


def _gone_partial_and_skipping(state):
    _gone_position(state, 3, True)


def _gone_partial_without_skipping(state):
    _gone_position(state, 3)


@pytest.mark.parametrize("spoil", [_without_present, _short_host_totals, _huge_exponent, _negative_offset,
                                   _identity_of_one_number, _budget_as_a_list, _bool_as_count,
                                   _gone_partial_past_its_offset, _gone_skipping_as_a_number,
                                   _gone_partial_and_skipping, _gone_partial_without_skipping])
def test_a_checkpoint_of_another_shape_changes_nothing_and_the_files_are_read_from_the_start(tmp_path, spoil):
    paths = farm(tmp_path, random.Random(12))
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    reader.sync(None)
    state = json.loads(reader.checkpoint())
    spoil(state)
    fresh = CpuAcctReader(config)
    with pytest.raises(ValueError):
        fresh.restore(json.dumps(state).encode())
    write_lines(paths[0], random.Random(13), 1, 1700005000, HOSTS[0])
    assert rush_values(fresh.sync(None)) == full_read(config)
    assert rush_values(fresh.sync(None)) == full_read(config)  # and every later sync works


def test_budget_counters_of_a_file_rewritten_while_stopped_are_not_counted_twice(tmp_path):
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "cpu.acct"
    line = "p\t%d\ttahoe.1\tT\tanna\t0001\t" + "h" * 40 + "\t100k\t10\t1\t1\t0\t1234\n"
    path.write_text("".join(line % (1700000000 + i) for i in range(3)))
    config = RushConfig(cpu_acct=(CpuAcctEntry(path=str(tmp_path / "*" / "cpu.acct")),), read_processes=1,
                        max_label_length=20, host_series_budget=17 * 2)
    reader = CpuAcctReader(config)
    assert reader.sync(None).labels_truncated["host"] == 3
    state = reader.checkpoint()
    path.write_text("".join(line % (1800000000 + i) for i in range(3)))  # same inode, other content
    again = restarted(config, state).sync(None)
    assert rush_values(again) == full_read(config)
    assert again.labels_truncated["host"] == 3


def test_a_rotated_file_rewritten_while_stopped_is_read_again_without_its_old_contribution(tmp_path):
    rng = random.Random(14)
    paths = farm(tmp_path, rng)
    config = config_for(tmp_path)
    reader = CpuAcctReader(config)
    reader.sync(None)
    rotated = paths[3].replace("cpu.acct", "cpu.acct.1")  # not matched: only its cursor follows it
    os.rename(paths[3], rotated)
    write_lines(paths[3], rng, 30, 1700003000, HOSTS[3])
    reader.sync(None)
    state = reader.checkpoint()  # within the grace period: the rotated file's cursor is saved
    assert any(not cursor["paths"] for cursor in json.loads(state)["tailer"]["cursors"])
    with open(rotated, "r+") as handle:  # same inode, other content
        handle.truncate(0)
        handle.write("p 1700000000 tahoe.1 T anna 0001 render04 100 5 1 2 0 77\n")
    after = restarted(config, state).sync(None)
    both = RushConfig(cpu_acct=(CpuAcctEntry(path=os.path.join(str(tmp_path), "*", "cpu.acct*")),),
                      users=config.users, titles=config.titles, read_processes=1)
    assert after.frames == CpuAcctReader(both).sync(None).frames


def test_a_file_state_is_saved_whole():
    state = FileState(up=False, down_reason="gone", last_success_time=1.5, errors=1, malformed=2, bytes=3, lines=4,
                      seen_host="h", records={"process": 4}, daemon_starts=1, utilization=(5, 0.5), online=(6, 1),
                      last_record_time=7, hosts={"h": [1, 0, 0, 0, Fraction(1, 3), 2, 0]},
                      users={"u": [1, 0, 0, 0, 9]}, titles={"t": [0, 1, 0, 0, Fraction(7, 2)]},
                      truncated={"host": 1}, over_budget={"user": 2})
    saved = json.loads(json.dumps(state.to_json()))
    assert set(saved) == {f.name for f in dataclasses.fields(FileState)}
    assert FileState.from_json(saved, "test") == state


def test_anything_but_a_regular_file_at_the_checkpoint_path_is_refused_without_blocking(tmp_path, caplog):
    store = CheckpointStore(str(tmp_path / "state"))
    store.write("rush", "k", "config", b"state")
    path = store.path("rush", "k")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert store.read("rush", "k", "config") == b"state"
    os.rename(path, path + ".real")
    os.symlink(path + ".real", path)
    assert store.read("rush", "k", "config") is None  # not followed
    os.unlink(path)
    os.mkfifo(path)
    assert store.read("rush", "k", "config") is None  # not waited on: no writer will ever come
    assert caplog.text.count("cannot read the checkpoint") == 2


def test_a_clock_set_back_since_the_checkpoint_does_not_discard_it(tmp_path, monkeypatch):
    """A boot before NTP: the exporter's own times in the checkpoint lie ahead of the clock. They are taken as
    the clock's horizon, not as a forgery: the checkpoint is restored and nothing is read twice."""
    from exporter.rush import cpu_acct as cpu_acct_module
    from exporter.rush.config import CpuAcctEntry, RushConfig
    from exporter.rush.cpu_acct import CpuAcctReader

    path = tmp_path / "cpu.acct"
    path.write_text("p 1700000000 tahoe.1 T anna 1 render01 100 10 0 0 0 1\n")
    config = RushConfig(cpu_acct=(CpuAcctEntry(path=str(path)),))
    first = CpuAcctReader(config)
    first.sync(None)
    state = first.checkpoint()
    real = time.time
    monkeypatch.setattr(cpu_acct_module.time, "time", lambda: real() - 3600)
    second = CpuAcctReader(config)
    assert second.restore(state) is True
    monkeypatch.setattr(cpu_acct_module.time, "time", real)
    with open(path, "a") as handle:
        handle.write("p 1700000100 tahoe.1 T anna 2 render01 100 10 0 0 0 1\n")
    assert second.sync(None).frames[("render01", "done")] == 2
