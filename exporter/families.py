"""Metric families made from sorted rows, and the rows kept up to date key by key.

Snapshots hold ``{label values: value}`` mappings; ``counter`` and ``gauge``
turn one into a family sorted by label values, so that the exposition is
stable between renders. Every HELP of data read from files says that it is
a cached value.

The families are prometheus-client's counter and gauge families, but they
are also ``RowFamily``: they keep their label values and values apart and
build Sample objects only when someone asks for ``samples``. The section
renderer tells them apart with ``isinstance`` and reads those directly.

A reader that changes a few keys of a big mapping at a time keeps it as
``LiveRows`` and hands out ``Rows``, an immutable sorted mapping. Two
``Rows`` of one ``LiveRows`` with the same keys share one tuple of label
values, so the renderer knows by identity, in constant time, that only
values changed, and finds which ones by comparing values in C: a render
then costs in proportion to the changed rows, not to the mapping's size
(2,000 hosts, 20 changed: no sort, no Python loop over the rest).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import compress, repeat
from operator import is_not
from typing import (
    Any,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
    cast,
)

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.samples import Sample

LabelValues = Union[str, Tuple[str, ...]]

#: ``\\x`` and two hex digits: how an undecodable byte is written, so a name holding it literally is escaped too.
_BYTE_ESCAPE = re.compile(r"\\x[0-9A-Fa-f]{2}")
#: What the escaping rewrites: a backslash, and a lone surrogate (U+DC80..U+DCFF is an undecodable byte as
#: ``os.fsdecode`` and ``surrogateescape`` give it; any other one stands for its UTF-8-style bytes).
_TO_ESCAPE = re.compile("[\\\\\ud800-\udfff]")


def _escaped(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return "\\x%02x" % (code - 0xDC00)
    return "".join("\\x%02x" % byte for byte in char.encode("utf-8", "surrogatepass"))


def label_value(name: str) -> str:
    """A name taken from outside (a file path, a host, user or title from a file) as a label value: valid
    UTF-8 by construction, and two different names never give one value (docs/metrics.md, "Label values").

    A name that is valid UTF-8 and holds no ``\\x`` followed by two hex digits is its own label value (every
    usual name: nothing changes for it). Any other name is escaped: each backslash doubled, each byte that
    is not UTF-8 (a lone surrogate, as ``os.fsdecode`` and ``surrogateescape`` give one) written ``\\xNN``
    in lowercase hex. An escaped value always holds ``\\xNN`` and an unescaped one never does, and
    escaping is reversible, so the rule is one-to-one.
    """
    if ("\\x" not in name or _BYTE_ESCAPE.search(name) is None) and (name.isascii() or is_utf8(name)):
        return name
    return _TO_ESCAPE.sub(_escaped, name)


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def name_of(value: str) -> bytes:
    """The name's bytes back from its ``label_value`` (the inverse, for tools and tests)."""
    if _BYTE_ESCAPE.search(value) is None:
        return value.encode("utf-8")
    out = bytearray()
    at = 0
    while at < len(value):
        char = value[at]
        if char == "\\" and value[at + 1:at + 2] == "\\":
            out += b"\\"
            at += 2
        elif char == "\\" and _BYTE_ESCAPE.match(value, at):
            out.append(int(value[at + 2:at + 4], 16))
            at += 4
        else:
            out += char.encode("utf-8")
            at += 1
    return bytes(out)


# Mapping is invariant in its keys: a TypeVar lets callers pass {(str, str): int} or {str: float}.
Key = TypeVar("Key", bound=LabelValues)


class Rows(Mapping[Key, Any], Generic[Key]):
    """An immutable mapping of label values to values, sorted by label values.

    ``label_values`` holds each key as a tuple (one-label keys are plain
    strings in the mapping); ``sample_values`` are in the same order. A key
    is looked up by bisection of the sorted keys: no index to build when
    rows come or go.
    """

    __slots__ = ("_keys", "label_values", "sample_values", "base", "touched")

    def __init__(self, keys: Tuple[Key, ...], label_values: Tuple[Tuple[str, ...], ...], values: Tuple[Any, ...],
                 base: Optional[Tuple[Any, ...]] = None, touched: Tuple[int, ...] = ()):
        self._keys = keys
        self.label_values = label_values
        self.sample_values = values
        #: ``LiveRows``: the values of the rows these were made from (the same keys), and the indexes whose
        #: values may differ from them, so a renderer that has ``base`` visits those alone. None: not known.
        self.base = base
        self.touched = touched

    @classmethod
    def of(cls, mapping: Mapping[Key, Any]) -> Rows[Key]:
        """The rows of a plain mapping (sorted once here)."""
        if isinstance(mapping, Rows):
            return mapping
        keys = tuple(sorted(mapping))
        return cls(keys, _label_values(keys), tuple(map(mapping.__getitem__, keys)))

    def where(self, keep: Sequence[bool]) -> Rows[Key]:
        """The rows whose ``keep`` is true (in order)."""
        return Rows(tuple(compress(self._keys, keep)), tuple(compress(self.label_values, keep)),
                    tuple(compress(self.sample_values, keep)))

    def __getitem__(self, key: Key) -> Any:
        at = _position(self._keys, key)
        if at is None:
            raise KeyError(key)
        return self.sample_values[at]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return "Rows(%r)" % dict(zip(self._keys, self.sample_values))


def _position(keys: Sequence[Key], key: Key) -> Optional[int]:
    """Where ``key`` is in the sorted ``keys``, None if it is not there (nor comparable with them)."""
    try:
        at = bisect_left(keys, key)
    except TypeError:  # a key of another shape than the mapping's
        return None
    return at if at < len(keys) and keys[at] == key else None


def _label_values(keys: Sequence[LabelValues]) -> Tuple[Tuple[str, ...], ...]:
    if keys and not isinstance(keys[0], tuple):
        return tuple(map(_as_labels, keys))
    return cast(Tuple[Tuple[str, ...], ...], tuple(keys))  # every key of one mapping has the first one's shape


def _as_labels(key: LabelValues) -> Tuple[str, ...]:
    """A key as its tuple of label values (a one-label key is a plain string)."""
    return key if isinstance(key, tuple) else (key,)


class LiveRows(Generic[Key]):
    """A mapping kept up to date key by key, handed out as ``Rows``.

    Setting a known key changes one value; ``frozen`` then copies the values
    (one C-level copy) and keeps the keys' tuples. A key added is inserted in
    its sorted place, a removed one left out, at the next ``frozen``: list
    moves in C and no index rebuilt (hashing 10,000 keys again costs more
    than the rest), so rows that come and go cost about what they change.
    A key's place is found by bisection once, then kept until rows move.
    Nothing is copied while nothing changed.
    """

    def __init__(self) -> None:
        self._values: List[Any] = []
        #: The places of keys looked up since the rows last moved (filled as they are looked up, emptied by a
        #: ``_rebuild``: a dict lookup for the usual set, a bisection only for the first after a move).
        self._places: Dict[Key, Optional[int]] = {}
        self._added: Dict[Key, Any] = {}
        self._removed = False
        self._frozen: Rows[Key] = Rows((), (), ())
        self._changed = False
        self._touched: Set[int] = set()  # indexes set to another value since the last ``frozen``

    def set(self, key: Key, value: Any) -> None:
        at = self._place(key)
        if at is None:
            if not _same(self._added.get(key, _ABSENT), value):
                self._added[key] = value
                self._changed = True
        elif not _same(self._values[at], value):
            self._values[at] = value
            self._touched.add(at)
            self._changed = True

    def __contains__(self, key: Key) -> bool:
        """Whether ``key`` has a value now (set and not discarded since)."""
        if key in self._added:
            return True
        at = self._place(key)
        return at is not None and self._values[at] is not _ABSENT

    def discard(self, key: Key) -> None:
        if self._added.pop(key, _ABSENT) is not _ABSENT:
            return
        at = self._place(key)
        if at is not None and self._values[at] is not _ABSENT:
            self._values[at] = _ABSENT
            self._removed = self._changed = True

    def _place(self, key: Key) -> Optional[int]:
        """The key's index in the frozen rows (None: not among them), looked up once until the rows move: a row
        discarded while absent, as a host's records of a kind it never had, is a dict lookup too."""
        try:
            return self._places[key]
        except KeyError:
            at = self._places[key] = _position(self._frozen._keys, key)
            return at

    def frozen(self) -> Rows[Key]:
        if not self._changed:
            return self._frozen
        if self._added or self._removed:
            self._rebuild()
        else:
            frozen = self._frozen
            self._frozen = Rows(frozen._keys, frozen.label_values, tuple(self._values), frozen.sample_values,
                                tuple(self._touched))
        self._changed = False
        self._touched.clear()
        return self._frozen

    def _rebuild(self) -> None:
        """Keys were added or removed: removed ones are left out and added ones inserted in their sorted
        places, so the keys are never sorted again (a farm whose hosts appear one by one)."""
        frozen = self._frozen
        keys, labels, values = list(frozen._keys), list(frozen.label_values), self._values
        if self._removed:
            present = list(map(is_not, values, repeat(_ABSENT)))
            keys, labels, values = (list(compress(column, present)) for column in (keys, labels, values))
        for key in sorted(self._added):
            at = bisect_left(keys, key)
            keys.insert(at, key)
            labels.insert(at, _as_labels(key))
            values.insert(at, self._added[key])
        self._frozen = Rows(tuple(keys), tuple(labels), tuple(values))
        self._values, self._places, self._added, self._removed = values, {}, {}, False


_ABSENT: Any = object()


def _same(old: Any, new: Any) -> bool:
    """Whether ``new`` prints as ``old`` does: equal, of one type, and of one sign when zero."""
    return old is new or (type(old) is type(new) and old == new and (old != 0 or str(old) == str(new)))


class RowFamily:
    """Mixin over a prometheus-client family: ``rows`` first, ``samples`` made from them on demand.

    ``rows`` are sorted by label values, one sample each, named
    ``sample_name`` with labels ``label_names``: what the renderer needs to
    format and to compare a family without building a Sample per row.
    """

    rows: Rows[Any] = Rows((), (), ())
    label_names: Tuple[str, ...] = ()
    sample_name: str = ""
    _samples: Optional[List[Sample]] = None

    def _set_rows(self, labels: Sequence[str], samples: Mapping[Key, float], sample_name: str) -> None:
        self.label_names = tuple(labels)
        self.sample_name = sample_name
        self.rows = Rows.of(samples)

    @property
    def samples(self) -> List[Sample]:
        if self._samples is None:
            self._samples = [Sample(self.sample_name, dict(zip(self.label_names, values)), value, None)
                             for values, value in zip(self.rows.label_values, self.rows.sample_values)]
        return self._samples

    @samples.setter
    def samples(self, value: List[Sample]) -> None:
        # prometheus-client's constructor sets [] first; rows then stand for the samples.
        self._samples = value or None


class RowCounter(RowFamily, CounterMetricFamily):
    pass


class RowGauge(RowFamily, GaugeMetricFamily):
    pass


def counter(name: str, doc: str, labels: Sequence[str], samples: Mapping[Key, float]) -> RowCounter:
    family = RowCounter(name, doc, labels=labels)
    family._set_rows(labels, samples, family.name + "_total")
    return family


def gauge(name: str, doc: str, labels: Sequence[str], samples: Mapping[Key, float]) -> RowGauge:
    family = RowGauge(name, doc, labels=labels)
    family._set_rows(labels, samples, family.name)
    return family


#: A family made of rows by ``counter`` or ``gauge``.
RowMetric = Union[RowCounter, RowGauge]


def like(family: RowMetric, rows: Rows[Any]) -> RowMetric:
    """A family of ``family``'s name, HELP, type and label names holding ``rows`` (shared, not copied)."""
    kind = RowCounter if isinstance(family, RowCounter) else RowGauge
    made = kind(family.name, family.documentation, labels=family.label_names, unit=family.unit)
    made.label_names, made.sample_name, made.rows = family.label_names, family.sample_name, rows
    return made
