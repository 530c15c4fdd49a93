"""Parses one line of Rush's ``cpu.acct`` accounting log into a record.

Pure functions, no I/O: the tailer hands over complete lines, the reader
accumulates the records. Formats (docs/rush.md): Rush 102.21's and the newer
ones of 102.42 .. 103.07: space-aligned or TAB-delimited
fields (sometimes mixed in one line), CRLF endings, job ids ``tahoe-798`` or
``tahoe.798``, priorities with a letter flag (``100k``).

What Python would accept but Rush never writes is a malformed line: fields
separated by other whitespace than blanks and TABs (``str.split`` also splits
on U+2028, U+00A0, form feeds, ...), numbers with ``_`` or non-ASCII digits
(``int("١٢")`` is 12), ``nan``/``inf``, and seconds above
``MAX_FRAME_SECONDS``, so counters stay finite and plausible.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, NamedTuple, NoReturn, Optional, Pattern, Set, Union


class MalformedLine(ValueError):
    """The line is not a valid record; the message says why, never quoting the line (it may be any file's
    content: the log shows only ``logs.line_fields`` of it)."""


class Process(NamedTuple):
    """``p``: one finished frame."""

    time: int
    jobid: str
    title: str
    owner: str
    frame: str
    host: str
    priority: str
    wall_seconds: float
    system_seconds: float
    user_seconds: float
    exit_code: int
    pid: int


class Utilization(NamedTuple):
    """``u``: share of time the processors were busy rendering, 0..1."""

    time: int
    ratio: float


class Rotation(NamedTuple):
    """``r start|end``: top of a new log, or end of a rotated-out one."""

    time: int
    edge: str
    online: bool


class StateChange(NamedTuple):
    """``s``: the daemon was put online or offline by someone."""

    time: int
    online: bool
    who: str
    reason: str


class Midnight(NamedTuple):
    """``m``: midnight marker."""

    time: int


class DaemonEvent(NamedTuple):
    """``d start|stop``: the render daemon started or stopped."""

    time: int
    action: str
    online: bool


Record = Union[Process, Utilization, Rotation, StateChange, Midnight, DaemonEvent]

PROCESS_FIELDS = 13
#: Most seconds one frame may report (wall, system or user): about 3 years; more is a corrupt line.
MAX_FRAME_SECONDS = 1e8
#: Longest job id or priority: Rush's are a host name and a number; longer ones are not remembered.
MAX_ID_LENGTH = 256
OTHER_WHITESPACE = re.compile(r"[^\S \t\r\n]")
_JOBID = re.compile(r"^\S+[-.][0-9]+$")
_PRIORITY = re.compile(r"^[0-9]+[A-Za-z]?$")
_ONLINE = {"online": True, "offline": False}


#: Rush's frame statuses. A status's index is its slot in per-host totals, which continue with ``SECONDS_SLOTS``.
STATUSES = ("done", "fail", "requeue", "killed")
DONE, FAIL, REQUEUE, KILLED = range(len(STATUSES))
#: Slots of wall, system and user seconds in per-host totals, after the statuses.
WALL, SYSTEM, USER = SECONDS_SLOTS = (4, 5, 6)
TOTALS_SLOTS = 7


def status_slot(exit_code: int) -> int:
    """Rush's meaning of a frame's exit code, as a slot of ``STATUSES``: 0 done, 2 requeue, <0 killed, else fail.

    The one place of this rule: live reading and backfill both use it."""
    if exit_code == 0:
        return DONE
    if exit_code == 2:
        return REQUEUE
    if exit_code < 0:
        return KILLED
    return FAIL


def frame_status(exit_code: int) -> str:
    """The status name of ``exit_code`` (see ``status_slot``)."""
    return STATUSES[status_slot(exit_code)]


def new_totals() -> list:
    """Per-host totals: frames per status slot, then wall, system and user seconds (exact: int or Fraction)."""
    return [0] * TOTALS_SLOTS


def record_shaped(line: str) -> bool:
    """Whether ``line`` starts as a Rush record does (a known record type, then a blank or TAB): only such a
    line's start is shown in the log (``logs.line_fields``); another file's content is not."""
    return line[:1] in _PARSERS and line[1:2] in (" ", "\t")


def parse_line(line: str) -> Optional[Record]:
    """Returns the record of ``line``, None for a blank line, or raises MalformedLine."""
    tokens = line.split()
    if not tokens:
        return None
    parse = _PARSERS.get(tokens[0])
    if parse is None:
        raise MalformedLine("unknown record type")
    if OTHER_WHITESPACE.search(line):
        raise MalformedLine("fields separated by whitespace other than blanks and TABs")
    return parse(line, tokens)


def _plain(token: str, what: str) -> None:
    """Raises unless ``token`` can be a number Rush wrote: ASCII, no ``_`` (Python's int and float allow both)."""
    if not token.isascii() or "_" in token:
        raise MalformedLine("%s is not a plain ASCII number" % what)


def _integer(token: str, what: str) -> int:
    _plain(token, what)
    try:
        return int(token)
    except ValueError:
        raise MalformedLine("%s is not an integer" % what) from None


def _time(token: str) -> int:
    value = _integer(token, "time")
    if value < 0:
        raise MalformedLine("time is negative")
    return value


def _number(token: str, what: str, maximum: float) -> float:
    _plain(token, what)
    try:
        value = float(token)
    except ValueError:
        raise MalformedLine("%s is not a number" % what) from None
    if not 0 <= value <= maximum:  # also false for nan
        raise MalformedLine("%s out of range 0..%g" % (what, maximum))
    return value


def _state(token: str) -> bool:
    try:
        return _ONLINE[token]
    except KeyError:
        raise MalformedLine("state is neither online nor offline") from None


def _process_fields(line: str, tokens: list) -> list:
    """The 13 fields of a ``p`` line; only the title may contain blanks.

    A TAB-delimited line keeps its title exactly; a space-aligned title with
    blanks is rebuilt from the tokens between the job id and the 9 fixed
    trailing fields.
    """
    if len(tokens) == PROCESS_FIELDS:
        return tokens
    if len(tokens) < PROCESS_FIELDS:
        raise MalformedLine("process entry has %d fields, needs %d" % (len(tokens), PROCESS_FIELDS))
    if "\t" in line:
        by_tab = [field.strip() for field in line.split("\t")]
        by_tab = [field for field in by_tab if field]
        if len(by_tab) == PROCESS_FIELDS and by_tab[0] == "p":
            return by_tab
    title = " ".join(tokens[3 : len(tokens) - 9])
    return tokens[:3] + [title] + tokens[len(tokens) - 9 :]


# Job ids and priorities repeat on every frame: remember the ones that passed.
_KNOWN_LIMIT = 100_000
_known_jobids: Set[str] = set()
_known_priorities: Set[str] = set()


def _remember_if_valid(value: str, regex: Pattern, known: Set[str]) -> bool:
    if value in known:
        return True
    if len(value) > MAX_ID_LENGTH or not regex.match(value):
        return False
    if len(known) >= _KNOWN_LIMIT:
        known.clear()
    known.add(value)
    return True


def plausible_jobid(value: str) -> bool:
    """Whether ``value`` is a job id Rush writes (``host-number`` or ``host.number``, not too long)."""
    return _remember_if_valid(value, _JOBID, _known_jobids)


def plausible_priority(value: str) -> bool:
    """Whether ``value`` is a priority Rush writes (a number with an optional flag letter)."""
    return _remember_if_valid(value, _PRIORITY, _known_priorities)


_new_process = tuple.__new__


def _parse_process(line: str, tokens: list) -> Process:
    """Fast path: convert everything at once; the detailed checks only explain a bad line."""
    f = _process_fields(line, tokens)
    numbers = f[1] + f[8] + f[9] + f[10] + f[11] + f[12]
    try:
        when, wall, system, user = int(f[1]), float(f[8]), float(f[9]), float(f[10])
        record = _new_process(Process, (when, f[2], f[3], f[4], f[5], f[6], f[7], wall, system, user,
                                         int(f[11]), int(f[12])))
    except ValueError:
        record = None
    if (
        record is None
        or not numbers.isascii()
        or "_" in numbers
        or when < 0
        or not (0 <= wall <= MAX_FRAME_SECONDS and 0 <= system <= MAX_FRAME_SECONDS
                and 0 <= user <= MAX_FRAME_SECONDS)
        or (f[2] not in _known_jobids and not plausible_jobid(f[2]))
        or (f[7] not in _known_priorities and not plausible_priority(f[7]))
    ):
        _explain_bad_process(f)
    return record


def _explain_bad_process(f: list) -> NoReturn:
    """Raises MalformedLine naming the first bad field of a ``p`` line."""
    if len(f[2]) > MAX_ID_LENGTH or not _JOBID.match(f[2]):
        raise MalformedLine("job id is not host-number or host.number")
    if len(f[7]) > MAX_ID_LENGTH or not _PRIORITY.match(f[7]):
        raise MalformedLine("priority is not a number with an optional flag letter")
    _time(f[1])
    _number(f[8], "wall seconds", MAX_FRAME_SECONDS)
    _number(f[9], "system seconds", MAX_FRAME_SECONDS)
    _number(f[10], "user seconds", MAX_FRAME_SECONDS)
    _integer(f[11], "exit code")
    _integer(f[12], "pid")
    raise MalformedLine("invalid process entry")


def _expect_fields(tokens: list, count: int, what: str) -> None:
    if len(tokens) != count:
        raise MalformedLine("%s has %d fields, needs %d" % (what, len(tokens), count))


def _parse_utilization(line: str, tokens: list) -> Utilization:
    _expect_fields(tokens, 3, "utilization entry")
    percent = _number(tokens[2], "percent busy", 100.0)
    return Utilization(_time(tokens[1]), percent / 100.0)


def _parse_rotation(line: str, tokens: list) -> Rotation:
    _expect_fields(tokens, 4, "rotation entry")
    if tokens[1] not in ("start", "end"):
        raise MalformedLine("rotation edge is neither start nor end")
    return Rotation(_time(tokens[2]), tokens[1], _state(tokens[3]))


def _parse_state_change(line: str, tokens: list) -> StateChange:
    if len(tokens) < 4:
        raise MalformedLine("state change has %d fields, needs at least 4" % len(tokens))
    return StateChange(_time(tokens[1]), _state(tokens[2]), tokens[3], " ".join(tokens[4:]) or "-")


def _parse_midnight(line: str, tokens: list) -> Midnight:
    _expect_fields(tokens, 2, "midnight marker")
    return Midnight(_time(tokens[1]))


def _parse_daemon(line: str, tokens: list) -> DaemonEvent:
    _expect_fields(tokens, 4, "daemon entry")
    if tokens[1] not in ("start", "stop"):
        raise MalformedLine("daemon action is neither start nor stop")
    return DaemonEvent(_time(tokens[2]), tokens[1], _state(tokens[3]))


_PARSERS: Dict[str, Callable[[str, list], Record]] = {
    "p": _parse_process,
    "u": _parse_utilization,
    "r": _parse_rotation,
    "s": _parse_state_change,
    "m": _parse_midnight,
    "d": _parse_daemon,
}
