"""Complete ``cpu.acct`` lines to the totals they contribute: the hot loop of reading.

A ``Tally`` is what one run of lines of one file adds: frames and seconds by
the host, owner and title *as written* (label budgets are applied when the
reader merges tallies in file order, so a value is admitted exactly as when
the lines are read one by one), records by type, the latest gauges, and
the malformed lines. The reader tallies appended lines in its own process,
and a cold start's backlog in worker processes (``exporter.rush.backlog``);
so this module imports nothing heavy, and a tally pickles small.

``records.parse_line`` stays the reference: the common exact shapes (a
13-field ``p`` line of plain fields, a ``u`` line) are checked inline by the
same rules, without a record object per line; every other line goes through
``parse_line`` itself. Tests compare both on arbitrary lines.

Seconds are summed exactly (int, or Fraction once a value has a fraction),
so totals do not depend on how lines are grouped into tallies: a split read,
a restart from a checkpoint and a full re-read give the same float.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

from exporter.logs import line_fields
from exporter.rush.records import (
    MAX_FRAME_SECONDS,
    OTHER_WHITESPACE,
    SYSTEM,
    USER,
    WALL,
    DaemonEvent,
    MalformedLine,
    Midnight,
    Process,
    Record,
    Rotation,
    StateChange,
    Utilization,
    new_totals,
    parse_line,
    plausible_jobid,
    plausible_priority,
    record_shaped,
    status_slot,
)

#: Per-type record counts are kept by these names (the ``record`` label).
RECORD_NAMES = {
    Process: "process",
    Utilization: "utilization",
    Rotation: "rotation",
    StateChange: "state_change",
    Midnight: "midnight",
    DaemonEvent: "daemon",
}
#: Breakdown totals (per owner or title): frames per status slot, then wall seconds.
BREAKDOWN_WALL = WALL
Exact = Union[int, Fraction]
#: (time, value) of the latest gauge record.
Timed = Tuple[int, float]

# Exit codes as Rush writes them (no sign, no leading zero), looked up instead of parsed and mapped per frame;
# derived from the one rule, ``status_slot``. Any other spelling goes through ``parse_line``.
_SLOT_OF_CODE = {str(code): status_slot(code) for code in range(-256, 256)}
_MAX_SECONDS = int(MAX_FRAME_SECONDS)
#: Most digits a line's numbers may have in all for the hot loop, far below what ``int()`` converts (at least
#: 640 digits, ``sys.get_int_max_str_digits``): longer ones (zero-padded?) are ``parse_line``'s to judge.
_LEAN_DIGITS = 64
#: The ASCII characters of ``records.OTHER_WHITESPACE``, looked for in a block with ``in``.
_ASCII_OTHER_WHITESPACE = tuple(bytes([code]) for code in range(128) if OTHER_WHITESPACE.match(chr(code)))
#: Job ids and priorities that passed their check: they repeat on every frame (bounded, like records' own).
_PASSED_LIMIT = 100_000
_good_ids: Set[str] = set()
_good_priorities: Set[str] = set()


#: The reason of ``Tally.problem`` for a line longer than the tailer's ``MAX_LINE_BYTES``.
OVER_LONG = "over-long line"


def exact(value: float) -> Exact:
    """A parsed number as an exact summand: an int when whole (the usual), else its exact Fraction."""
    return int(value) if value.is_integer() else Fraction(value)


class Tally:
    """What a run of lines of one file contributes; merged by the reader in file order."""

    __slots__ = ("bytes", "lines", "malformed", "problem", "_first_bad", "future", "ahead", "newest_ahead",
                 "last_ahead", "records", "daemon_starts", "utilization", "online", "newest", "hosts", "users",
                 "titles")

    def __init__(self, users: bool, titles: bool):
        self.bytes = 0
        self.lines = 0
        self.malformed = 0
        #: The first malformed line, for the log: (reason, its number among the tally's lines from 1, what
        #: ``logs.line_fields`` shows of it). Never the line itself: it may be any file's content.
        self.problem: Optional[Tuple[str, int, Dict[str, object]]] = None
        #: (reason, line) of the block being added, until ``add_block`` knows its number.
        self._first_bad: Optional[Tuple[str, str]] = None
        #: Time of the first record dated beyond the horizon, for the log; how many were, and the newest of them.
        self.future: Optional[int] = None
        self.ahead = 0
        self.newest_ahead = 0
        #: Whether the last record, in file order, was dated beyond the horizon: a host whose clock was set right
        #: wrote on time after its records from the future, and so has no skew any more.
        self.last_ahead = False
        self.records: Dict[str, int] = {}
        self.daemon_starts = 0
        self.utilization: Optional[Timed] = None
        self.online: Optional[Tuple[int, int]] = None
        self.newest = 0
        #: Raw host -> ``records.new_totals()``, in order of first appearance (the budget's order).
        self.hosts: Dict[str, List[Exact]] = {}
        self.users: Optional[Dict[str, List[Exact]]] = {} if users else None
        self.titles: Optional[Dict[str, List[Exact]]] = {} if titles else None

    def discarded(self, nbytes: int, new_line: bool) -> None:
        """Bytes of an over-long line (``exporter.tailer``): one malformed line, on its first part."""
        self.bytes += nbytes
        if new_line:
            self.lines += 1
            self.malformed += 1
            if self.problem is None:
                self.problem = (OVER_LONG, self.lines, {})

    def add_block(self, block: bytes, horizon: float) -> None:
        """Counts the complete lines of ``block``; records dated after ``horizon`` never become the latest."""
        self.bytes += len(block)
        text = block.decode("utf-8", "surrogateescape")  # names keep their bytes: ``families.label_value``
        lines = text.split("\n")
        lines.pop()
        before = self.lines
        self.lines += len(lines)
        all_ascii = block.isascii()
        if all_ascii:
            clean = not any(character in block for character in _ASCII_OTHER_WHITESPACE)  # 100x faster than re
        else:
            clean = OTHER_WHITESPACE.search(text) is None
        if clean:
            self._lean(lines, horizon, all_ascii)
        else:
            for line in lines:
                self._one(line, horizon)
        if self._first_bad is not None:
            reason, line = self._first_bad
            self._first_bad = None
            # The first line equal to it is the first malformed one: an earlier equal line was malformed too.
            self.problem = (reason, before + lines.index(line) + 1, line_fields(line, show=record_shaped(line)))

    def _lean(self, lines: List[str], horizon: float, all_ascii: bool) -> None:
        """The hot loop: inline checks equal to ``parse_line``'s for the common shapes, ``_one`` for the rest.

        ``all_ascii``: the lines are ASCII, so their digits need no ``isascii``. Each step is the cheapest of the
        spellings measured (bench/reading.md): one f-string instead of four concatenations, a try instead of
        ``dict.get``, the horizon as an int."""
        hosts, users, titles, slot_of = self.hosts, self.users, self.titles, _SLOT_OF_CODE
        good_ids, good_priorities = _good_ids, _good_priorities
        frames = 0
        newest = self.newest
        utilization = self.utilization
        last_ahead = self.last_ahead
        latest = _comparable(horizon)
        for line in lines:
            tokens = line.split()
            if len(tokens) == 13 and tokens[0] == "p":
                _, when_s, jobid, title, owner, _frame, host, priority, wall_s, system_s, user_s, code_s, pid = tokens
                digits = f"{when_s}{wall_s}{system_s}{user_s}{pid}"
                if (
                    code_s in slot_of and len(digits) <= _LEAN_DIGITS and digits.isdigit()
                    and (all_ascii or digits.isascii())
                    and (jobid in good_ids or _passes(jobid, plausible_jobid, good_ids))
                    and (priority in good_priorities or _passes(priority, plausible_priority, good_priorities))
                ):
                    wall, system, user = int(wall_s), int(system_s), int(user_s)
                    if wall <= _MAX_SECONDS and system <= _MAX_SECONDS and user <= _MAX_SECONDS:
                        frames += 1
                        when = int(when_s)
                        last_ahead = when > latest
                        if last_ahead:
                            self._note_future(when)
                        elif when > newest:
                            newest = when
                        slot = slot_of[code_s]
                        try:
                            totals = hosts[host]
                        except KeyError:
                            totals = hosts[host] = new_totals()
                        totals[slot] += 1
                        totals[WALL] += wall
                        totals[SYSTEM] += system
                        totals[USER] += user
                        if users is not None:
                            _add_breakdown(users, owner, slot, wall)
                        if titles is not None:
                            _add_breakdown(titles, title, slot, wall)
                        continue
            elif len(tokens) == 3 and tokens[0] == "u":
                digits = tokens[1] + tokens[2]
                if (len(digits) <= _LEAN_DIGITS and digits.isdigit() and (all_ascii or digits.isascii())
                        and int(tokens[2]) <= 100):
                    when = int(tokens[1])
                    self.records["utilization"] = self.records.get("utilization", 0) + 1
                    last_ahead = when > latest
                    if last_ahead:
                        self._note_future(when)
                    else:
                        newest = max(newest, when)
                        if utilization is None or when >= utilization[0]:
                            utilization = (when, int(tokens[2]) / 100.0)
                    continue
            self.newest, self.utilization, self.last_ahead = newest, utilization, last_ahead
            self._one(line, horizon)
            newest, utilization, last_ahead = self.newest, self.utilization, self.last_ahead
        self.newest, self.utilization, self.last_ahead = newest, utilization, last_ahead
        if frames:
            self.records["process"] = self.records.get("process", 0) + frames

    def _one(self, line: str, horizon: float) -> None:
        """One line through ``parse_line``, the reference."""
        try:
            record = parse_line(line)
        except MalformedLine as exc:
            self.malformed += 1
            if self.problem is None and self._first_bad is None:
                self._first_bad = (str(exc), line)
            return
        if record is not None:
            self.add_record(record, horizon)

    def add_record(self, record: Record, horizon: float) -> None:
        name = RECORD_NAMES[type(record)]
        self.records[name] = self.records.get(name, 0) + 1
        future = self.last_ahead = record.time > horizon
        if future:
            self._note_future(record.time)
        elif record.time > self.newest:
            self.newest = record.time
        if isinstance(record, Process):
            self._add_frame(record)
        else:
            self._apply_gauge(record, future)

    def _add_frame(self, frame: Process) -> None:
        slot = status_slot(frame.exit_code)
        wall = exact(frame.wall_seconds)
        totals = self.hosts.get(frame.host)
        if totals is None:
            totals = self.hosts[frame.host] = new_totals()
        totals[slot] += 1
        totals[WALL] += wall
        totals[SYSTEM] += exact(frame.system_seconds)
        totals[USER] += exact(frame.user_seconds)
        if self.users is not None:
            _add_breakdown(self.users, frame.owner, slot, wall)
        if self.titles is not None:
            _add_breakdown(self.titles, frame.title, slot, wall)

    def _apply_gauge(self, record: Record, future: bool) -> None:
        """Utilization and daemon state: the latest record by time wins (never one from the future)."""
        if isinstance(record, DaemonEvent) and record.action == "start":
            self.daemon_starts += 1
        if future:
            return
        if isinstance(record, Utilization):
            if self.utilization is None or record.time >= self.utilization[0]:
                self.utilization = (record.time, record.ratio)
        elif isinstance(record, (Rotation, StateChange, DaemonEvent)):
            if self.online is None or record.time >= self.online[0]:
                self.online = (record.time, int(record.online))

    def _note_future(self, when: int) -> None:
        if self.future is None:
            self.future = when
        self.ahead += 1
        if when > self.newest_ahead:
            self.newest_ahead = when


def _comparable(horizon: float) -> int | float:
    """``horizon`` as an int where ``when > horizon`` gives the same for every int ``when`` (an int compares to an
    int faster than to a float); an infinite or NaN one, which ``math.floor`` refuses, as it is (the config
    refuses such durations, but ``add_block`` takes any float)."""
    return math.floor(horizon) if math.isfinite(horizon) else horizon


def _passes(value: str, check: Callable[[str], bool], passed: Set[str]) -> bool:
    """``check(value)``, remembered in ``passed`` when true (ids repeat on every frame)."""
    if check(value):
        if len(passed) >= _PASSED_LIMIT:
            passed.clear()
        passed.add(value)
        return True
    return False


def _add_breakdown(values: Dict[str, List[Exact]], value: str, slot: int, wall: Exact) -> None:
    totals = values.get(value)
    if totals is None:
        totals = values[value] = [0, 0, 0, 0, 0]
    totals[slot] += 1
    totals[BREAKDOWN_WALL] += wall
