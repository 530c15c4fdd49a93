"""The pre-rendered exposition that every scrape is served from.

Rendering costs about 10 µs a series under the GIL, so it happens once per
change of data, never per scrape, and only for what changed: a family whose
rows equal its previous render's reuses its bytes, and a changed family
formats only its changed lines. The exposition is made of named sections
(one per source, the exporter's own metrics, the process metrics); a change
re-renders only its section and publishes the sections as one immutable
``Exposition``. A scrape reads one reference, so concurrent scrapes each get
one consistent exposition and never touch files or parse anything.

The bodies (text 0.0.4, OpenMetrics, gzip copies of both) are made from the
sections on the first scrape that asks for each, and kept with the
exposition: data changes many times between two scrapes (every 15-60 s), so
joining and compressing on every change would be wasted.

gzip: each section is deflated once, on the first gzip scrape that needs it,
ending in a sync flush (byte-aligned, not final). The gzip body of the whole
exposition is those pieces in order, an empty final block, and the CRC-32
and length of the joined text: one valid gzip member (the technique of
pigz), so a change of one section never recompresses the others.
"""

from __future__ import annotations

import array
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from operator import eq, itemgetter, ne
from typing import Dict, Hashable, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, cast

from prometheus_client.exposition import generate_latest as render_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.families import RowFamily

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_EOF = b"# EOF\n"
GZIP_LEVEL = 3  # 3x faster than 6 for an 11% larger body (measured on a Rush section); paid in the scrape
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_EMPTY_BLOCK = b"\x03\x00"


def _deflate_piece(data: bytes) -> bytes:
    """Raw deflate of ``data`` ending byte-aligned and not final, so pieces concatenate."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


_EOF_DEFLATED = _deflate_piece(_EOF)


def _gzip_join(parts: Sequence[bytes], pieces: Sequence[bytes]) -> bytes:
    """One gzip member of the joined ``parts`` from the deflated pieces of each, in order."""
    crc = length = 0
    for part in parts:
        crc, length = zlib.crc32(part, crc), length + len(part)
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, length & 0xFFFFFFFF)
    return b"".join([_GZIP_HEADER, *pieces, _FINAL_EMPTY_BLOCK, trailer])


@dataclass(frozen=True)
class Section:
    """One rendered section; its deflated pieces are made when a gzip scrape first needs them."""

    text: bytes
    openmetrics: bytes
    series: int
    render_seconds: float
    # openmetrics? -> deflate piece. Two scrapes may both make one; they are equal, one is kept.
    _deflated: Dict[bool, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def deflated(self, openmetrics: bool) -> bytes:
        piece = self._deflated.get(openmetrics)
        if piece is None:
            piece = _deflate_piece(self.openmetrics if openmetrics else self.text)
            piece = self._deflated.setdefault(openmetrics, piece)
        return piece


class PlacedSection(Protocol):
    """What the exporter's own metrics and the status page read of a section in the cache."""

    @property
    def series(self) -> int: ...

    @property
    def render_seconds(self) -> float: ...


@dataclass(frozen=True, eq=False)
class Exposition:
    """One consistent set of sections; each gzip body is made on first use, then kept.

    Immutable for its readers: every scrape of this exposition gets the
    same bytes. Two scrapes asking at once may both make a gzip body; the
    results are equal. The uncompressed bodies are joined per scrape and not
    kept: the sections hold that text already, and a kept copy would cost as
    much memory again (3 MB at 34,000 series) to save a copy of well under a
    millisecond.
    """

    sections: Tuple[Section, ...]

    @property
    def text(self) -> bytes:
        return b"".join([section.text for section in self.sections])

    @property
    def openmetrics(self) -> bytes:
        return b"".join([*(section.openmetrics for section in self.sections), _EOF])

    @cached_property
    def text_gzip(self) -> bytes:
        return _gzip_join([s.text for s in self.sections], [s.deflated(False) for s in self.sections])

    @cached_property
    def openmetrics_gzip(self) -> bytes:
        return _gzip_join([*(s.openmetrics for s in self.sections), _EOF],
                          [*(s.deflated(True) for s in self.sections), _EOF_DEFLATED])

    def body(self, openmetrics: bool, compressed: bool) -> bytes:
        if openmetrics:
            return self.openmetrics_gzip if compressed else self.openmetrics
        return self.text_gzip if compressed else self.text


class _Families:
    """Adapter: prometheus-client renders anything with ``collect()``."""

    def __init__(self, families: Sequence[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


Line = Tuple[bytes, bytes]  # one sample's text and OpenMetrics line
#: What a line is made from: its labels (a RowFamily's label values, else the sample's name and labels), its value.
Row = Tuple[Hashable, float]


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
    # Usually identical: keep one object for both (half the cache's memory).
    return text_line, text_line if openmetrics_line == text_line else openmetrics_line


def _with_value(line: Line, old: float, new: float) -> Optional[Line]:
    """``line``, formatted for the value ``old``, for the value ``new`` instead.

    Both formats print a sample without timestamp or exemplar as its name and
    labels, a space, the value as ``floatToGoString`` writes it, and a
    newline; the part before the value does not depend on it. A line that
    does not end that way gives None, and is formatted by prometheus-client.
    """
    old_end = b" %s\n" % floatToGoString(old).encode()
    new_end = b" %s\n" % floatToGoString(new).encode()
    text, openmetrics = line
    if not (text.endswith(old_end) and openmetrics.endswith(old_end)):
        return None
    text = text[:-len(old_end)] + new_end
    return text, text if openmetrics is line[0] else openmetrics[:-len(old_end)] + new_end


def _rows(family: Metric) -> Optional[Sequence[Row]]:
    """What each line of ``family`` is made from; None when a sample is more than labels and a number.

    A timestamp, an exemplar or a native histogram is not part of a row, so
    such a family is formatted anew each time.
    """
    if isinstance(family, RowFamily):
        return family.rows
    samples = family.samples
    if not all(sample.timestamp is None and sample.exemplar is None and isinstance(sample.value, (int, float))
               for sample in samples):
        return None
    return [((sample.name, tuple(sample.labels.items())), sample.value) for sample in samples]


def _value_bits(rows: Sequence[Row]) -> array.array:
    """Each value as the 64 bits of its double, which is all prometheus-client prints of it.

    Equal bits print alike, and compare as integers in C. Values themselves
    would not do: 0.0 == -0.0, yet they print differently.
    """
    return array.array("q", array.array("d", map(itemgetter(1), rows)).tobytes())


@dataclass(frozen=True)
class _RenderedFamily:
    """A family as last rendered: the rows it was made from, its lines, and its bytes in the section."""

    label_names: Tuple[str, ...]
    rows: Sequence[Row]
    value_bits: array.array
    lines: Sequence[Line]
    text: bytes | memoryview  # header and lines
    openmetrics: bytes | memoryview

    def same_as(self, label_names: Tuple[str, ...], rows: Sequence[Row], value_bits: array.array) -> bool:
        return self.value_bits == value_bits and self.label_names == label_names and self.rows == rows

    def same_labels(self, label_names: Tuple[str, ...], rows: Sequence[Row]) -> bool:
        """Whether ``rows`` have this family's labels, in the same order (then only values differ)."""
        return (self.label_names == label_names and len(self.rows) == len(rows)
                and all(map(eq, map(itemgetter(0), self.rows), map(itemgetter(0), rows))))

    def by_labels(self, label_names: Tuple[str, ...]) -> Dict[Hashable, int]:
        """Index of each row by its labels (none when the label names changed)."""
        if self.label_names != label_names:
            return {}
        return dict(zip(map(itemgetter(0), self.rows), range(len(self.rows))))

    def line_for(self, index: int, value: float, bits: int) -> Optional[Line]:
        """The line of row ``index`` made for ``value`` (whose double has ``bits``); None if it cannot be."""
        if self.value_bits[index] == bits:
            return self.lines[index]
        return _with_value(self.lines[index], self.rows[index][1], value)


class SectionRenderer:
    """Renders one section, formatting only what changed since its previous render.

    prometheus-client's output for a family is its HELP/TYPE header followed
    by one line per sample, in order. Each family's rows, lines and bytes are
    kept from the previous render: a family whose rows are equal (one C-level
    comparison) is copied as it was, and in a changed family a row whose
    labels were there before keeps the start of its line, so only new label
    sets are formatted by prometheus-client (one appended Rush line changes
    a few values of a few families). Output is byte-for-byte what
    prometheus-client renders (tested). Only the latest render is kept.
    """

    def __init__(self) -> None:
        self._headers: Dict[Tuple[str, str, str, str], Line] = {}
        self._families: Dict[Tuple[object, ...], _RenderedFamily] = {}

    def render(self, families: Iterable[Metric]) -> Section:
        started = time.perf_counter()
        rendered: List[Tuple[Tuple[object, ...], _RenderedFamily]] = []
        occurrences: Dict[Tuple[str, str, str, str], int] = {}
        for family in families:
            header_key = (family.name, family.type, family.documentation, family.unit)
            occurrence = occurrences[header_key] = occurrences.get(header_key, -1) + 1
            key = (*header_key, occurrence)  # a section may hold two families of one name (two readers)
            rendered.append((key, self._render_family(family, self._families.get(key))))
        text = b"".join([family.text for _, family in rendered])
        openmetrics = b"".join([family.openmetrics for _, family in rendered])
        self._families = self._placed(rendered, text, openmetrics)
        return Section(text=text, openmetrics=openmetrics, series=sum(len(f.lines) for _, f in rendered),
                       render_seconds=time.perf_counter() - started)

    def _render_family(self, family: Metric, previous: Optional[_RenderedFamily]) -> _RenderedFamily:
        label_names = family.label_names if isinstance(family, RowFamily) else ()
        rows = _rows(family)
        if rows is None:
            header = self._header(family)
            return self._assembled(header, label_names, [], array.array("q"),
                                   [_line(family, header, sample) for sample in family.samples])
        value_bits = _value_bits(rows)
        if previous is not None and previous.same_as(label_names, rows, value_bits):
            return previous
        header = self._header(family)
        lines = self._lines(family, header, previous, label_names, rows, value_bits)
        return self._assembled(header, label_names, rows, value_bits, lines)

    def _lines(self, family: Metric, header: Line, previous: Optional[_RenderedFamily], label_names: Tuple[str, ...],
               rows: Sequence[Row], value_bits: array.array) -> List[Line]:
        """The lines of a changed family: the previous ones where they fit, new values written into old lines."""
        if previous is not None and previous.same_labels(label_names, rows):
            # The usual change (counters went up): only the rows whose bits differ are visited.
            lines = list(previous.lines)
            for index in compress(range(len(rows)), map(ne, value_bits, previous.value_bits)):
                labels, value = rows[index]
                lines[index] = (previous.line_for(index, value, value_bits[index])
                                or _line(family, header, self._sample(family, index, labels, value)))
            return lines
        known = {} if previous is None else previous.by_labels(label_names)
        lines = []
        for index, (labels, value) in enumerate(rows):
            was = known.get(labels)
            line = None if was is None or previous is None else previous.line_for(was, value, value_bits[index])
            lines.append(line or _line(family, header, self._sample(family, index, labels, value)))
        return lines

    @staticmethod
    def _sample(family: Metric, index: int, labels: Hashable, value: float) -> Sample:
        if isinstance(family, RowFamily):
            return Sample(family.sample_name, dict(zip(family.label_names, cast(Tuple[str, ...], labels))), value)
        return family.samples[index]

    @staticmethod
    def _assembled(header: Line, label_names: Tuple[str, ...], rows: Sequence[Row], value_bits: array.array,
                   lines: List[Line]) -> _RenderedFamily:
        text = b"".join([header[0], *map(itemgetter(0), lines)])
        openmetrics = b"".join([header[1], *map(itemgetter(1), lines)])
        return _RenderedFamily(label_names, rows, value_bits, lines, text, openmetrics)

    @staticmethod
    def _placed(rendered: List[Tuple[Tuple[object, ...], _RenderedFamily]], text: bytes,
                openmetrics: bytes) -> Dict[Tuple[object, ...], _RenderedFamily]:
        """The families kept for the next render, their bytes as views into the section's (no copy)."""
        text_view, openmetrics_view = memoryview(text), memoryview(openmetrics)
        placed: Dict[Tuple[object, ...], _RenderedFamily] = {}
        text_at = openmetrics_at = 0
        for key, family in rendered:
            text_end, openmetrics_end = text_at + len(family.text), openmetrics_at + len(family.openmetrics)
            placed[key] = _RenderedFamily(family.label_names, family.rows, family.value_bits, family.lines,
                                          text_view[text_at:text_end], openmetrics_view[openmetrics_at:openmetrics_end])
            text_at, openmetrics_at = text_end, openmetrics_end
        return placed

    def _header(self, family: Metric) -> Line:
        key = (family.name, family.type, family.documentation, family.unit)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = _formatted(family, [])
        return header


def render_section(families: Iterable[Metric]) -> Section:
    """A one-off render (no previous render to reuse)."""
    return SectionRenderer().render(families)


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


def wants_openmetrics(accept: str) -> bool:
    """Content negotiation as Prometheus does it: OpenMetrics when the scraper asks for it."""
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == "application/openmetrics-text":
            return True
    return False


def accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if pieces[0].lower() == "gzip":
            return not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in pieces[1:])
    return False
