"""cpu.acct line parsing against the Rush documentation's examples and variants."""

import pytest

from exporter.logs import excerpt, line_fields
from exporter.rush.records import (
    DONE,
    FAIL,
    KILLED,
    REQUEUE,
    STATUSES,
    DaemonEvent,
    MalformedLine,
    Midnight,
    Process,
    Rotation,
    StateChange,
    Utilization,
    frame_status,
    parse_line,
    record_shaped,
    status_slot,
)

pytestmark = pytest.mark.inprocess

# Verbatim from rush-files-cpu-acct.txt (102.21), including its stray tab.
SPEC_EXAMPLE = (
    "u  948242700 53\n"
    "p  948242783 tahoe-798    WERNER/C33 erco     0106  superior 100k  122  0   0\t0 27823\n"
    "p  948242783 tahoe-798    WERNER/C33 erco     0107  superior 100k  122  0   0\t0 27834\n"
    "p  948242865 tahoe-797    KILLER     erco     0504  superior 200   121  0   0\t0 27846\n"
    "u  948246300 5\n"
    "u  948249900 0\n"
)


def test_spec_example_lines_parse_to_documented_values():
    records = [parse_line(line) for line in SPEC_EXAMPLE.splitlines()]
    assert records[0] == Utilization(948242700, 0.53)
    assert records[1] == Process(
        time=948242783, jobid="tahoe-798", title="WERNER/C33", owner="erco", frame="0106", host="superior",
        priority="100k", wall_seconds=122.0, system_seconds=0.0, user_seconds=0.0, exit_code=0, pid=27823,
    )
    assert records[3].jobid == "tahoe-797" and records[3].title == "KILLER" and records[3].frame == "0504"
    assert records[3].priority == "200" and records[3].wall_seconds == 121.0 and records[3].pid == 27846
    assert records[5] == Utilization(948249900, 0.0)


def test_system_seconds_come_before_user_seconds():
    record = parse_line("p 948242783 tahoe.798 T erco 0106 superior 100 122 7 93 0 27822")
    assert (record.wall_seconds, record.system_seconds, record.user_seconds) == (122.0, 7.0, 93.0)


def test_tab_delimited_title_keeps_its_blanks():
    line = "p\t948242783\ttahoe.798\tMY  SHOT 01\terco\t0106\tsuperior\t100a\t122\t1\t2\t0\t27822"
    record = parse_line(line)
    assert record.title == "MY  SHOT 01"
    assert record.jobid == "tahoe.798" and record.priority == "100a" and record.host == "superior"


def test_space_aligned_title_with_blanks_is_rebuilt():
    record = parse_line("p  948242783 tahoe-798  MY SHOT 01  erco  0106  superior 100k  122  0  0  0 27823")
    assert record.title == "MY SHOT 01" and record.owner == "erco" and record.pid == 27823


def test_crlf_line_endings():
    assert parse_line("u 948242700 53\r") == Utilization(948242700, 0.53)
    assert parse_line("p 1 tahoe-1 T o 1 h 100 10 0 0 0 5\r").pid == 5


@pytest.mark.parametrize(
    "line, expected",
    [
        ("r start 948242700 online", Rotation(948242700, "start", True)),
        ("r end 948249900 offline", Rotation(948249900, "end", False)),
        ("s 948242700 offline erco@superior[192.168.0.5] disk full", StateChange(948242700, False,
                                                                                "erco@superior[192.168.0.5]",
                                                                                "disk full")),
        ("s\t948242700\tonline\terco@superior[192.168.0.5]\t-", StateChange(948242700, True,
                                                                          "erco@superior[192.168.0.5]", "-")),
        ("m 948326400", Midnight(948326400)),
        ("d start 948242700 online", DaemonEvent(948242700, "start", True)),
        ("d stop 948242800 offline", DaemonEvent(948242800, "stop", False)),
    ],
)
def test_other_record_types(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", ["", "   ", "\r", "\t"])
def test_blank_lines_are_not_records(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line, reason",
    [
        ("x 948242700 53", "unknown record type"),
        ("u 948242700", "needs 3"),
        ("u 948242700 153", "out of range 0..100"),
        ("u 948242700 nan", "out of range"),
        ("u 9_48242700 53", "not a plain ASCII number"),
        ("u \u0669\u0664\u0668 53", "not a plain ASCII number"),  # Arabic-Indic 948
        ("p 948242783 tahoe-798 T erco 0106 superior 100 1e308 0 0 0 27823", "wall seconds out of range"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 1e8 0 inf 0 27823", "user seconds out of range"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 1_000 0 0 0 27823", "wall seconds is not a plain"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 \u0661\u0662 0 0 0 27823", "not a plain ASCII"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 12 0 0 \uff10 27823", "exit code"),
        ("p 948242783 tahoe-798 T\u2028x erco 0106 superior 100 12 0 0 0 27823", "whitespace other than"),
        ("p 948242783 tahoe-798 T erco 0106\u00a0superior 100 12 0 0 0 27823", "whitespace other than"),
        ("u 948242700\x1c53", "whitespace other than"),
        ("p 948242783 " + "t" * 300 + "-798 T erco 0106 superior 100 12 0 0 0 27823", "job id"),
        ("u 948242700 -3", "out of range"),
        ("u later 53", "not an integer"),
        ("p 948242783 tahoe-798 T erco 0106", "needs 13"),
        ("p 948242783 tahoe T erco 0106 superior 100k 122 0 0 0 27823", "job id"),
        ("p 948242783 tahoe-798 T erco 0106 superior high 122 0 0 0 27823", "priority"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 long 0 0 0 27823", "wall seconds"),
        ("p 948242783 tahoe-798 T erco 0106 superior 100 12 0 0 zero 27823", "exit code"),
        ("r middle 948242700 online", "neither start nor end"),
        ("d start 948242700 busy", "neither online nor offline"),
        ("m", "needs 2"),
        ("\x00\x01garbage", "unknown record type"),
    ],
)
def test_malformed_lines_say_why(line, reason):
    with pytest.raises(MalformedLine, match=reason):
        parse_line(line)


@pytest.mark.parametrize("exit_code, status", [(0, "done"), (1, "fail"), (2, "requeue"), (-9, "killed"),
                                               (-15, "killed"), (-3, "killed"), (3, "fail"), (139, "fail")])
def test_frame_status(exit_code, status):
    assert frame_status(exit_code) == status


@pytest.mark.parametrize("exit_code", [0, 1, 2, 3, -1, -9, 139])
def test_status_slot_names_the_status_frame_status_gives(exit_code):
    """One rule: live totals and backfill index per-host totals by ``status_slot``; its name is ``frame_status``."""
    assert STATUSES[status_slot(exit_code)] == frame_status(exit_code)
    assert (DONE, FAIL, REQUEUE, KILLED) == tuple(STATUSES.index(s) for s in ("done", "fail", "requeue", "killed"))


@pytest.mark.parametrize(
    "line",
    [
        "db_password=hunter2",
        "hunter2 948242700 53",
        "u hunter2 53",
        "u 948242700 hunter2",
        "p 948242783 hunter2 T erco 0106 superior 100 12 0 0 0 27823",
        "p 948242783 tahoe-798 T erco 0106 superior hunter2 12 0 0 0 27823",
        "p hunter2 tahoe-798 T erco 0106 superior 100 12 0 0 0 27823",
        "p 948242783 tahoe-798 T erco 0106 superior 100 hunter2 0 0 0 27823",
        "p 948242783 tahoe-798 T erco 0106 superior 100 12 0 0 hunter2 27823",
        "r hunter2 948242700 online",
        "r start 948242700 hunter2",
        "d hunter2 948242700 online",
        "u -7734 53",
    ],
)
def test_a_malformed_line_is_never_quoted_in_its_reason(line):
    """The reason is logged and a file may be anything the exporter can read (a symlink to a password file)."""
    with pytest.raises(MalformedLine) as raised:
        parse_line(line)
    assert "hunter2" not in str(raised.value) and "7734" not in str(raised.value)


def test_the_log_shows_a_line_only_as_its_length_and_an_escaped_excerpt():
    assert line_fields("u 948242700 50\x1b[2J\r\x00 hunter2") == {"line_bytes": 28, "excerpt": "u 948242700 50\\x1b["}
    assert line_fields("db_password=hunter2", show=record_shaped("db_password=hunter2")) == {"line_bytes": 19}
    assert excerpt("p\t\u00e9\udcff\\\u2028\U0001f600") == "p\\x09\\xe9\\xff\\\\\\u2028\\U0001f600"
    assert record_shaped("p 1") and record_shaped("u\t1") and not record_shaped("pw 1") and not record_shaped("x 1")
