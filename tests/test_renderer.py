"""The incremental section renderer must produce exactly what prometheus-client renders."""

import math
import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import generate_latest as text_of
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_of

from exporter.exposition import SectionRenderer, _Families
from exporter.families import counter as rows_counter
from exporter.families import gauge as rows_gauge

pytestmark = pytest.mark.inprocess

LABEL_VALUES = st.text(alphabet=st.sampled_from('ab\\"\n é{}=,'), max_size=6)
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                   st.sampled_from([0.0, -0.0, 0, 1e21, 123456789.0]))


@st.composite
def families(draw):
    result = []
    for index in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["counter", "gauge", "info", "row_counter", "row_gauge"]))
        doc = draw(st.text(alphabet=st.sampled_from('doc \\\n"x'), max_size=10))
        name = "demo_%s_%d" % (kind, index)
        keys = draw(st.lists(LABEL_VALUES, max_size=5, unique=True))
        if kind.startswith("row_"):
            rows = {(key, draw(LABEL_VALUES)): draw(VALUES) for key in keys}
            if kind == "row_counter":
                rows = {k: abs(v) if not math.isnan(v) else v for k, v in rows.items()}
            family = (rows_counter if kind == "row_counter" else rows_gauge)(name, doc, ["key", "other"], rows)
        elif kind == "info":
            family = InfoMetricFamily(name, doc, labels=["key"])
            for key in keys:
                family.add_metric([key], {})
        else:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=["key"])
            for key in keys:
                value = draw(VALUES)
                family.add_metric([key], abs(value) if kind == "counter" and not math.isnan(value) else value)
        result.append(family)
    return result


def expected(fams):
    openmetrics = openmetrics_of(_Families(fams))
    return text_of(_Families(fams)), openmetrics[: -len(b"# EOF\n")]


@settings(max_examples=300, deadline=None)
@given(first=families(), second=families())
def test_matches_prometheus_client_on_first_and_later_renders(first, second):
    renderer = SectionRenderer()
    for fams in (first, second, first):
        section = renderer.render(fams)
        assert (section.text, section.openmetrics) == expected(fams)


def test_zero_signs_are_not_confused():
    renderer = SectionRenderer()
    for value in (0.0, -0.0, 0, 0.0):
        gauge = GaugeMetricFamily("demo_zero", "zero", value=value)
        assert renderer.render([gauge]).text == text_of(_Families([gauge]))


def test_demo_sections_match(tmp_path):
    from exporter import config
    from exporter.rush.cpu_acct import CpuAcctReader

    path = tmp_path / "cpu.acct"
    path.write_text("".join("p %d tahoe.1 T\\x U%d %d render%02d 100 %d 1 2 %d 7\n" % (
        1700000000 + i, i % 7, i, i % 30, i % 500, (0, 1, 2, -9)[i % 4]) for i in range(3000)) + "u 1 50\n")
    reader = CpuAcctReader(config.parse("rush:\n  cpu_acct: ['%s']\n  breakdowns: {users: {enabled: true}}\n"
                                        % path).sources["rush"])
    renderer = SectionRenderer()
    for extra in ("", "p 1800000000 tahoe.1 T u 1 render03 100 5 1 2 0 7\n"):
        with open(path, "a") as handle:
            handle.write(extra)
        fams = list(reader.families(reader.sync(None)))
        section = renderer.render(fams)
        assert (section.text, section.openmetrics) == expected(fams)


ROW_VALUES = st.one_of(st.sampled_from([0.0, -0.0, 0, 1, 1.0, math.nan, math.inf, -math.inf, 1e21, 2**53 + 1]),
                       st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12))


@settings(max_examples=300, deadline=None)
@given(renders=st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", 'q"\n\\', "é"]), ROW_VALUES, max_size=5),
                        min_size=1, max_size=5),
       kind=st.sampled_from(["row_gauge", "gauge"]))
@example(renders=[{"a": 0.0}, {"a": -0.0}, {"a": 0}, {"a": -0.0, "b": 0.0}, {"b": -0.0}], kind="row_gauge")
@example(renders=[{"a": 0.0}, {"a": -0.0}, {"a": 0}, {"a": -0.0, "b": 0.0}, {"b": -0.0}], kind="gauge")
def test_new_values_in_known_rows_match_prometheus_client(renders, kind):
    """The same series render after render, their values changing (zero signs, NaN, big integers too)."""
    renderer = SectionRenderer()
    for values in renders:
        if kind == "row_gauge":
            family = rows_gauge("demo_value", "value", ["key"], values)
        else:
            family = GaugeMetricFamily("demo_value", "value", labels=["key"])
            for key in sorted(values):
                family.add_metric([key], values[key])
        fams = [family, rows_counter("demo_total_seen", "seen", ["key"], {k: 1 for k in values})]
        section = renderer.render(fams)
        assert (section.text, section.openmetrics) == expected(fams)


def test_an_unchanged_family_is_not_formatted_again_and_a_new_value_reuses_its_line(monkeypatch):
    import exporter.exposition as exposition

    renderer = SectionRenderer()
    hosts = {("render%03d" % i, status): i for i in range(200) for status in ("done", "fail")}
    renderer.render([rows_counter("demo_frames", "frames", ["host", "status"], hosts),
                     rows_gauge("demo_busy", "busy", ["host"], {"render000": 1})])
    formatted = []
    original = exposition._row_lines
    monkeypatch.setattr(exposition, "_row_lines", lambda family, labels, values, rows: formatted.extend(rows) or
                        original(family, labels, values, rows))
    monkeypatch.setattr(exposition, "_formatted", None)  # prometheus-client formats no row, nor a known header
    changed = {**hosts, ("render007", "done"): 8, ("render010", "fail"): -0.0}
    fams = [rows_counter("demo_frames", "frames", ["host", "status"], changed),
            rows_gauge("demo_busy", "busy", ["host"], {"render000": 1})]
    section = renderer.render(fams)
    assert (section.text, section.openmetrics) == expected(fams)
    assert formatted == []
    fams.append(rows_gauge("demo_busy", "busy", ["host"], {"render001": 0.0}))  # a second family of one name
    section = renderer.render(fams)
    assert (section.text, section.openmetrics) == expected(fams)
    assert formatted == [0]  # its one line (the header is known); the others are reused


def test_samples_the_text_format_moves_to_the_end_of_their_family_match_prometheus_client():
    """Counters and summaries with ``_created``, gauge histograms with ``_gsum``/``_gcount``, over two label sets:
    the text format gathers those samples after the others, under a header of their own."""
    from prometheus_client.core import GaugeHistogramMetricFamily, SummaryMetricFamily
    from prometheus_client.samples import Sample

    renderer = SectionRenderer()
    for value in (1, 2, 2):
        jobs = CounterMetricFamily("demo_jobs", "jobs", labels=["queue"])
        latency = SummaryMetricFamily("demo_latency", "latency", labels=["queue"])
        depth = GaugeHistogramMetricFamily("demo_depth", "depth", labels=["queue"])
        for queue in ("a", "b"):
            jobs.add_metric([queue], value, created=100.0 + value)
            latency.add_metric([queue], count_value=value, sum_value=2.5)
            latency.samples.append(Sample("demo_latency_created", {"queue": queue}, 100.0))
            depth.add_metric([queue], [("+Inf", value)], gsum_value=3 * value)
        fams = [jobs, latency, depth]
        section = renderer.render(fams)
        assert (section.text, section.openmetrics) == expected(fams)
        assert section.series == sum(len(family.samples) for family in fams)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.sets(st.integers(0, 40), max_size=6), st.sets(st.integers(0, 40), max_size=6),
                                st.integers(0, 3)), min_size=1, max_size=6))
def test_hosts_appearing_and_going_keep_the_other_lines_and_format_only_the_new_ones(steps):
    """A farm's hosts come and go among many kept ones; each render equals prometheus-client's, and only the rows
    that are new are formatted (the kept rows' lines are copied, their new values written in)."""
    import exporter.exposition as exposition
    from exporter.families import LiveRows

    formatted = []
    original = exposition._formatted
    exposition._formatted = lambda family, samples: formatted.append(samples) or original(family, samples)
    try:
        live, renderer, shown = LiveRows(), SectionRenderer(), set(range(0, 40, 3))
        for host in shown:
            live.set(("render%02d" % host, "done"), host)
        renderer.render([rows_counter("demo_frames", "frames", ["host", "status"], live.frozen())])
        for added, removed, bump in steps:
            for host in added:
                live.set(("render%02d" % host, "done"), host + bump)
            for host in removed - added:
                live.discard(("render%02d" % host, "done"))
            new = added - shown
            shown = (shown | added) - (removed - added)
            formatted.clear()
            fams = [rows_counter("demo_frames", "frames", ["host", "status"], live.frozen())]
            section = renderer.render(fams)
            assert (section.text, section.openmetrics) == expected(fams)
            assert len([samples for samples in formatted if samples]) <= len(new)
    finally:
        exposition._formatted = original


def test_rows_formatted_as_bytes_match_prometheus_client_on_escaped_names_and_leave_out_what_is_not_utf8():
    """New rows are formatted without prometheus-client: names from outside made valid by ``label_value``
    (``\\xNN`` for bytes that are not UTF-8, backslashes doubled) come out as it writes them, and a value that
    still is not UTF-8 fails its series alone, as it would through prometheus-client."""
    from exporter.families import label_value

    names = [label_value(os.fsdecode(raw)) for raw in (b"render\xff01", b"a\\x41\"b\nc", "é".encode(), b"plain")]
    fams = [rows_counter("demo_frames", "frames", ["host", "status"], {(name, "done"): 1 for name in names}),
            rows_gauge("demo_plain", "no labels", [], {(): 2.5})]
    section = SectionRenderer().render(fams)
    assert (section.text, section.openmetrics) == expected(fams)
    assert b'host="render\\\\xff01"' in section.text

    bad = {("render\udcff", "done"): 1, ("render02", "done"): 2}
    section = SectionRenderer().render([rows_counter("demo_frames", "frames", ["host", "status"], bad)])
    assert section.dropped == (("demo_frames", 1),) and b'demo_frames_total{host="render02",status="done"} 2.0' in \
        section.text
