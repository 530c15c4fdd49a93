"""The pre-rendered exposition that every scrape is served from.

Rendering costs about 10 µs a series under the GIL, so it happens once per
change of data, never per scrape, and only for what changed: a family whose
rows equal its previous render's is reused as it was, and a changed family
formats only its changed lines. The exposition is made of named sections
(one per source, the exporter's own metrics, the process metrics); a change
re-renders only its section and publishes the sections as one immutable
``Exposition``. A scrape reads one reference, so concurrent scrapes each get
one consistent exposition and never touch files or parse anything.

The bodies (text 0.0.4, OpenMetrics, gzip copies of both) are made from the
families' bytes on the first scrape that asks for each: data changes many
times between two scrapes (every 15-60 s), so joining and compressing on
every change would be wasted. The gzip bodies are kept with the exposition;
the uncompressed ones are joined per scrape (see ``Exposition``). A gzip
body is one stream over the whole text (``GZIP_LEVEL``): 8 ms at 30,000
series, 4-8x smaller than the text.

New rows are formatted as bytes here (``_row_lines``), about 60 times
faster than through prometheus-client, in exactly its format (tested
against it); families that are not plain rows are formatted by it.
"""

from __future__ import annotations

import array
import copy
import functools
import logging
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from operator import add, is_, is_not, itemgetter, ne
from typing import Dict, Hashable, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, cast

from prometheus_client.exposition import generate_latest as render_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.families import RowFamily, is_utf8
from exporter.logs import RateLimitedLog

log = logging.getLogger(__name__)

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_EOF = b"# EOF\n"
#: Paid once per exposition, in the first gzip scrape: 8 ms for the 2.2 MB of 30,000 series (level 3: 9 ms, 6: 19 ms,
#: for 11% and 30% smaller bodies).
GZIP_LEVEL = 1


def _gzip(parts: Sequence[bytes]) -> bytes:
    """One gzip member of the joined ``parts`` (fed piece by piece: the text is never joined for it)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join([*map(compressor.compress, parts), compressor.flush()])


class _Joined:
    """Text and OpenMetrics bodies joined from ``parts`` when asked, not kept: the parts hold those bytes."""

    def parts(self, openmetrics: bool) -> List[bytes]:
        raise NotImplementedError

    @property
    def text(self) -> bytes:
        return b"".join(self.parts(False))

    @property
    def openmetrics(self) -> bytes:
        return b"".join(self.parts(True))


@dataclass(frozen=True)
class Section(_Joined):
    """One rendered section: its families' bytes, joined only when a scrape asks.

    The families' bytes are shared with the previous render of the section
    wherever they did not change, so a render copies nothing unchanged and
    the section's text exists once in memory (the OpenMetrics text shares
    the lines it has in common with it).
    """

    families: Tuple[_RenderedFamily, ...]
    series: int
    render_seconds: float
    #: (family, series) left out of this render because they could not be rendered (``SectionRenderer``).
    dropped: Tuple[Tuple[str, int], ...] = ()

    def parts(self, openmetrics: bool) -> List[bytes]:
        """The section's bytes in order, in pieces (a header, then a family's lines, ...)."""
        parts: List[bytes] = []
        for family in self.families:
            parts += family.parts(openmetrics)
        return parts


class PlacedSection(Protocol):
    """What the exporter's own metrics and the status page read of a section in the cache."""

    @property
    def series(self) -> int: ...

    @property
    def render_seconds(self) -> float: ...

    @property
    def dropped(self) -> Tuple[Tuple[str, int], ...]: ...


@dataclass(frozen=True, eq=False)
class Exposition(_Joined):
    """One consistent set of sections; each gzip body is made on first use, then kept.

    Immutable for its readers: every scrape of this exposition gets the
    same bytes. Two scrapes asking at once may both make a gzip body; the
    results are equal. The uncompressed bodies are joined per scrape and not
    kept: the sections hold that text already, and a kept copy would cost as
    much memory again (3 MB at 34,000 series) to save a copy of well under a
    millisecond.
    """

    sections: Tuple[Section, ...]
    _gzip: Dict[bool, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def parts(self, openmetrics: bool) -> List[bytes]:
        parts = [part for section in self.sections for part in section.parts(openmetrics)]
        return parts + [_EOF] if openmetrics else parts

    def gzip(self, openmetrics: bool) -> bytes:
        """The gzip body, made once (not ``cached_property``: before Python 3.12 its lock is one for every
        instance, so a scrape of a new exposition would wait for another's compression)."""
        body = self._gzip.get(openmetrics)
        if body is None:
            body = self._gzip.setdefault(openmetrics, _gzip(self.parts(openmetrics)))
        return body

    def has_gzip(self, openmetrics: bool) -> bool:
        """Whether the gzip body of that format was made (then a gzip scrape of it costs a reference)."""
        return openmetrics in self._gzip

    def compressed_formats(self) -> Tuple[bool, ...]:
        """The formats (OpenMetrics?) whose gzip body was made: the ones scrapers asked for."""
        return tuple(self._gzip)

    def body(self, openmetrics: bool, compressed: bool) -> bytes:
        if compressed:
            return self.gzip(openmetrics)
        return self.openmetrics if openmetrics else self.text


class _Families:
    """Adapter: prometheus-client renders anything with ``collect()``."""

    def __init__(self, families: Sequence[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


Line = Tuple[bytes, bytes]  # one sample's text and OpenMetrics line (one object when they are equal)


def _formatted(family: Metric, samples: List[Sample]) -> Line:
    """prometheus-client's text and OpenMetrics output for ``family`` holding only ``samples``."""
    part = Metric(family.name, family.documentation, family.type, family.unit)
    part.samples = samples
    openmetrics = render_openmetrics(_Families([part]))
    return render_text(_Families([part])), openmetrics[: -len(_EOF)] if openmetrics.endswith(_EOF) else openmetrics


def _line(family: Metric, header: Line, sample: Sample) -> Line:
    """One sample's text and OpenMetrics lines, formatted by prometheus-client."""
    text_line, openmetrics_line = _formatted(family, [sample])
    text_line, openmetrics_line = text_line[len(header[0]):], openmetrics_line[len(header[1]):]
    return text_line, text_line if openmetrics_line == text_line else openmetrics_line


def _lines(family: Metric, header: Line, samples: List[Sample]) -> List[Line]:
    """Each sample's text and OpenMetrics lines, from one prometheus-client render of them all.

    A call per sample costs about ten times more (a first render of a farm's Rush section took a third of a
    1,000,000-line cold read). Lines end in a newline and hold no other: the formats escape newlines in label
    values and HELP. A render that does not give one line per sample (samples the text format moves) is
    formatted sample by sample.
    """
    if not samples:
        return []
    text, openmetrics = _formatted(family, samples)
    text_lines = text[len(header[0]):].split(b"\n")[:-1]
    openmetrics_lines = openmetrics[len(header[1]):].split(b"\n")[:-1]
    if len(text_lines) != len(samples) or len(openmetrics_lines) != len(samples):
        return [_line(family, header, sample) for sample in samples]
    lines = []
    for text_line, openmetrics_line in zip(text_lines, openmetrics_lines):
        text_line += b"\n"
        lines.append((text_line, text_line if openmetrics_line + b"\n" == text_line else openmetrics_line + b"\n"))
    return lines


#: A metric or label name written as it is in both formats (prometheus-client changes or quotes any other).
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _escaped(value: str) -> str:
    """A label value as both formats write it (``\\``, ``\n`` and ``\"`` escaped)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _row_lines(family: Metric, labels: Sequence[Hashable], values: Sequence[float],
               rows: Sequence[int]) -> Optional[List[bytes]]:
    """The lines of ``rows`` (one object serves both formats), formatted directly, byte for byte as
    prometheus-client writes them (labels sorted by name); None when a name is not plain (prometheus-client
    formats those). A label value that is not UTF-8 raises, as prometheus-client does."""
    if isinstance(family, RowFamily):
        names = family.label_names
        if not (_PLAIN_NAME.match(family.sample_name) and all(map(_PLAIN_NAME.match, names))):
            return None
        order = sorted(range(len(names)), key=names.__getitem__)
        if not order:
            line = family.sample_name + " %s\n"
            return [(line % floatToGoString(values[row])).encode() for row in rows]
        head = "%s{%s} " % (family.sample_name, ",".join('%s="%%s"' % names[index] for index in order))
        row_labels = cast(Sequence[Sequence[str]], labels)
        return [(head % tuple([_escaped(row_labels[row][index]) for index in order])
                 + floatToGoString(values[row]) + "\n").encode() for row in rows]
    lines = []
    for row in rows:  # a plain family's rows: (sample name, label items)
        name, items = cast(Tuple[str, Tuple[Tuple[str, str], ...]], labels[row])
        if not (_PLAIN_NAME.match(name) and all(_PLAIN_NAME.match(key) for key, _ in items)):
            return None
        pairs = ",".join('%s="%s"' % (key, _escaped(value)) for key, value in sorted(items))
        lines.append(("%s{%s} %s\n" % (name, pairs, floatToGoString(values[row])) if pairs else
                      "%s %s\n" % (name, floatToGoString(values[row]))).encode())
    return lines


def _with_value(line: bytes, old: float, new: float) -> Optional[bytes]:
    """``line``, formatted for the value ``old``, for the value ``new`` instead.

    Both formats print a sample without timestamp or exemplar as its name and
    labels, a space, the value as ``floatToGoString`` writes it, and a
    newline; the part before the value does not depend on it. A line that
    does not end that way gives None, and is formatted by prometheus-client.
    """
    old_end = b" %s\n" % floatToGoString(old).encode()
    if not line.endswith(old_end):
        return None
    return b"%s %s\n" % (line[:-len(old_end)], floatToGoString(new).encode())


def _value_bits(values: Sequence[float]) -> array.array:
    """Each value as the 64 bits of its double, which is all prometheus-client prints of it.

    Equal bits print alike, and compare as integers in C. Values themselves
    would not do: 0.0 == -0.0, yet they print differently.
    """
    return array.array("q", array.array("d", values).tobytes())


def _same_value(old: float, new: float) -> bool:
    return struct.pack("d", old) == struct.pack("d", new)


#: Above this many candidates, changed values are found by comparing every value's bits in C.
_FEW_CANDIDATES = 64


def _changed(old: Sequence[float], new: Sequence[float]) -> Iterable[int]:
    """Indexes of the values that print differently in ``new`` than in ``old`` (of equal length).

    Values kept by a ``LiveRows`` are the same objects unless they changed, so identity (in C) leaves a few
    candidates to compare; values made afresh each time are compared as bits, also in C.
    """
    candidates = list(compress(range(len(new)), map(is_not, old, new)))
    if len(candidates) <= _FEW_CANDIDATES:
        return [index for index in candidates if not _same_value(old[index], new[index])]
    return compress(range(len(new)), map(ne, _value_bits(new), _value_bits(old)))


@dataclass(frozen=True)
class _Lines:
    """The lines of a family in one format: one bytes object and where each line ends, no object per line."""

    body: bytes
    ends: array.array

    @classmethod
    def of(cls, lines: Sequence[bytes]) -> _Lines:
        return cls(b"".join(lines), array.array("L", accumulate(map(len, lines))))

    def __len__(self) -> int:
        return len(self.ends)

    def start(self, index: int) -> int:
        return self.ends[index - 1] if index else 0

    def line(self, index: int) -> bytes:
        return self.body[self.start(index):self.ends[index]]

    def patched(self, changes: Mapping[int, bytes]) -> _Lines:
        """These lines with ``changes`` (index -> new line) written over theirs; the rest is copied in C."""
        view, at, resized = memoryview(self.body), 0, False
        pieces: List[bytes | memoryview] = []
        for index in sorted(changes):
            start, end = self.start(index), self.ends[index]
            pieces += (view[at:start], changes[index])
            at, resized = end, resized or len(changes[index]) != end - start
        pieces.append(view[at:])
        ends = self.ends
        if resized:  # each end from the first resized line on moves by what the lines before it grew, in C
            ends, shift, order = array.array("L", ends), 0, sorted(changes)
            for number, index in enumerate(order):
                shift += len(changes[index]) - (self.ends[index] - self.start(index))
                stop = order[number + 1] if number + 1 < len(order) else len(ends)
                if shift:
                    ends[index:stop] = array.array("L", map(shift.__add__, ends[index:stop]))
        return _Lines(b"".join(pieces), ends)

    def rearranged(self, olds: Sequence[int], runs: Sequence[int], new_lines: Mapping[int, bytes]) -> _Lines:
        """Lines for rows whose old index is ``olds[row]``, ``new_lines[row]`` for rows that are new.

        ``runs`` are where runs of consecutive old indexes start (each new row is a run of its own), and
        the row count at the end: each run of kept lines is copied as one slice, in C.
        """
        view = memoryview(self.body)
        pieces: List[bytes | memoryview] = []
        ends = array.array("L")
        at = 0  # where the next piece starts in the new body
        for start, end in zip(runs, runs[1:]):
            line = new_lines.get(start)
            if line is not None:
                pieces.append(line)
                at += len(line)
                ends.append(at)
            else:  # the run's old ends, moved to where the run now starts (in C)
                first, last = olds[start], olds[end - 1]
                pieces.append(view[self.start(first):self.ends[last]])
                ends.extend(map((at - self.start(first)).__add__, self.ends[first:last + 1]))
                at = ends[-1]
        return _Lines(b"".join(pieces), ends)


@dataclass(frozen=True)
class _RenderedFamily:
    """A family as last rendered: what its lines were made from, and its lines.

    ``labels`` and ``values`` are the rows the lines were made from (a
    RowFamily's own tuples, shared, so an unchanged family is known by
    identity); None for a family formatted anew every time. ``openmetrics``
    is None when its OpenMetrics lines are its text lines (every counter
    and gauge of plain samples): one copy of the lines serves both.
    """

    header: Line
    label_names: Tuple[str, ...]
    labels: Optional[Sequence[Hashable]]
    values: Sequence[float]
    text: _Lines
    openmetrics: Optional[_Lines]
    series: int

    @classmethod
    def of(cls, header: Line, label_names: Tuple[str, ...], labels: Optional[Sequence[Hashable]],
           values: Sequence[float], lines: Sequence[Line]) -> _RenderedFamily:
        text, openmetrics = list(map(itemgetter(0), lines)), list(map(itemgetter(1), lines))
        shared = all(map(is_, text, openmetrics))
        return cls(header, label_names, labels, values, _Lines.of(text), None if shared else _Lines.of(openmetrics),
                   len(lines))

    @classmethod
    def whole(cls, header: Line, family: Metric) -> _RenderedFamily:
        """A family formatted by prometheus-client in one piece (its lines are not rows: never patched)."""
        text, openmetrics = _formatted(family, family.samples)
        return cls(header, (), None, (), _Lines.of([text[len(header[0]):]]),
                   _Lines.of([openmetrics[len(header[1]):]]), len(family.samples))

    def parts(self, openmetrics: bool) -> Tuple[bytes, bytes]:
        if openmetrics:
            return self.header[1], (self.openmetrics or self.text).body
        return self.header[0], self.text.body

    def same_rows(self, label_names: Tuple[str, ...], labels: Sequence[Hashable]) -> bool:
        """Whether ``labels`` are this family's rows, in the same order (then only values may differ)."""
        return self.labels is not None and self.label_names == label_names and (
            self.labels is labels or self.labels == labels)

    def by_labels(self, label_names: Tuple[str, ...]) -> Dict[Hashable, int]:
        """Index of each row by its labels (none when the label names changed)."""
        if self.labels is None or self.label_names != label_names:
            return {}
        return dict(zip(self.labels, range(len(self.labels))))

    def line_for(self, index: int, value: float) -> Optional[Line]:
        """The lines of row ``index`` made for ``value``; None if they cannot be."""
        text = self.text.line(index)
        openmetrics = text if self.openmetrics is None else self.openmetrics.line(index)
        old = self.values[index]
        if _same_value(old, value):
            return text, openmetrics
        new_text = _with_value(text, old, value)
        new_openmetrics = new_text if self.openmetrics is None else _with_value(openmetrics, old, value)
        if new_text is None or new_openmetrics is None:
            return None
        return new_text, new_openmetrics

    def with_lines(self, values: Sequence[float], changes: Mapping[int, Line]) -> _RenderedFamily:
        """This family with new ``values`` whose changed rows' lines are ``changes`` (none: the same lines)."""
        if not changes:
            return _RenderedFamily(self.header, self.label_names, self.labels, values, self.text, self.openmetrics,
                                   self.series)
        text = self.text.patched({index: line[0] for index, line in changes.items()})
        openmetrics = self.openmetrics
        if openmetrics is not None or any(line[1] is not line[0] for line in changes.values()):
            openmetrics = (openmetrics or self.text).patched({index: line[1] for index, line in changes.items()})
        return _RenderedFamily(self.header, self.label_names, self.labels, values, text, openmetrics, self.series)


def _touched_since(family: Metric, values: Sequence[float]) -> Optional[Sequence[int]]:
    """The indexes of ``family``'s rows whose values may differ from ``values``, when its rows were made from
    rows holding ``values`` (``Rows.base``: a ``LiveRows`` whose keys stayed); None when not known."""
    if isinstance(family, RowFamily) and family.rows.base is values:
        return family.rows.touched
    return None


#: Samples that prometheus-client's text format moves to the end of their family, under a header of their own.
_MOVED_SUFFIXES = ("_created", "_gsum", "_gcount")


def _rows(family: Metric) -> Optional[Tuple[Tuple[str, ...], Sequence[Hashable], Sequence[float]]]:
    """Label names, labels and values of each line of ``family``; None when a sample is more than labels and a
    number.

    A timestamp, an exemplar or a native histogram is not part of a row, and
    the text format moves ``_created``, ``_gsum`` and ``_gcount`` samples to
    the end of their family, so such a family is formatted anew, whole, each
    time.
    """
    if isinstance(family, RowFamily):
        return family.label_names, family.rows.label_values, family.rows.sample_values
    samples = family.samples
    moved = {family.name + suffix for suffix in _MOVED_SUFFIXES}
    if not all(sample.timestamp is None and sample.exemplar is None and isinstance(sample.value, (int, float))
               and sample.name not in moved for sample in samples):
        return None
    return (), [(sample.name, tuple(sample.labels.items())) for sample in samples], [s.value for s in samples]


class SectionRenderer:
    """Renders one section, formatting only what changed since its previous render.

    prometheus-client's output for a family is its HELP/TYPE header followed
    by one line per sample, in order (the header is still formatted by it,
    once per family; the lines are formatted here). Each family's rows and lines are kept
    from the previous render: a family whose values are the same objects
    (a ``LiveRows`` that did not change) or equal (one C-level comparison)
    is reused as it was; in a family whose rows are the same and values
    changed, only the changed rows' lines are written (the new value into
    the old line) and the rest is copied in C; a family with new rows keeps
    the start of every line it had, so only new label sets are formatted.
    Output is byte-for-byte what prometheus-client
    renders (tested). Only the latest render is kept.
    """

    def __init__(self, strict: bool = False) -> None:
        """``strict``: a family that cannot be rendered raises, instead of being rendered without the series that
        cannot be (the served exposition is not strict: one series must never fail its section)."""
        self._headers: Dict[Tuple[str, str, str, str], Line] = {}
        self._families: Dict[Tuple[object, ...], _RenderedFamily] = {}
        self._strict = strict
        self._failure_log = RateLimitedLog(log)
        #: The family objects last rendered: a reader that hands out the same object again (its snapshot did
        #: not change) gets its render back without a look at its samples (an info family is not rows).
        self._rendered_from: Dict[Tuple[object, ...], Metric] = {}

    def render(self, families: Iterable[Metric]) -> Section:
        started = time.perf_counter()
        rendered: Dict[Tuple[object, ...], _RenderedFamily] = {}
        rendered_from: Dict[Tuple[object, ...], Metric] = {}
        occurrences: Dict[Tuple[str, str, str, str], int] = {}
        dropped: Dict[str, int] = {}
        for family in families:
            header_key = (family.name, family.type, family.documentation, family.unit)
            occurrence = occurrences[header_key] = occurrences.get(header_key, -1) + 1
            key = (*header_key, occurrence)  # a section may hold two families of one name (two readers)
            previous = self._families.get(key)
            if previous is not None and self._rendered_from.get(key) is family:
                rendered[key], rendered_from[key] = previous, family
                continue
            try:
                rendered[key] = self._render_family(family, previous)
                rendered_from[key] = family  # only a whole render is reused: a partial one is counted each time
            except Exception as exc:  # one family must not fail its section (re-raised when strict)
                if self._strict:
                    raise
                left_out, part = self._renderable_part(family, previous, exc)
                if part is not None:
                    rendered[key] = part
                if left_out:
                    dropped[family.name] = dropped.get(family.name, 0) + left_out
        self._families, self._rendered_from = rendered, rendered_from
        return Section(families=tuple(rendered.values()), series=sum(f.series for f in rendered.values()),
                       render_seconds=time.perf_counter() - started, dropped=tuple(sorted(dropped.items())))

    def _renderable_part(self, family: Metric, previous: Optional[_RenderedFamily],
                         exc: Exception) -> Tuple[int, Optional[_RenderedFamily]]:
        """A family that could not be rendered, without the samples that cannot be (label values that are not
        UTF-8): how many were left out, and the render of the rest (None: the family is left out whole).

        Label values are made valid where they enter (``families.label_value``); this is the safety net for
        what still gets through, so one bad series fails alone, never its family's section."""
        part = _without_unencodable(family)
        kept: Optional[_RenderedFamily] = None
        if part is not None:
            try:
                kept = self._render_family(part, previous)
            except Exception as again:  # noqa: BLE001
                exc = again
        series = len(family.rows) if isinstance(family, RowFamily) else len(family.samples)
        left_out = series - (0 if kept is None else kept.series)
        if left_out:
            self._failure_log.warning(family.name, "series left out of the exposition: they cannot be rendered",
                                      family=family.name, series=left_out,
                                      error="%s: %s" % (type(exc).__name__, str(exc)[:300]))
        return left_out, kept

    def _render_family(self, family: Metric, previous: Optional[_RenderedFamily]) -> _RenderedFamily:
        rows = _rows(family)
        header = self._header(family)
        if rows is None:
            return _RenderedFamily.whole(header, family)
        label_names, labels, values = rows
        if previous is not None and previous.same_rows(label_names, labels):
            if previous.values is values:
                return previous
            return self._with_values(family, header, previous, values, _touched_since(family, previous.values))
        return self._rearranged(family, header, previous, label_names, labels, values)

    def _with_values(self, family: Metric, header: Line, previous: _RenderedFamily, values: Sequence[float],
                     touched: Optional[Sequence[int]] = None) -> _RenderedFamily:
        """The usual change (counters went up): only the rows whose values changed are visited; ``touched``:
        the only rows whose values may have changed, when the family's rows say (else all are compared in C)."""
        changes: Dict[int, Line] = {}
        changed = (_changed(previous.values, values) if touched is None else
                   [index for index in touched if not _same_value(previous.values[index], values[index])])
        for index in changed:
            value = values[index]
            changes[index] = (previous.line_for(index, value)
                              or self._new_lines(family, header, cast(Sequence[Hashable], previous.labels), values,
                                                 [index])[0])
        if changes:
            return previous.with_lines(values, changes)
        # Kept with the values it was given, so that the next render knows them by identity (``Rows.base``,
        # ``previous.values is values``) instead of comparing every row again.
        return previous if previous.values is values else previous.with_lines(values, {})

    def _rearranged(self, family: Metric, header: Line, previous: Optional[_RenderedFamily],
                    label_names: Tuple[str, ...], labels: Sequence[Hashable],
                    values: Sequence[float]) -> _RenderedFamily:
        """A family whose rows changed (a host appeared): the kept rows' lines are copied in runs, only new rows
        are formatted, then changed values are written in as usual."""
        known = {} if previous is None else previous.by_labels(label_names)
        if not known or not labels or previous is None or previous.labels is None:
            return _RenderedFamily.of(header, label_names, labels, values,
                                      self._new_lines(family, header, labels, values, range(len(values))))
        absent = len(previous.labels) + 1  # neither a kept index nor one past a kept index
        olds = list(map(known.get, labels, repeat(absent)))
        runs = [0, *compress(range(1, len(olds)), map(ne, olds[1:], map(add, olds, repeat(1)))), len(olds)]
        new_rows = [row for row in runs[:-1] if olds[row] == absent]
        lines = dict(zip(new_rows, self._new_lines(family, header, labels, values, new_rows)))
        text = previous.text.rearranged(olds, runs, {row: line[0] for row, line in lines.items()})
        openmetrics = None
        if previous.openmetrics is not None or any(line[1] is not line[0] for line in lines.values()):
            openmetrics = (previous.openmetrics or previous.text).rearranged(
                olds, runs, {row: line[1] for row, line in lines.items()})
        kept_values = [*previous.values, 0.0, 0.0]  # the two past the end are replaced by new rows' values
        moved_values = list(map(kept_values.__getitem__, olds))
        for row in lines:
            moved_values[row] = values[row]
        moved = _RenderedFamily(header, label_names, labels, moved_values, text, openmetrics, len(olds))
        return self._with_values(family, header, moved, values)

    def _new_lines(self, family: Metric, header: Line, labels: Sequence[Hashable], values: Sequence[float],
                   rows: Sequence[int]) -> List[Line]:
        """The lines of ``rows``: formatted directly, or by prometheus-client when a name is not plain."""
        direct = _row_lines(family, labels, values, rows)
        if direct is not None:
            return [(line, line) for line in direct]
        return _lines(family, header, [self._sample(family, row, labels, values[row]) for row in rows])

    @staticmethod
    def _sample(family: Metric, index: int, labels: Optional[Sequence[Hashable]], value: float) -> Sample:
        if isinstance(family, RowFamily) and labels is not None:
            return Sample(family.sample_name, dict(zip(family.label_names, cast(Tuple[str, ...], labels[index]))),
                          value)
        return family.samples[index]

    def _header(self, family: Metric) -> Line:
        key = (family.name, family.type, family.documentation, family.unit)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = _formatted(family, [])
        return header


def _without_unencodable(family: Metric) -> Optional[Metric]:
    """A copy of ``family`` without the samples whose label values are not UTF-8; None if it has none."""
    if isinstance(family, RowFamily):
        rows = family.rows
        keep = [all(map(is_utf8, labels)) for labels in rows.label_values]
        if all(keep):
            return None
        part = copy.copy(family)
        part.rows = rows.where(keep)
        part._samples = None
        return part
    samples = [sample for sample in family.samples if all(map(is_utf8, sample.labels.values()))]
    if len(samples) == len(family.samples):
        return None
    plain = copy.copy(family)
    plain.samples = samples
    return plain


def render_section(families: Iterable[Metric]) -> Section:
    """A one-off render (no previous render to reuse); raises if a family cannot be rendered (``wholefile`` checks
    each file's data with it, so that such data fails its own file)."""
    return SectionRenderer(strict=True).render(families)


class ExpositionCache:
    """Holds the latest render of each section and publishes them, in a fixed order, as one Exposition."""

    def __init__(self, order: Sequence[str]):
        self._order = list(order)
        self._sections: Dict[str, Section] = {}
        self._lock = threading.Lock()
        self._current = Exposition(())

    @property
    def current(self) -> Exposition:
        return self._current

    def sections(self) -> Mapping[str, Section]:
        """The rendered sections, in exposition order."""
        current = self._sections
        return {name: current[name] for name in self._order if name in current}

    def update(self, changes: Mapping[str, Section]) -> None:
        """Replaces sections and publishes them atomically; no body is made until a scrape asks."""
        with self._lock:
            self._sections = sections = {**self._sections, **changes}
            self._current = Exposition(tuple(sections[name] for name in self._order if name in sections))


#: An element of Accept or Accept-Encoding: its token and its parameters, which may hold quoted strings.
_ELEMENT = re.compile(r'\s*((?:[^,"]|"(?:[^"\\]|\\.)*")*)\s*(?:,|$)')
_PARAMETER = re.compile(r'\s*;\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
#: RFC 9110 section 12.4.2: "0" to "1" with at most three decimals.
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")


@functools.lru_cache(maxsize=64)  # scrapers send the same header every time
def _weighted(header: str) -> Tuple[Tuple[str, str, float, int], ...]:
    """Each element of an Accept or Accept-Encoding header as (token in lower case, its ``version`` parameter or
    "", q, position).

    Parameter names and tokens are case-insensitive; q is 1 when absent. An element whose q is not a valid
    qvalue (``q=abc``, ``q=2``, ``q=0.0001``) is ignored: never taken as acceptable on a guess."""
    elements = []
    for position, match in enumerate(_ELEMENT.finditer(header[:4096])):
        element = match.group(1)
        if not element:
            continue
        token, _, rest = element.partition(";")
        version, q, valid = "", 1.0, True
        for name, raw in _PARAMETER.findall(";" + rest if rest else ""):
            name, raw = name.lower(), raw.strip()
            if name == "q":
                valid = _QVALUE.match(raw) is not None
                q = float(raw) if valid else 0.0
                break  # parameters after q are accept-ext, not the media type's
            if name == "version":
                version = raw.strip('"')
        if valid:
            elements.append((token.strip().lower(), version, q, position))
    return tuple(elements)


def _quality(elements: Sequence[Tuple[str, str, float, int]],
             ranges: Sequence[Tuple[str, str]]) -> Tuple[float, int, int]:
    """(q, specificity, -position) for what ``ranges`` match, most specific first (RFC 9110 section 12.5.1): each a
    token and the version it must have ("": a range without one). The most specific matching level decides; in
    it the highest q, then the first listed. (0, 0, 0) when nothing matches."""
    for specificity, (name, version) in zip(range(len(ranges), 0, -1), ranges):
        matches = [(q, -position) for token, its_version, q, position in elements
                   if token == name and its_version == version]
        if matches:
            q, position = max(matches)
            return q, specificity, position
    return 0.0, 0, 0


_OPENMETRICS_RANGES = (("application/openmetrics-text", "1.0.0"), ("application/openmetrics-text", ""),
                       ("application/*", ""), ("*/*", ""))
_TEXT_RANGES = (("text/plain", "0.0.4"), ("text/plain", ""), ("text/*", ""), ("*/*", ""))


def wants_openmetrics(accept: str) -> bool:
    """Content negotiation (RFC 9110): OpenMetrics (1.0.0) when the scraper prefers it to the text format (0.0.4).

    A format's q is the one of the most specific range that matches it (``application/openmetrics-text;
    version=1.0.0``, then without a version, ``application/*``, ``*/*``; a range naming another version does not
    match); q=0 means not acceptable. The higher q wins; on equal q the more specific range, then the one listed
    first; the text format when nothing decides (``*/*``, no header, or neither acceptable)."""
    elements = _weighted(accept)
    openmetrics = _quality(elements, _OPENMETRICS_RANGES)
    return openmetrics[0] > 0 and openmetrics > _quality(elements, _TEXT_RANGES)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether to send gzip (RFC 9110 section 12.5.3): its q (``gzip``, its alias ``x-gzip``, else ``*``) is above 0
    and not below the q the header gives sending it unencoded (``identity``, else ``*``; none: no preference).
    Codings are case-insensitive; an empty or absent header means no coding."""
    elements = _weighted(accept_encoding)
    coding = "gzip" if any(element[0] == "gzip" for element in elements) else "x-gzip"
    q = _quality(elements, ((coding, ""), ("*", "")))[0]
    return q > 0 and q >= _quality(elements, (("identity", ""), ("*", "")))[0]
