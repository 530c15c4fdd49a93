"""Small pieces: path patterns, mount table, gzip joining, negotiation, budget, logfmt."""

import gzip
import logging
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.budget import OTHER, TRUNCATED_SUFFIX, LabelBudget
from exporter.exposition import ExpositionCache, accepts_gzip, render_section, wants_openmetrics
from exporter.logs import LogfmtFormatter, fields
from exporter.mounts import fstype_of, is_network, read_mounts
from exporter.paths import PathPattern
from exporter.schema import parse_duration

pytestmark = pytest.mark.inprocess


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("/var/rush/var/cpu.acct", "/var/rush/var/cpu.acct", True),
        ("/var/rush/var/cpu.acct", "/var/rush/var/Ocpu.acct", False),
        ("/srv/**/cpu.acct", "/srv/cpu.acct", True),
        ("/srv/**/cpu.acct", "/srv/2026/11/render01/cpu.acct", True),
        ("/srv/*/cpu.acct", "/srv/render01/cpu.acct", True),
        ("/srv/*/cpu.acct", "/srv/a/b/cpu.acct", False),
        ("/srv/*cpu.acct", "/srv/Ocpu.acct", True),
        ("/srv/[!O]*.acct", "/srv/Ocpu.acct", False),
        ("/srv/render0?/cpu.acct", "/srv/render07/cpu.acct", True),
        ("/srv/**", "/srv/x/y", True),
        ("/srv/*", "/srv/.cpu.acct.Xy12", False),
        ("/srv/**/cpu.acct", "/srv/.hidden/cpu.acct", False),
        ("/srv/.cpu.acct", "/srv/.cpu.acct", True),
        ("/srv/.*", "/srv/.cpu.acct", True),
    ],
)
def test_path_patterns(pattern, path, matches):
    assert PathPattern(pattern).matches(path) is matches


@pytest.mark.parametrize("value, seconds", [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), (3, 3.0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["0s", 0, -1, float("nan"), "nan", float("inf"), "9" * 400, "2 weeks", True])
def test_a_duration_that_is_not_positive_or_not_a_duration_is_refused(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_pattern_roots_and_scan(tmp_path):
    for rel in ("a/cpu.acct", "a/b/cpu.acct", "a/b/other", "c/cpu.acct"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    deep = PathPattern(str(tmp_path / "**" / "cpu.acct"))
    assert deep.root == str(tmp_path) and deep.recursive
    assert sorted(deep.scan()) == sorted(str(tmp_path / r) for r in ("a/cpu.acct", "a/b/cpu.acct", "c/cpu.acct"))
    one_level = PathPattern(str(tmp_path / "*" / "cpu.acct"))
    assert sorted(one_level.scan()) == [str(tmp_path / "a/cpu.acct"), str(tmp_path / "c/cpu.acct")]
    single = PathPattern(str(tmp_path / "a" / "cpu.acct"))
    assert single.root == str(tmp_path / "a") and not single.recursive
    assert list(single.scan()) == [str(tmp_path / "a/cpu.acct")]


def test_mount_table_lookup(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /mnt/rr rw,relatime shared:2 - nfs4 server:/rr rw,vers=4.2\n"
        "31 22 0:41 / /mnt/with\\040space rw - cifs //s/share rw\n"
    )
    mounts = read_mounts(str(mountinfo))
    assert fstype_of("/mnt/rr/sub/stats", mounts) == "nfs4"
    assert fstype_of("/mnt/rrx", mounts) == "ext4"
    assert fstype_of("/mnt/with space/x", mounts) == "cifs"
    assert is_network("nfs4") and is_network("fuse.sshfs") and not is_network("ext4")
    assert read_mounts(str(tmp_path / "missing")) == []


def test_gzip_body_is_one_valid_member_after_section_updates(tmp_path):
    cache = ExpositionCache(["a", "b"])
    big = GaugeMetricFamily("demo_value", "help", labels=["n"])
    for i in range(5000):
        big.add_metric([str(i)], i)
    cache.update({"a": render_section([big])})
    cache.update({"b": render_section([CounterMetricFamily("demo_events", "help", value=7)])})
    cache.update({"b": render_section([CounterMetricFamily("demo_events", "help", value=8)])})
    current = cache.current
    assert gzip.decompress(current.gzip(False)) == current.text
    assert gzip.decompress(current.gzip(True)) == current.openmetrics
    assert current.text.endswith(b"demo_events_total 8.0\n")
    assert current.openmetrics.endswith(b"demo_events_total 8.0\n# EOF\n")
    path = tmp_path / "body.gz"
    path.write_bytes(current.gzip(False))
    checked = subprocess.run(["gzip", "-t", str(path)], capture_output=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("*/*", False),
    ],
)
def test_openmetrics_negotiation(accept, expected):
    assert wants_openmetrics(accept) is expected


def test_gzip_negotiation():
    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.8")
    assert not accepts_gzip("") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=0")


def test_label_budget_is_stable_and_reserves_other():
    budget = LabelBudget(series_budget=15, series_per_value=5, max_length=20)
    assert [budget.label(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]
    assert budget.label(OTHER) == OTHER and budget.overflowed == 3


def test_label_budget_admits_tuples_but_never_other_itself():
    budget = LabelBudget(series_budget=12, series_per_value=3)  # 3 of their own, and __other__
    assert [budget.admits(k) for k in (("p", "a"), (OTHER, "b"), OTHER, ("p", "b"), ("q", "c"), ("q", "d"))] == [
        True, False, False, True, True, False]
    assert budget.admits(("p", "a")) and budget.overflowed == 3
    assert budget.label("y" * 500) == OTHER and budget.truncated == 0, "no max_length: never cut"


def test_label_budget_cuts_long_values_visibly_and_counts_them():
    budget = LabelBudget(series_budget=15, series_per_value=5, max_length=20)
    cut = "x" * 6 + TRUNCATED_SUFFIX
    assert [budget.label(v) for v in ("x" * 500, "x" * 21, "x" * 20)] == [cut, cut, "x" * 20]
    assert (budget.truncated, budget.overflowed, len(cut)) == (2, 0, 20)


def test_logfmt_quotes_values():
    record = logging.LogRecord("exporter.x", logging.WARNING, __file__, 1, "bad line", None, None)
    record.fields = fields(path="/a b/cpu.acct", reason='say "hi"', count=3)["fields"]
    line = LogfmtFormatter().format(record)
    assert 'level=warn logger=exporter.x msg="bad line" path="/a b/cpu.acct" reason="say \\"hi\\"" count=3' in line


def test_logfmt_escapes_control_characters_from_file_content():
    record = logging.LogRecord("exporter.x", logging.WARNING, __file__, 1, "bad line", None, None)
    record.fields = fields(line="a\x1b[2J\rb\x00c\u2028d\x85e\u00e9")["fields"]
    line = LogfmtFormatter().format(record)
    assert line.endswith(' line="a\\u001b[2J\\rb\\u0000c\\u2028d\\u0085e\u00e9"')



@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40)), max_size=12))
def test_cache_bodies_equal_the_latest_sections_joined_whatever_the_update_order(updates):
    """Unchanged sections are sliced out of the previous bodies: they must come out byte for byte."""
    cache = ExpositionCache(["a", "b", "c"])
    latest = {}
    for name, count in updates:
        family = GaugeMetricFamily("%s_value" % name, "section %s" % name, labels=["i"])
        for i in range(count):
            family.add_metric([str(i)], float(i * len(latest) + count))
        latest[name] = render_section([family])
        cache.update({name: latest[name]})
        current = cache.current
        present = [latest[n] for n in "abc" if n in latest]
        assert current.text == b"".join(s.text for s in present)
        assert current.openmetrics == b"".join(s.openmetrics for s in present) + b"# EOF\n"
        assert gzip.decompress(current.gzip(False)) == current.text
        assert gzip.decompress(current.gzip(True)) == current.openmetrics
    assert {n: s.series for n, s in cache.sections().items()} == {n: s.series for n, s in latest.items()}
