"""The Rush reader's state as bytes, for a checkpoint: JSON, with exact totals and raw bytes kept exact.

JSON rather than pickle: a checkpoint is read back by the daemon, and a file
in a state directory must not be able to run code in it. Its checksum has no
secret, so whoever can write the state directory can forge one: ``load`` is
the one place that validates a checkpoint like input, before the reader uses
any of it. Besides the shape ``dump`` writes (types, list lengths), every
value must be one a live read could have produced under the same
configuration (``Limits``): counts are non-negative integers below 2^53,
seconds at most ``MAX_FRAME_SECONDS`` per frame, ratios 0..1, times not past
the clock's horizon, offsets below ``MAX_OFFSET``, label values valid UTF-8
within ``max_label_length`` and admitted by their budget (or ``__other__``),
budgets within their capacity, and every path one a configured pattern
matches (a rotated file's name in the folder of one). A checkpoint that does
not fit raises ``ValueError`` saying where, never quoting what was found
there beyond a short excerpt of a number (the reader then reads its files
from the start, and the checkpointer counts and logs the refusal); it never
breaks a later sync, serves absurd values or opens a path outside the
patterns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Set, Tuple, Type, TypeVar

from exporter.budget import OTHER, LabelBudget
from exporter.families import is_utf8
from exporter.rush.config import RushConfig
from exporter.rush.records import MAX_FRAME_SECONDS, TOTALS_SLOTS
from exporter.rush.tally import BREAKDOWN_WALL, RECORD_NAMES, Exact, Timed
from exporter.tailer import FINGERPRINT_BYTES, MAX_LINE_BYTES, REMEMBERED_FILES, TAIL_BYTES

#: Host totals: frames per status, then wall, system and user seconds; per user or title: frames, then wall.
HOST_SLOTS = TOTALS_SLOTS
BREAKDOWN_SLOTS = BREAKDOWN_WALL + 1
#: A fraction as saved: digits enough for any sum of floats (a float's exact value has at most ~770 digits),
#: few enough that parsing one costs nothing (``Fraction("1e999999999")`` would take seconds).
_FRACTION = re.compile(r"\A([0-9]{1,1000})/([1-9][0-9]{0,999})\Z")
T = TypeVar("T")
Totals = List[Exact]
#: Largest count a checkpoint may hold (frames, lines, bytes, records, ...): exact as a float, and far above
#: what a farm writes (a billion frames a day for 25,000 years).
MAX_COUNT = (1 << 53) - 1
#: Largest file offset a checkpoint may hold: 1 PiB, far beyond any cpu.acct.
MAX_OFFSET = 1 << 50
#: Longest path (Linux's PATH_MAX) and reason text a checkpoint may hold.
MAX_PATH = 4096
MAX_REASON = 1000
_FRAME_SLOTS = 4  # frames per status come first in host and breakdown totals
_RECORD_NAMES = frozenset(RECORD_NAMES.values())


class Limits(NamedTuple):
    """What a live read under the reader's configuration could have produced: what ``load`` checks against."""

    #: Whether a configured pattern matches a path.
    matches: Callable[[str], bool]
    max_label_length: int
    #: Per label budget of the reader (``host``, and ``user``/``title`` when enabled): values it admits at most.
    capacities: Mapping[str, int]
    #: Latest plausible time (the clock plus ``max_clock_skew``): a live read never keeps a later one as latest.
    horizon: float


@dataclass
class FileState:
    """Everything learnt from one file (by the path it was first opened under), and what it contributed.

    ``hosts``, ``users`` and ``titles`` are the file's share of the reader's
    totals (by label after the budgets), and ``truncated`` and ``over_budget``
    its share of the budgets' counters (by label name), so that a file found
    rewritten while the exporter was stopped can be taken out of them.
    Saved whole (``to_json``/``from_json``: every field, which a test checks)."""

    up: bool = True
    down_reason: Optional[str] = None
    last_success_time: Optional[float] = None
    errors: int = 0
    malformed: int = 0
    bytes: int = 0
    lines: int = 0
    seen_host: Optional[str] = None
    records: Dict[str, int] = field(default_factory=dict)
    daemon_starts: int = 0
    utilization: Optional[Timed] = None
    online: Optional[Tuple[int, int]] = None
    last_record_time: Optional[int] = None
    #: How far the file's last record was dated ahead of the clock when it was read (seconds; 0: not ahead).
    clock_ahead: float = 0.0
    hosts: Dict[str, Totals] = field(default_factory=dict)
    users: Dict[str, Totals] = field(default_factory=dict)
    titles: Dict[str, Totals] = field(default_factory=dict)
    truncated: Dict[str, int] = field(default_factory=dict)
    over_budget: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {
            "up": self.up, "down_reason": self.down_reason, "last_success_time": self.last_success_time,
            "errors": self.errors, "malformed": self.malformed, "bytes": self.bytes, "lines": self.lines,
            "seen_host": self.seen_host, "records": self.records, "daemon_starts": self.daemon_starts,
            "utilization": self.utilization, "online": self.online, "last_record_time": self.last_record_time,
            "clock_ahead": self.clock_ahead,
            "hosts": _totals(self.hosts), "users": _totals(self.users), "titles": _totals(self.titles),
            "truncated": self.truncated, "over_budget": self.over_budget,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str, check: Optional[_Check] = None) -> FileState:
        """The state ``to_json`` gave; ValueError (naming the first field that does not fit) for anything else.

        ``check``: the limits of the reader's configuration and the budgets' admissions (``load``); without
        it only what holds under any configuration is checked (a test's round trip)."""
        check = check or _Check.lenient()
        raw = _dict(raw, where)
        _keys(raw, {f.name for f in dataclasses.fields(cls)}, where)
        at = where + "."
        utilization = _optional(raw["utilization"], check.ratio_at, at + "utilization")
        online = _optional(raw["online"], check.online_at, at + "online")
        return cls(
            up=_typed(raw["up"], bool, at + "up"),
            down_reason=_optional(raw["down_reason"], _reason, at + "down_reason"),
            last_success_time=_optional(raw["last_success_time"], check.moment, at + "last_success_time"),
            errors=_count(raw["errors"], at + "errors"),
            malformed=_count(raw["malformed"], at + "malformed"),
            bytes=_count(raw["bytes"], at + "bytes"),
            lines=_count(raw["lines"], at + "lines"),
            seen_host=_optional(raw["seen_host"], check.host, at + "seen_host"),
            records=_counts(raw["records"], at + "records", _RECORD_NAMES),
            daemon_starts=_count(raw["daemon_starts"], at + "daemon_starts"),
            utilization=utilization,
            online=online,
            last_record_time=_optional(raw["last_record_time"], check.time, at + "last_record_time"),
            clock_ahead=_skew(raw["clock_ahead"], at + "clock_ahead"),
            hosts=check.totals(raw["hosts"], "host", HOST_SLOTS, at + "hosts"),
            users=check.totals(raw["users"], "user", BREAKDOWN_SLOTS, at + "users"),
            titles=check.totals(raw["titles"], "title", BREAKDOWN_SLOTS, at + "titles"),
            truncated=_counts(raw["truncated"], at + "truncated", check.budget_names),
            over_budget=_counts(raw["over_budget"], at + "over_budget", check.budget_names),
        )


@dataclass
class GoneShare:
    """What files that are gone (deleted, or rotated away and drained) left behind, merged by host: their
    share of the totals (counters never go down), while their own ``FileState`` is dropped, so the state of a
    farm whose files come and go stays the size of its live files and hosts.

    ``records`` and ``daemon_starts`` are by the gauge host the file had (the ``host`` label of
    ``rush_records_total`` and ``rush_daemon_starts_total``); ``hosts``, ``users`` and ``titles`` as in
    ``FileState``. Gauges (utilization, online, last record) are not kept: they come from live files only."""

    hosts: Dict[str, Totals] = field(default_factory=dict)
    users: Dict[str, Totals] = field(default_factory=dict)
    titles: Dict[str, Totals] = field(default_factory=dict)
    records: Dict[str, Dict[str, int]] = field(default_factory=dict)
    daemon_starts: Dict[str, int] = field(default_factory=dict)

    def merge(self, state: FileState, host: str) -> None:
        """Takes in a gone file's share; ``host``: its gauge host."""
        for mine, theirs in ((self.hosts, state.hosts), (self.users, state.users), (self.titles, state.titles)):
            for label, totals in theirs.items():
                into = mine.setdefault(label, [0] * len(totals))
                for slot, value in enumerate(totals):
                    into[slot] += value
        if state.records:
            records = self.records.setdefault(host, {})
            for name, count in state.records.items():
                records[name] = records.get(name, 0) + count
        if state.daemon_starts:
            self.daemon_starts[host] = self.daemon_starts.get(host, 0) + state.daemon_starts

    def to_json(self) -> Dict[str, Any]:
        return {"hosts": _totals(self.hosts), "users": _totals(self.users), "titles": _totals(self.titles),
                "records": self.records, "daemon_starts": self.daemon_starts}

    @classmethod
    def from_json(cls, raw: Any, where: str, check: Optional[_Check] = None) -> GoneShare:
        check = check or _Check.lenient()
        raw = _dict(raw, where)
        _keys(raw, {f.name for f in dataclasses.fields(cls)}, where)
        at = where + "."
        return cls(
            hosts=check.totals(raw["hosts"], "host", HOST_SLOTS, at + "hosts"),
            users=check.totals(raw["users"], "user", BREAKDOWN_SLOTS, at + "users"),
            titles=check.totals(raw["titles"], "title", BREAKDOWN_SLOTS, at + "titles"),
            records={check.host(host, at + "records"): _counts(counts, at + "records", _RECORD_NAMES)
                     for host, counts in _dict(raw["records"], at + "records").items()},
            daemon_starts={check.host(host, at + "daemon_starts"): _count(count, at + "daemon_starts")
                           for host, count in _dict(raw["daemon_starts"], at + "daemon_starts").items()},
        )


class SavedBudget(NamedTuple):
    """A label budget's admissions (in order) and counters."""

    admitted: List[str]
    overflowed: int
    truncated: int

    def to_json(self) -> Dict[str, Any]:
        return {"admitted": self.admitted, "overflowed": self.overflowed, "truncated": self.truncated}

    @classmethod
    def of(cls, budget: LabelBudget) -> SavedBudget:
        return cls([str(value) for value in budget.admitted()], budget.overflowed, budget.truncated)

    @classmethod
    def from_json(cls, raw: Any, where: str, capacity: int = MAX_COUNT, max_length: Optional[int] = None,
                  ) -> SavedBudget:
        """A budget as saved: at most ``capacity`` distinct label values (never ``__other__``), each valid
        UTF-8 within ``max_length``, as the budget admits them."""
        raw = _dict(raw, where)
        _keys(raw, set(cls._fields), where)
        admitted = [_label(value, where + ".admitted", max_length) for value in _list(raw["admitted"], where)]
        if len(admitted) > capacity:
            raise ValueError("%s.admitted: %d values, the budget admits at most %d" % (where, len(admitted), capacity))
        if len(set(admitted)) != len(admitted) or OTHER in admitted:
            raise ValueError("%s.admitted: a value twice, or %s" % (where, OTHER))
        return cls(admitted, _count(raw["overflowed"], where + ".overflowed"),
                   _count(raw["truncated"], where + ".truncated"))

    def restore(self, budget: LabelBudget) -> None:
        """Admits again what was admitted (the budget is the one configured then: the config is the same)."""
        budget.readmit(self.admitted, self.overflowed, self.truncated)


class SavedReader(NamedTuple):
    """Everything a checkpoint of the reader holds, checked (``load``; ``tailer`` converted by the tailer)."""

    version: int
    tailer: Dict[str, Any]
    present: Set[str]
    gauge_host: Dict[str, str]
    budgets: Dict[str, SavedBudget]
    files: Dict[str, FileState]
    gone: GoneShare

    def to_json(self) -> Dict[str, Any]:
        return {"version": self.version, "tailer": self.tailer, "present": sorted(self.present),
                "gauge_host": self.gauge_host, "budgets": {name: b.to_json() for name, b in self.budgets.items()},
                "files": {label: state.to_json() for label, state in self.files.items()},
                "gone": self.gone.to_json()}


def config_key(config: RushConfig) -> RushConfig:
    """The part of the section the state depends on: all of it but how many processes read."""
    return dataclasses.replace(config, read_processes=None)


_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
#: Containers this shallow, or with more items than this, are encoded item by item (see ``dump``).
_WHOLE_BELOW_DEPTH, _WHOLE_UP_TO_ITEMS = 2, 100


def dump(state: SavedReader) -> bytes:
    """The state as JSON (keys sorted), encoded a file's state at a time.

    The C encoder holds the GIL for a whole call: encoding 2,000 files' state in one call held it for
    about 30 ms, which a scrape then waited for. Item by item, other threads run between items."""
    return "".join(_pieces(state.to_json(), 0)).encode()


def _pieces(value: Any, depth: int) -> Iterator[str]:
    """JSON text of ``value`` in pieces: small, deep containers whole, the others item by item."""
    if not isinstance(value, (dict, list)) or (depth >= _WHOLE_BELOW_DEPTH and len(value) <= _WHOLE_UP_TO_ITEMS):
        yield _ENCODE(value)
        return
    if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
        raise TypeError("checkpoint state: every key must be a string, as JSON's are")
    items = sorted(value.items()) if isinstance(value, dict) else list(enumerate(value))
    yield "{" if isinstance(value, dict) else "["
    for index, (key, item) in enumerate(items):
        yield ("," if index else "") + (_ENCODE(key) + ":" if isinstance(value, dict) else "")
        yield from _pieces(item, depth + 1)
    yield "}" if isinstance(value, dict) else "]"


def version_of(data: bytes) -> Any:
    """The version a state says it has (checked before the rest: another version may have another shape)."""
    loaded = json.loads(data)
    return loaded.get("version") if isinstance(loaded, dict) else None


def load(data: bytes, limits: Limits) -> SavedReader:
    """The state ``dump`` wrote under the configuration ``limits`` describes; ValueError (saying where, not
    what) if it is not one: see the module's doc. Nothing is changed by a call: the caller takes all or
    nothing."""
    raw = _dict(json.loads(data, parse_constant=_no_constant), "state")
    _keys(raw, set(SavedReader._fields), "state")
    unknown = set(_dict(raw["budgets"], "budgets")) - set(limits.capacities)
    if unknown:
        raise ValueError("budgets: %d of labels this reader does not have" % len(unknown))
    budgets = {name: SavedBudget.from_json(value, "budgets." + name, limits.capacities[name],
                                           limits.max_label_length)
               for name, value in raw["budgets"].items()}
    check = _Check(limits, budgets)
    present = [check.path(path, "present") for path in _list(raw["present"], "present")]
    gauge_host = {check.path(path, "gauge_host"): check.host(host, "gauge_host")
                  for path, host in _dict(raw["gauge_host"], "gauge_host").items()}
    files = {check.path(label, "files"): FileState.from_json(value, "files[#%d]" % index, check)
             for index, (label, value) in enumerate(_dict(raw["files"], "files").items())}
    tailer = _dict(raw["tailer"], "tailer")
    check.tailer(tailer, set(files) | set(present) | set(gauge_host))
    return SavedReader(
        version=_count(raw["version"], "version"),
        tailer=tailer,
        present=set(present),
        gauge_host=gauge_host,
        budgets=budgets,
        files=files,
        gone=GoneShare.from_json(raw["gone"], "gone", check),
    )


def _no_constant(name: str) -> Any:
    raise ValueError("state: %s is not a number a checkpoint holds" % name)  # NaN, Infinity


class _Check:
    """The checks of values that depend on the reader's configuration (``Limits``) and the loaded budgets."""

    def __init__(self, limits: Limits, budgets: Mapping[str, SavedBudget]):
        self.limits = limits
        self.budget_names = frozenset(limits.capacities)
        #: Per label name: the values that may key totals (admitted ones and ``__other__``); None: any label.
        self._labels: Dict[str, Optional[Set[str]]] = {
            name: {OTHER, *(budgets[name].admitted if name in budgets else ())} for name in limits.capacities}

    @classmethod
    def lenient(cls) -> _Check:
        """Only what holds under any configuration (the shape, bounded numbers)."""
        check = cls(Limits(lambda path: True, MAX_PATH, {name: MAX_COUNT for name in ("host", "user", "title")},
                           math.inf), {})
        check._labels = {name: None for name in check._labels}
        return check

    def host(self, value: Any, where: str) -> str:
        return self.label(value, "host", where)

    def label(self, value: Any, name: str, where: str) -> str:
        """A label value of ``name`` that its budget admitted (or ``__other__``)."""
        allowed = self._labels.get(name)
        if name not in self._labels:
            raise ValueError("%s: %s values, but this reader has no %s breakdown" % (where, name, name))
        label = _label(value, where, self.limits.max_label_length)
        if allowed is not None and label not in allowed:
            raise ValueError("%s: a %s its series budget did not admit" % (where, name))
        return label

    def totals(self, raw: Any, name: str, slots: int, where: str) -> Dict[str, Totals]:
        """Totals by label value: frames per status (whole numbers), then seconds, at most ``MAX_FRAME_SECONDS``
        per frame; an empty mapping for a breakdown that is not enabled."""
        raw = _dict(raw, where)
        if raw and name not in self._labels:
            raise ValueError("%s: %s values, but this reader has no %s breakdown" % (where, name, name))
        totals = {}
        for index, (key, values) in enumerate(raw.items()):
            at = "%s[#%d]" % (where, index)
            label = self.label(key, name, at)
            if not isinstance(values, list) or len(values) != slots:
                raise ValueError("%s: not a list of %d numbers" % (at, slots))
            exact: Totals = [_count(value, at) for value in values[:_FRAME_SLOTS]]
            exact += [to_exact(value, at) for value in values[_FRAME_SLOTS:]]
            most = sum(exact[:_FRAME_SLOTS]) * int(MAX_FRAME_SECONDS)
            if any(seconds > most for seconds in exact[_FRAME_SLOTS:]):
                raise ValueError("%s: more seconds than its frames can have" % at)
            totals[label] = exact
        return totals

    def time(self, value: Any, where: str) -> int:
        """A record's time (Unix seconds): not past the horizon, as a live read keeps the latest."""
        when = _count(value, where)
        if when > self.limits.horizon:
            raise ValueError("%s: a time past the clock's horizon: %s" % (where, _excerpt(when)))
        return when

    def moment(self, value: Any, where: str) -> float:
        """A time the exporter took (Unix seconds, a float): finite, not negative; one past the horizon is taken
        as the horizon (a clock set back since, as at a boot before NTP, does not discard the checkpoint)."""
        when = _number(value, where)
        if when < 0:
            raise ValueError("%s: not a plausible time: %s" % (where, _excerpt(when)))
        return min(when, self.limits.horizon)

    def ratio_at(self, value: Any, where: str) -> Tuple[int, float]:
        """(time, ratio) of a ``u`` record: the ratio finite, 0..1."""
        when, ratio = _pair(value, where)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("%s: a ratio outside 0..1: %s" % (where, _excerpt(ratio)))
        return self.time(when, where), ratio

    def online_at(self, value: Any, where: str) -> Tuple[int, int]:
        """(time, 0 or 1) of a daemon state record."""
        when, online = _pair(value, where)
        if online not in (0, 1):
            raise ValueError("%s: online is neither 0 nor 1: %s" % (where, _excerpt(online)))
        return self.time(when, where), int(online)

    def path(self, value: Any, where: str) -> str:
        """A path a configured pattern matches (never quoted: it may be one planted to be read or logged)."""
        path = _path(value, where)
        if not self.limits.matches(path):
            raise ValueError("%s: a path no configured pattern matches" % where)
        return path

    def tailer(self, raw: Dict[str, Any], known: Set[str]) -> None:
        """The tailer's cursors and remembered positions (``Tailer.save``); ``Tailer.load`` checks their shape
        again as it converts them. ``known``: paths of the rest of the state."""
        cursors, gone = _list(raw.get("cursors"), "tailer.cursors"), _list(raw.get("gone"), "tailer.gone")
        if set(raw) != {"cursors", "gone"}:
            raise ValueError("tailer: keys other than cursors and gone")
        if len(gone) > REMEMBERED_FILES:
            raise ValueError("tailer.gone: %d positions, at most %d are kept" % (len(gone), REMEMBERED_FILES))
        seen: Set[str] = set()
        folders = {os.path.dirname(path) for path in known}
        for index, cursor in enumerate(cursors):
            at = "tailer.cursors[#%d]" % index
            cursor = _dict(cursor, at)
            label = self.path(cursor.get("label"), at + ".label")
            paths = [self.path(path, at + ".paths") for path in _list(cursor.get("paths"), at + ".paths")]
            if seen.intersection(paths) or len(set(paths)) != len(paths):
                raise ValueError("%s.paths: a path of two cursors" % at)
            seen.update(paths)
            folders.add(os.path.dirname(label))
            folders.update(os.path.dirname(path) for path in paths)
            identity = _list(cursor.get("identity"), at + ".identity")
            if len(identity) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 64
                                             for n in identity):
                raise ValueError("%s.identity: not (device, inode)" % at)
            offset = _offset(cursor.get("offset"), at + ".offset")
            _latin1(cursor.get("partial"), MAX_LINE_BYTES, at + ".partial")
            _latin1(cursor.get("fingerprint"), FINGERPRINT_BYTES, at + ".fingerprint")
            if len(_latin1(cursor.get("tail"), min(TAIL_BYTES, offset), at + ".tail")) > offset:
                raise ValueError("%s.tail: longer than the offset" % at)
        for index, cursor in enumerate(cursors):  # where a rotated file was found: a name in a watched folder
            where = cursor.get("where")
            if where is not None:
                at = "tailer.cursors[#%d].where" % index
                where = _path(where, at)
                if os.path.dirname(where) not in folders or os.path.basename(where) in ("", ".", ".."):
                    raise ValueError("%s: a path outside the folders of the files read" % at)
        for index, position in enumerate(gone):
            at = "tailer.gone[#%d]" % index
            if not isinstance(position, list) or len(position) not in (4, 6):
                raise ValueError("%s: not [label, fingerprint, offset, tail] (and [partial, skipping])" % at)
            self.path(position[0], at)
            _latin1(position[1], FINGERPRINT_BYTES, at)
            offset = _offset(position[2], at)
            _latin1(position[3], min(TAIL_BYTES, offset), at)
            if len(position) == 6:  # stopped within a line: its incomplete line's length, or skipping one
                partial, skipping = _offset(position[4], at), _typed(position[5], bool, at)
                if partial > min(MAX_LINE_BYTES, offset) or skipping and partial:
                    raise ValueError("%s: not an incomplete line's length before the offset, or skipping" % at)


# -- exact numbers -----------------------------------------------------------


def exact_list(values: Totals) -> List[int | str]:
    """Whole numbers as they are, fractions as ``"n/d"``."""
    return [value if isinstance(value, int) else "%d/%d" % (value.numerator, value.denominator) for value in values]


def to_exact(value: Any, where: str) -> Exact:
    """A whole number ``0..MAX_COUNT``, or a fraction written ``"n/d"`` within bounded digits and that range."""
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if not match:
            raise ValueError("%s: not a fraction n/d" % where)
        fraction = Fraction(int(match.group(1)), int(match.group(2)))
        if fraction > MAX_COUNT:
            raise ValueError("%s: a number above %d" % (where, MAX_COUNT))
        return fraction
    return _count(value, where)


def _totals(mapping: Dict[str, Totals]) -> Dict[str, List[int | str]]:
    return {key: exact_list(totals) for key, totals in mapping.items()}


# -- shapes ------------------------------------------------------------------


def _typed(value: Any, kind: Type[T], where: str) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError("%s: of type %s, not %s" % (where, type(value).__name__, kind.__name__))
    return value


def _list(value: Any, where: str) -> List[Any]:
    return _typed(value, list, where)


def _excerpt(value: Any) -> str:
    """A short, escaped excerpt of a number found in a checkpoint, for a reason logged (never a string)."""
    text = repr(value) if isinstance(value, float) else str(value) if isinstance(value, int) else "?"
    return ascii(text[:24] + ("..." if len(text) > 24 else ""))


def _dict(value: Any, where: str) -> Dict[str, Any]:
    return _typed(value, dict, where)


def _str(value: Any, where: str) -> str:
    return _typed(value, str, where)


def _count(value: Any, where: str) -> int:
    """A whole number ``0..MAX_COUNT``."""
    if not 0 <= _typed(value, int, where) <= MAX_COUNT:
        raise ValueError("%s: not a count 0..2^53-1: %s" % (where, _excerpt(value)))
    return int(value)


def _offset(value: Any, where: str) -> int:
    if not 0 <= _typed(value, int, where) <= MAX_OFFSET:
        raise ValueError("%s: not an offset 0..2^50: %s" % (where, _excerpt(value)))
    return int(value)


def _number(value: Any, where: str) -> float:
    """A finite number (NaN and infinities are refused by the JSON parser already)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s: not a number but a %s" % (where, type(value).__name__))
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("%s: a number too large for a float" % where) from None
    if not math.isfinite(number):
        raise ValueError("%s: not a finite number" % where)
    return number


def _skew(value: Any, where: str) -> float:
    """A clock skew in seconds: finite, not negative."""
    skew = _number(value, where)
    if skew < 0:
        raise ValueError("%s: not a skew: %s" % (where, _excerpt(skew)))
    return skew


def _counts(value: Any, where: str, names: Optional[Set[str] | frozenset] = None) -> Dict[str, int]:
    """Counts by name, the names among ``names``."""
    counts = _dict(value, where)
    if names is not None and not set(counts) <= names:
        raise ValueError("%s: a name other than %s" % (where, ", ".join(sorted(names))))
    return {key: _count(count, where) for key, count in counts.items()}


def _label(value: Any, where: str, max_length: Optional[int]) -> str:
    """A label value as the budgets give them: valid UTF-8, at most ``max_length`` characters."""
    label = _str(value, where)
    if max_length is not None and len(label) > max_length:
        raise ValueError("%s: a label value longer than max_label_length %d" % (where, max_length))
    if not is_utf8(label):
        raise ValueError("%s: a label value that is not valid UTF-8" % where)
    return label


def _reason(value: Any, where: str) -> str:
    reason = _str(value, where)
    if len(reason) > MAX_REASON or not is_utf8(reason):
        raise ValueError("%s: longer than %d characters, or not valid UTF-8" % (where, MAX_REASON))
    return reason


def _path(value: Any, where: str) -> str:
    """An absolute, normalised path as a scan gives them, that ``os`` functions take (no NUL, encodable)."""
    path = _str(value, where)
    if len(path) > MAX_PATH or "\0" in path or not path.startswith("/") or os.path.normpath(path) != path:
        raise ValueError("%s: not an absolute, normalised path of at most %d characters" % (where, MAX_PATH))
    try:
        os.fsencode(path)
    except UnicodeError:
        raise ValueError("%s: a path that is not a file name" % where) from None
    return path


def _latin1(value: Any, most: int, where: str) -> str:
    """Bytes saved as a latin-1 string (``tailer._text``), at most ``most`` of them."""
    text = _str(value, where)
    if len(text) > most:
        raise ValueError("%s: more than %d bytes" % (where, most))
    try:
        text.encode("latin-1")
    except UnicodeError:
        raise ValueError("%s: not bytes as saved" % where) from None
    return text


def _pair(value: Any, where: str) -> Tuple[int, float]:
    """(time, value) of a gauge record."""
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("%s: not a (time, value) pair" % where)
    return _count(value[0], where), _number(value[1], where)


def _optional(value: Any, check: Any, where: str) -> Any:
    return None if value is None else check(value, where)


def _keys(raw: Dict[str, Any], expected: Set[str], where: str) -> None:
    if set(raw) != expected:
        raise ValueError("%s: keys other than %s" % (where, ", ".join(sorted(expected))))
