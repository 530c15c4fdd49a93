"""Reference pages that cannot drift from the code: keys, metrics, flags and links."""

import os
import re

import pytest
from conftest import REPO

from exporter import cli
from exporter.config import _root_schema
from exporter.royalrender.kinds import KINDS
from exporter.schema import Either, ListOf, MapOf, Struct

pytestmark = pytest.mark.inprocess

DOCS = os.path.join(REPO, "docs")
PAGES = sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith(".md"))
NAME = re.compile(r"\b(?:rush|royalrender|renderfarm_exporter)_[a-z0-9_]+\b")
#: ``royalrender_{user,project}_jobs``: several metrics written as one, which a search for
#: ``royalrender_user_jobs`` (from Grafana, from an alert) never finds; a label selector has no comma
#: before ``=`` and is not one
BRACE_GROUP = re.compile(r"[a-z0-9_]*\{[a-z0-9_]*,[a-z0-9_,]*\}[a-z0-9_{},]*")


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def key_paths(schema, path=""):
    """Every leaf key path of the configuration schema; the items of a list are marked with ``[]``."""
    if isinstance(schema, Struct):
        for key, field in schema.fields.items():
            yield from key_paths(field.schema, "%s.%s" % (path, key) if path else key)
    elif isinstance(schema, ListOf):
        yield path
        for inner in key_paths(schema.item, path + "[]"):
            if inner != path + "[]":
                yield inner
    elif isinstance(schema, MapOf):
        yield path
    elif isinstance(schema, Either):
        for alternative in schema.alternatives:
            yield from key_paths(alternative, path)
    else:
        yield path


def documented_as(key):
    """The forms a key may be documented in: itself, or with the RR file kind written as ``<kind>``."""
    forms = {key}
    for kind in KINDS:
        prefix = "royalrender.%s." % kind.name
        if key.startswith(prefix):
            forms.add("royalrender.<kind>." + key[len(prefix):])
    return forms


def test_every_config_key_is_documented():
    page = read(os.path.join(DOCS, "configuration.md"))
    written = set(re.findall(r"`([a-z_<>\[\].]+)`", page))
    keys = set(key_paths(_root_schema()))
    assert {"rush.cpu_acct", "rush.cpu_acct[].host", "watch.mode", "royalrender.timezone"} <= keys
    assert sorted(key for key in keys if not documented_as(key) & written) == []


@pytest.mark.parametrize("parser, page", [(cli.build_parser, "configuration.md"),
                                          (cli.build_probe_parser, "royalrender.md"),
                                          (cli.build_backfill_parser, "backfill.md")])
def test_every_flag_is_documented(parser, page):
    text = read(os.path.join(DOCS, page))
    flags = {option for action in parser()._actions for option in action.option_strings
             if option.startswith("--") and option != "--help"}
    assert sorted(flag for flag in flags if "`%s" % flag not in text) == []


@pytest.fixture(scope="module")
def exported_names(demo_exposition):
    """Every metric name the demo farm exports (families without samples still have HELP lines)."""
    return set(re.findall(r"^# TYPE (\S+) ", demo_exposition, re.M))


def exposition_names(family, kind):
    """The names a family's samples carry in text format 0.0.4."""
    if kind == "counter":
        return {family + "_total"}
    if kind == "info":
        return {family + "_info"}
    return {family}


def test_every_exported_metric_is_documented_and_every_documented_one_exists(exported_names):
    """Literally: every name spelled out in docs/metrics.md, as a search for it needs."""
    page = read(os.path.join(DOCS, "metrics.md"))
    assert BRACE_GROUP.findall(page) == [], "write each metric name out in docs/metrics.md"
    documented = {name for name in NAME.findall(page) if not name.endswith("_")}
    served = {name for name in exported_names if NAME.fullmatch(name)}
    # counters are documented with _total, as they are scraped
    served_as_scraped = {name + "_total" if name + "_total" in documented else name for name in served}
    assert sorted(served_as_scraped - documented) == [], "exported but not in docs/metrics.md"
    code = "".join(read(os.path.join(folder, name)) for folder, _, names in os.walk(os.path.join(REPO, "exporter"))
                   for name in names if name.endswith(".py"))
    unknown = sorted(name for name in documented - served_as_scraped
                     if re.sub(r"_total$|_info$", "", name) not in code)
    assert unknown == [], "in docs/metrics.md but not exported or defined anywhere"


def test_a_brace_group_is_caught_not_expanded():
    """The check above reads names literally: a name hidden in a brace group is not documented."""
    assert BRACE_GROUP.findall("| `royalrender_{user,project}_jobs` | x |") == ["royalrender_{user,project}_jobs"]
    assert BRACE_GROUP.findall("`rush_{a,b}_total`, `royalrender_client_{cpu_ratio,gpu_ratio}`") == [
        "rush_{a,b}_total", "royalrender_client_{cpu_ratio,gpu_ratio}"]
    assert "royalrender_user_jobs" not in NAME.findall("`royalrender_{user,project}_jobs`")
    assert BRACE_GROUP.findall('`up{job="renderfarm"} == 0`, `x_total{result="failure"}`') == []


def test_the_readme_quick_start_installs_the_pinned_versions():
    """The quick start installs what the tests and the image install: pinned by constraints.txt."""
    readme = read(os.path.join(REPO, "README.md"))
    installs = re.findall(r"pip install [^&\n]*", readme)
    assert installs and all("-c constraints.txt" in line for line in installs), installs


def test_every_relative_link_resolves():
    broken = []
    for path in PAGES + [os.path.join(REPO, "README.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", read(path)):
            if re.match(r"https?:|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(resolved):
                broken.append("%s: %s (no such file)" % (os.path.relpath(path, REPO), target))
            elif anchor and resolved.endswith(".md") and anchor not in anchors(read(resolved)):
                broken.append("%s: %s (no such section)" % (os.path.relpath(path, REPO), target))
    assert broken == []


def anchors(markdown):
    """GitHub's anchors of a page's headings."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def test_every_docs_page_has_a_table_of_contents():
    for path in PAGES:
        text = read(path)
        sections = re.findall(r"^## (.+)$", text, re.M)
        links = set(re.findall(r"^\s*- \[.+?\]\(#([\w-]+)\)$", text, re.M))
        wanted = anchors("\n".join("## " + section for section in sections)) - {"contents"}
        assert sections and wanted <= links, (path, sorted(wanted - links))


def test_the_cpu_acct_record_layout_is_what_the_reader_parses():
    """docs/rush.md's layout: its example lines parse as documented, its tables name every field and record."""
    from exporter.rush import records

    page = read(os.path.join(DOCS, "rush.md"))
    section = page[page.index("## The cpu.acct record layout"):page.index("## How Rush")]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    parsed = [records.parse_line(line) for block in blocks for line in block.splitlines()]
    assert [type(record).__name__ for record in parsed] == [
        "Process", "Utilization", "Rotation", "StateChange", "Midnight", "DaemonEvent"]
    process, utilization = parsed[:2]
    # the p table: one row per field, its example the example line's field
    p_rows = re.findall(r"^\| (\d+) \| `([^`]*)` \|", section.split("| `p` field |")[1].split("\n\n")[0], re.M)
    assert [int(n) for n, _ in p_rows] == list(range(1, records.PROCESS_FIELDS + 1))
    assert [example for _, example in p_rows] == blocks[0].splitlines()[0].split()
    assert (process.host, process.title, process.owner, process.wall_seconds, process.exit_code) == (
        "superior", "WERNER/C33", "erco", 122.0, 0)
    assert utilization.ratio == 0.53
    documented_types = set(re.findall(r"^\| `([a-z])` ", section, re.M)) | {"p", "u"}
    assert documented_types == set(records._PARSERS)
