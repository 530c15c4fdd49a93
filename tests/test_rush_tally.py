"""The lean tally loop against ``parse_line`` (the reference), and backlogs read in worker processes."""

import math
import os
import random
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.rush import backlog
from exporter.rush.backlog import BacklogReader, Task
from exporter.rush.config import Breakdown, CpuAcctEntry, RushConfig
from exporter.rush.cpu_acct import CpuAcctReader
from exporter.rush.records import WALL, MalformedLine, Process, parse_line, status_slot
from exporter.rush.tally import RECORD_NAMES, Tally

pytestmark = pytest.mark.inprocess

HORIZON = 2e9
#: Zero-padded past what int() converts (sys.get_int_max_str_digits(), 4300): float() still does.
LONG_NUMBER = "0" * 4400 + "10"
FIELD = st.sampled_from(["p", "u", "r", "s", "m", "d", "start", "end", "online", "offline", "tahoe-7", "tahoe.12",
                         "x-", "100k", "100", "0", "-9", "2", "+5", "05", "1.5", "1e3", "nan", "inf", "1_0", "٣",
                         "²", "99999999", "100000001", "1700000000", "2100000000", "-1", "render01", "SHOT 1",
                         "a" * 300, "", LONG_NUMBER])
SEPARATOR = st.sampled_from([" ", "  ", "\t", " \t", "\x0b", "\xa0", "\u2028"])


@st.composite
def lines(draw):
    """Lines near the valid shapes: 13-field p lines and u lines with fields swapped for odd ones."""
    shape = draw(st.sampled_from(["p", "u", "any"]))
    if shape == "p":
        fields = ["p", "1700000000", "tahoe.1", "T", "anna", "0001", "render01", "100k", "10", "1", "2", "0", "77"]
    elif shape == "u":
        fields = ["u", "1700000000", "53"]
    else:
        fields = draw(st.lists(FIELD, min_size=1, max_size=14))
    for _ in range(draw(st.integers(0, 3))):
        fields[draw(st.integers(0, len(fields) - 1))] = draw(FIELD | st.text(max_size=6))
    separators = [draw(SEPARATOR) if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from([" ", "\t"]))
                  for _ in fields]
    return "".join(field + sep for field, sep in zip(fields, separators)).rstrip(" ") + draw(
        st.sampled_from(["", "\r"]))


def reference(text_lines, users=True, titles=True):
    """What ``parse_line``, line by line, says a block adds up to."""
    expected = {"malformed": 0, "records": {}, "frames": {}, "wall": {}, "user_wall": {}, "title_frames": {}}
    walls, user_walls = {}, {}
    for line in text_lines:
        try:
            record = parse_line(line)
        except MalformedLine:
            expected["malformed"] += 1
            continue
        if record is None:
            continue
        name = RECORD_NAMES[type(record)]
        expected["records"][name] = expected["records"].get(name, 0) + 1
        if isinstance(record, Process):
            key = (record.host, status_slot(record.exit_code))
            expected["frames"][key] = expected["frames"].get(key, 0) + 1
            walls.setdefault(record.host, []).append(record.wall_seconds)
            user_walls.setdefault(record.owner, []).append(record.wall_seconds)
            key = (record.title, status_slot(record.exit_code))
            expected["title_frames"][key] = expected["title_frames"].get(key, 0) + 1
    expected["wall"] = {host: math.fsum(values) for host, values in walls.items()}
    expected["user_wall"] = {user: math.fsum(values) for user, values in user_walls.items()}
    return expected


def tallied(text_lines):
    tally = Tally(True, True)
    tally.add_block("".join(line + "\n" for line in text_lines).encode(), HORIZON)
    assert tally.lines == len(text_lines)
    return {
        "malformed": tally.malformed,
        "records": tally.records,
        "frames": {(h, s): t[s] for h, t in tally.hosts.items() for s in range(4) if t[s]},
        "wall": {h: float(t[WALL]) for h, t in tally.hosts.items()},
        "user_wall": {u: float(t[4]) for u, t in (tally.users or {}).items()},
        "title_frames": {(v, s): t[s] for v, t in (tally.titles or {}).items() for s in range(4) if t[s]},
    }


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), min_size=1, max_size=8))
def test_lean_loop_agrees_with_parse_line_on_arbitrary_lines(text_lines):
    text_lines = [line for line in text_lines if "\n" not in line]
    assert tallied(text_lines) == reference(text_lines)


def test_seconds_are_summed_exactly_whatever_the_grouping():
    text = ["p 1 tahoe.1 T anna 1 h 100 0.1 0 0 0 5"] * 10 + ["p 1 tahoe.1 T anna 1 h 100 0.2 0 0 0 5"] * 7
    whole = Tally(False, False)
    whole.add_block("".join(line + "\n" for line in text).encode(), HORIZON)
    assert whole.hosts["h"][WALL] == 10 * Fraction(0.1) + 7 * Fraction(0.2)
    assert float(whole.hosts["h"][WALL]) == math.fsum([0.1] * 10 + [0.2] * 7)


def test_numbers_longer_than_int_converts_are_left_to_parse_line():
    """A time, seconds, pid or percent of thousands of digits is the reference's to judge (a wall is a float,
    a time or a pid an int there), never an exception out of the hot loop."""
    frame = ["p", "1700000000", "tahoe.1", "T", "anna", "0001", "render01", "100k", "10", "1", "2", "0", "77"]
    text = ["\t".join(frame[:index] + [LONG_NUMBER] + frame[index + 1:]) for index in (1, 8, 9, 10, 12)]
    text += ["u 1700000000 " + LONG_NUMBER, "u " + LONG_NUMBER + " 53", "\t".join(frame)]
    assert tallied(text) == reference(text)


def test_the_horizon_divides_past_from_future_as_parse_line_records_do():
    """The lean loop compares times to the horizon as an int: a fractional, infinite or NaN horizon gives
    what ``add_record`` gives for the same records, one by one."""
    when = 1700000000
    text = []
    for moment in (when - 1, when, when + 1):
        text.append("p\t%d\ttahoe.1\tT\tanna\t0001\trender01\t100\t10\t1\t2\t0\t77" % moment)
        text.append("u\t%d\t53" % moment)
    for horizon in (when - 0.5, when + 0.5, when + 0.0, math.inf, math.nan):
        lean, reference_tally = Tally(False, False), Tally(False, False)
        lean.add_block("".join(line + "\n" for line in text).encode(), horizon)
        for line in text:
            reference_tally.add_record(parse_line(line), horizon)
        assert (lean.newest, lean.future, lean.utilization, lean.ahead, lean.newest_ahead, lean.last_ahead) == (
            reference_tally.newest, reference_tally.future, reference_tally.utilization, reference_tally.ahead,
            reference_tally.newest_ahead, reference_tally.last_ahead), horizon
        assert (lean.hosts, lean.records, lean.malformed) == (
            reference_tally.hosts, reference_tally.records, reference_tally.malformed)
    beyond = Tally(False, False)
    beyond.add_block("".join(line + "\n" for line in text).encode(), when - 0.5)
    assert (beyond.ahead, beyond.newest_ahead) == (4, when + 1), "every record past the horizon, and the newest"


def write_farm(folder, files=3, lines=40000, seed=3):
    """Files big enough to be backlogs; hosts, users and titles enough to spend small budgets."""
    rng = random.Random(seed)
    paths = []
    for index in range(files):
        path = os.path.join(str(folder), "host%d" % index, "cpu.acct")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            for n in range(lines):
                if rng.random() < 0.9:
                    handle.write("p\t%d\ttahoe.%d\tSHOT_%d\tuser%d\t%04d\trender%02d\t100\t%s\t1\t2\t%d\t77\n" % (
                        1700000000 + n, rng.randrange(99), rng.randrange(60), rng.randrange(30), n % 1000,
                        rng.randrange(40), rng.choice(["12", "7.5"]), rng.choice([0, 1, 2, -9])))
                elif rng.random() < 0.5:
                    handle.write("u %d %d\n" % (1700000000 + n, rng.randrange(101)))
                else:
                    handle.write("garbage %d\n" % n)
            handle.write("p 1700999999 tahoe.1 T anna 0001 render01 100 5")  # an incomplete last line
        paths.append(path)
    return paths


def farm_config(folder, processes):
    return RushConfig(cpu_acct=(CpuAcctEntry(path=os.path.join(str(folder), "*", "cpu.acct")),),
                      users=Breakdown(True, series_budget=60), titles=Breakdown(True, series_budget=120),
                      host_series_budget=17 * 20, read_processes=processes)


def snapshot_values(snapshot):
    return {name: (dict(value) if hasattr(value, "items") else value)
            for name, value in vars(snapshot).items() if name != "files"} | {
        "files": [(f.path, f.bytes_read_total, f.lines_read_total, f.malformed_lines_total) for f in snapshot.files]}


def test_backlogs_in_worker_processes_give_what_one_process_gives(tmp_path):
    write_farm(tmp_path)
    sequential = CpuAcctReader(farm_config(tmp_path, 1)).sync(None)
    parallel_reader = CpuAcctReader(farm_config(tmp_path, 2))
    reads = []
    original = BacklogReader.read
    BacklogReader.read = lambda self, tasks: reads.append(len(tasks)) or original(self, tasks)
    try:
        parallel = parallel_reader.sync(None)
    finally:
        BacklogReader.read = original
    assert reads and reads[0] >= 3  # the backlog went to the pool, in several ranges
    assert snapshot_values(parallel) == snapshot_values(sequential)
    assert sequential.labels_over_budget["user"] > 0 and sequential.labels_over_budget["host"] > 0


_ORIGINAL_TALLY_RANGE = backlog.tally_range


def _dies_on_the_victim(task: Task):
    """In a worker, dies on the ranges of the file named by $VICTIM (the OOM killer, a crash); else tallies."""
    if task.backlog.path == os.environ["VICTIM"] and os.getpid() != int(os.environ["DAEMON_PID"]):
        os._exit(9)
    return _ORIGINAL_TALLY_RANGE(task)


def test_a_worker_that_dies_loses_nothing_and_counts_nothing_twice(tmp_path, monkeypatch, caplog):
    paths = write_farm(tmp_path, files=2)
    sequential = CpuAcctReader(farm_config(tmp_path, 1)).sync(None)
    monkeypatch.setenv("VICTIM", paths[1])
    monkeypatch.setenv("DAEMON_PID", str(os.getpid()))
    monkeypatch.setattr(backlog, "tally_range", _dies_on_the_victim)
    monkeypatch.setattr(backlog, "start_method", lambda: "fork")  # so the workers run the patched module
    parallel = CpuAcctReader(farm_config(tmp_path, 2)).sync(None)
    assert snapshot_values(parallel) == snapshot_values(sequential)
    assert "reading it in the daemon instead" in caplog.text


def test_one_appended_line_after_a_cold_start_stays_in_process(tmp_path, monkeypatch):
    paths = write_farm(tmp_path, files=1, lines=30000)
    reader = CpuAcctReader(farm_config(tmp_path, 2))
    before = reader.sync(None)

    def no_backlog(self, tasks):
        raise AssertionError("an append went to the backlog reader: %r" % (tasks,))

    monkeypatch.setattr(BacklogReader, "read", no_backlog)
    with open(paths[0], "a") as handle:
        handle.write(" 1 2 0 77\n")
    after = reader.sync([paths[0]])
    assert after.frames[("render01", "done")] == before.frames.get(("render01", "done"), 0) + 1
    assert after.files[0].lines_read_total == before.files[0].lines_read_total + 1
