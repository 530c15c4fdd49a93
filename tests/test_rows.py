"""Rows kept key by key (LiveRows) and the per-file self-metrics kept between renders must always equal what a
fresh computation from the same data gives: they only decide how much work a render does, never what it says."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.exposition import SectionRenderer, render_section
from exporter.families import LiveRows, RowFamily, Rows, gauge
from exporter.paths import PathPattern
from exporter.selfmetrics import SelfMetrics
from exporter.sources import FileStatus
from exporter.status import RuntimeStatus

pytestmark = pytest.mark.inprocess

KEYS = st.sampled_from(["a", "b", "c", "d", "é"])
VALUES = st.one_of(st.sampled_from([0, 0.0, -0.0, 1, 1.0, math.inf, 2**53 + 1]), st.integers(-5, 5))
OPERATIONS = st.lists(st.one_of(st.tuples(st.just("set"), KEYS, VALUES), st.tuples(st.just("discard"), KEYS, VALUES),
                                st.tuples(st.just("freeze"), KEYS, VALUES)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(operations=OPERATIONS)
def test_live_rows_equal_a_sorted_mapping_of_the_same_changes(operations):
    live, model, renderer = LiveRows(), {}, SectionRenderer()
    for operation, key, value in operations + [("freeze", "a", 0)]:
        if operation == "set":
            live.set(key, value)
            model[key] = value
        elif operation == "discard":
            live.discard(key)
            model.pop(key, None)
        else:
            rows = live.frozen()
            assert list(rows.items()) == sorted(model.items())
            assert [repr(v) for v in rows.values()] == [repr(model[k]) for k in sorted(model)]  # types and signs
            assert rows.label_values == tuple((key,) for key in sorted(model))
            fresh = gauge("demo_rows", "rows", ["key"], dict(model))
            assert renderer.render([gauge("demo_rows", "rows", ["key"], rows)]).text == render_section([fresh]).text


@settings(max_examples=300, deadline=None)
@given(operations=st.lists(st.tuples(st.sampled_from(["set", "set", "discard", "freeze", "render"]), KEYS, VALUES),
                           max_size=60))
def test_renders_that_skip_frozen_rows_equal_fresh_ones(operations):
    """Renders need not see every ``frozen`` (a sync between two renders): the rows a render is told changed
    (``Rows.touched``) are trusted only for rows made from the rows it rendered last."""
    live, model, renderer = LiveRows(), {}, SectionRenderer()
    for operation, key, value in operations + [("render", "a", 0)]:
        if operation == "set":
            live.set(key, value)
            model[key] = value
        elif operation == "discard":
            live.discard(key)
            model.pop(key, None)
        elif operation == "freeze":
            live.frozen()
        else:
            assert all(k in live for k in model) and not any(k in live for k in "abcdé" if k not in model)
            fresh = gauge("demo_rows", "rows", ["key"], dict(model))
            rendered = renderer.render([gauge("demo_rows", "rows", ["key"], live.frozen())])
            assert rendered.text == render_section([fresh]).text


def test_unchanged_live_rows_are_the_same_object_and_a_value_change_keeps_the_labels():
    live = LiveRows()
    for host in ("b", "a", "c"):
        live.set(host, 1)
    first = live.frozen()
    live.set("a", 1)
    assert live.frozen() is first, "setting an equal value changes nothing"
    live.set("a", 2)
    second = live.frozen()
    assert second.label_values is first.label_values and dict(second) == {"a": 2, "b": 1, "c": 1}
    assert dict(first) == {"a": 1, "b": 1, "c": 1}, "a frozen Rows never changes"
    live.set("0", 5)
    assert live.frozen().label_values == (("0",), ("a",), ("b",), ("c",))
    assert isinstance(Rows.of({"x": 1}), Rows)


FILES = st.lists(st.tuples(st.sampled_from(["k1", "k2"]), st.sampled_from(["/f/a", "/f/b", "/f/c", "/g/d"]),
                           st.booleans(), st.integers(0, 3), st.integers(0, 2)), unique_by=lambda f: f[:2], max_size=4)


def statuses(files):
    return tuple(FileStatus(kind=kind, path=path, up=up, last_success_time=1.5 if up else None, errors_total=errors,
                            malformed_lines_total=0, bytes_read_total=errors * 10, lines_read_total=1,
                            parse_errors_total=min(parse, errors), read_failures=(("crash", 0),) if parse else ())
                 for kind, path, up, errors, parse in sorted(files, key=lambda f: f[:2]))


@settings(max_examples=200, deadline=None)
@given(renders=st.lists(FILES, min_size=1, max_size=6), keep=st.lists(st.booleans(), min_size=6, max_size=6))
def test_per_file_metrics_kept_between_renders_equal_fresh_ones(renders, keep):
    """Files appear, go, change and stay (the same FileStatus object, as readers hand them out)."""
    kept, previous = SelfMetrics(), {}
    patterns = (("k1", PathPattern("/f/*")), ("k2", PathPattern("/g/*")))
    for files, keep_objects in zip(renders, keep):
        now = statuses(files)
        if keep_objects:  # an unchanged file keeps its object, as readers do
            now = tuple(previous.get((f.kind, f.path), f) if previous.get((f.kind, f.path)) == f else f for f in now)
        previous = {(f.kind, f.path): f for f in now}
        status = RuntimeStatus(files=now, watches=(), reader_failures={}, rescans=0, watch_restarts=0,
                               patterns=patterns)
        assert (render_section(kept.families(status, {})).text
                == render_section(SelfMetrics().families(status, {})).text)


@settings(max_examples=200, deadline=None)
@given(renders=st.lists(FILES, min_size=1, max_size=6), keep=st.lists(st.booleans(), min_size=6, max_size=6))
def test_per_file_metrics_by_reader_equal_fresh_ones(renders, keep):
    """The files in one group per kind (reader), as the status board hands them out: a group that is the same
    tuple as before is passed over, the others compared file by file; the exposition and the families' objects
    are those of a fresh render, and a family whose rows did not change is the same object."""
    kept, previous, before = SelfMetrics(), {}, None
    patterns = (("k1", PathPattern("/f/*")), ("k2", PathPattern("/g/*")))
    for files, keep_objects in zip(renders, keep):
        groups = []
        for kind in ("k1", "k2"):
            group = statuses([f for f in files if f[0] == kind])
            was = previous.get(kind, ())
            if keep_objects and group == was:
                group = was  # an unchanged reader hands out its snapshot's tuple again
            groups.append(group)
        previous = {"k1": groups[0], "k2": groups[1]}
        status = RuntimeStatus(files=groups[0] + groups[1], watches=(), reader_failures={}, rescans=0,
                               watch_restarts=0, patterns=patterns, file_groups=tuple(groups))
        families = kept.families(status, {})
        assert render_section(families).text == render_section(SelfMetrics().families(status, {})).text
        if before is not None:
            for old, new in zip(before, families):
                if old.name == new.name and isinstance(new, RowFamily) and isinstance(old, RowFamily) \
                        and new.rows is old.rows:
                    assert old is new, "a family whose rows did not change is handed out again"
        before = families


def test_two_statuses_of_one_file_give_the_last_ones_rows_as_a_fresh_render_does():
    """Readers key their files by path, so this does not happen today; if it did, kept rows must not differ."""
    down = statuses([("k1", "/f/a", False, 1, 0)])[0]
    up = down._replace(up=True, last_success_time=2.0)
    kept = SelfMetrics()
    for files in ((down, down), (up, down), (down, up)):
        status = RuntimeStatus(files=files, watches=(), reader_failures={}, rescans=0, watch_restarts=0)
        assert (render_section(kept.families(status, {})).text
                == render_section(SelfMetrics().families(status, {})).text)
