"""The Rush reader's state as bytes, for a checkpoint: JSON, with exact totals and raw bytes kept exact.

JSON rather than pickle: a checkpoint is read back by the daemon, and a file
in a state directory must not be able to run code in it. Everything loaded
is checked against the shape ``dump`` writes (types, list lengths, bounded
numbers) before the reader uses any of it: a checkpoint that does not fit
raises ``ValueError`` (the reader then reads its files from the start), it
never breaks a later sync.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple, Type, TypeVar

from exporter.budget import LabelBudget
from exporter.rush.config import RushConfig
from exporter.rush.records import TOTALS_SLOTS
from exporter.rush.tally import BREAKDOWN_WALL, Exact, Timed

#: Host totals: frames per status, then wall, system and user seconds; per user or title: frames, then wall.
HOST_SLOTS = TOTALS_SLOTS
BREAKDOWN_SLOTS = BREAKDOWN_WALL + 1
#: A fraction as saved: digits enough for any sum of floats (a float's exact value has at most ~770 digits),
#: few enough that parsing one costs nothing (``Fraction("1e999999999")`` would take seconds).
_FRACTION = re.compile(r"\A([0-9]{1,1000})/([1-9][0-9]{0,999})\Z")
T = TypeVar("T")
Totals = List[Exact]


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
            "hosts": _totals(self.hosts), "users": _totals(self.users), "titles": _totals(self.titles),
            "truncated": self.truncated, "over_budget": self.over_budget,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> FileState:
        """The state ``to_json`` gave; ValueError (naming the first field that does not fit) for anything else."""
        raw = _dict(raw, where)
        _keys(raw, {f.name for f in dataclasses.fields(cls)}, where)
        at = where + "."
        utilization = _optional(raw["utilization"], _pair, at + "utilization")
        online = _optional(raw["online"], _pair, at + "online")
        return cls(
            up=_typed(raw["up"], bool, at + "up"),
            down_reason=_optional(raw["down_reason"], _str, at + "down_reason"),
            last_success_time=_optional(raw["last_success_time"], _number, at + "last_success_time"),
            errors=_count(raw["errors"], at + "errors"),
            malformed=_count(raw["malformed"], at + "malformed"),
            bytes=_count(raw["bytes"], at + "bytes"),
            lines=_count(raw["lines"], at + "lines"),
            seen_host=_optional(raw["seen_host"], _str, at + "seen_host"),
            records=_counts(raw["records"], at + "records"),
            daemon_starts=_count(raw["daemon_starts"], at + "daemon_starts"),
            utilization=utilization,
            online=None if online is None else (online[0], int(online[1])),
            last_record_time=_optional(raw["last_record_time"], _count, at + "last_record_time"),
            hosts=_to_totals(raw["hosts"], HOST_SLOTS, at + "hosts"),
            users=_to_totals(raw["users"], BREAKDOWN_SLOTS, at + "users"),
            titles=_to_totals(raw["titles"], BREAKDOWN_SLOTS, at + "titles"),
            truncated=_counts(raw["truncated"], at + "truncated"),
            over_budget=_counts(raw["over_budget"], at + "over_budget"),
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
    def from_json(cls, raw: Any, where: str) -> SavedBudget:
        raw = _dict(raw, where)
        _keys(raw, set(cls._fields), where)
        return cls(_strs(raw["admitted"], where + ".admitted"), _count(raw["overflowed"], where + ".overflowed"),
                   _count(raw["truncated"], where + ".truncated"))

    def restore(self, budget: LabelBudget) -> None:
        """Admits again what was admitted (the budget is the one configured then: the config is the same)."""
        budget.readmit(self.admitted, self.overflowed, self.truncated)


class SavedReader(NamedTuple):
    """Everything a checkpoint of the reader holds, checked (``load``); ``tailer`` is checked by the tailer."""

    version: int
    tailer: Dict[str, Any]
    present: Set[str]
    gauge_host: Dict[str, str]
    budgets: Dict[str, SavedBudget]
    files: Dict[str, FileState]

    def to_json(self) -> Dict[str, Any]:
        return {"version": self.version, "tailer": self.tailer, "present": sorted(self.present),
                "gauge_host": self.gauge_host, "budgets": {name: b.to_json() for name, b in self.budgets.items()},
                "files": {label: state.to_json() for label, state in self.files.items()}}


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


def load(data: bytes) -> SavedReader:
    """The state ``dump`` wrote; ValueError (saying where) if it does not have that shape."""
    raw = _dict(json.loads(data), "state")
    _keys(raw, set(SavedReader._fields), "state")
    return SavedReader(
        version=_count(raw["version"], "version"),
        tailer=_dict(raw["tailer"], "tailer"),
        present=set(_strs(raw["present"], "present")),
        gauge_host={key: _str(value, "gauge_host") for key, value in _dict(raw["gauge_host"], "gauge_host").items()},
        budgets={name: SavedBudget.from_json(value, "budgets." + name)
                 for name, value in _dict(raw["budgets"], "budgets").items()},
        files={label: FileState.from_json(value, "files[%r]" % label[:200])
               for label, value in _dict(raw["files"], "files").items()},
    )


# -- exact numbers -----------------------------------------------------------


def exact_list(values: Totals) -> List[int | str]:
    """Whole numbers as they are, fractions as ``"n/d"``."""
    return [value if isinstance(value, int) else "%d/%d" % (value.numerator, value.denominator) for value in values]


def to_exact(value: Any, where: str) -> Exact:
    """A non-negative whole number, or a fraction written ``"n/d"`` within bounded digits."""
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            return Fraction(int(match.group(1)), int(match.group(2)))
        raise ValueError("%s: not a fraction n/d: %r" % (where, value[:40]))
    return _count(value, where)


def _totals(mapping: Dict[str, Totals]) -> Dict[str, List[int | str]]:
    return {key: exact_list(totals) for key, totals in mapping.items()}


def _to_totals(raw: Any, slots: int, where: str) -> Dict[str, Totals]:
    totals = {}
    for key, values in _dict(raw, where).items():
        if not isinstance(values, list) or len(values) != slots:
            raise ValueError("%s[%r]: not a list of %d numbers" % (where, key[:200], slots))
        totals[key] = [to_exact(value, where) for value in values]
    return totals


# -- shapes ------------------------------------------------------------------


def _typed(value: Any, kind: Type[T], where: str) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError("%s: not a %s: %r" % (where, kind.__name__, str(value)[:40]))
    return value


def _dict(value: Any, where: str) -> Dict[str, Any]:
    return _typed(value, dict, where)


def _str(value: Any, where: str) -> str:
    return _typed(value, str, where)


def _count(value: Any, where: str) -> int:
    if _typed(value, int, where) < 0:
        raise ValueError("%s: negative: %d" % (where, value))
    return int(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s: not a number: %r" % (where, str(value)[:40]))
    return float(value)


def _counts(value: Any, where: str) -> Dict[str, int]:
    return {key: _count(count, where) for key, count in _dict(value, where).items()}


def _strs(value: Any, where: str) -> List[str]:
    return [_str(item, where) for item in _typed(value, list, where)]


def _pair(value: Any, where: str) -> Tuple[int, float]:
    """(time, value) of a gauge record."""
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("%s: not a (time, value) pair" % where)
    return _count(value[0], where), _number(value[1], where)


def _optional(value: Any, check: Any, where: str) -> Any:
    return None if value is None else check(value, where)


def _keys(raw: Dict[str, Any], expected: Set[str], where: str) -> None:
    if set(raw) != expected:
        raise ValueError("%s: keys %s, expected %s" % (where, sorted(raw)[:20], sorted(expected)))
