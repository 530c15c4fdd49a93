"""Properties of every parser that reads outside input, shared by the test suite and the long fuzz run.

The test suite (tests/test_fuzz.py) checks each with a few hundred
examples; ``python -m fuzz`` checks the same properties with as many as
asked for. Each property is a plain function of generated values, so
both pick their own example count.
"""

from __future__ import annotations

import os
import tempfile

import yaml
from hypothesis import assume
from hypothesis import strategies as st

from exporter.config import ConfigError, parse
from exporter.exposition import render_section
from exporter.families import label_value, name_of
from exporter.rush.cpu_acct import CpuAcctReader
from exporter.rush.records import Process, parse_line
from exporter.web import webconfig

# -- strategies -------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)
_host = st.from_regex(r"\A[a-z][a-z0-9-]{0,14}\Z")
_title = st.from_regex(r"\A[A-Za-z0-9_/.]{1,16}\Z")


@st.composite
def frame_lines(draw) -> str:
    """A well-formed ``p`` line as Rush writes it: tab, single-space or space-aligned, LF or CRLF."""
    fields = [
        "p",
        str(draw(st.integers(0, 4_000_000_000))),
        "%s%s%d" % (draw(_host), draw(st.sampled_from("-.")), draw(st.integers(0, 99999))),
        draw(_title),
        draw(_word),
        "%04d" % draw(st.integers(0, 9999)),
        draw(_host),
        "%d%s" % (draw(st.integers(0, 999)), draw(st.sampled_from(["", "k", "a"]))),
        str(draw(st.integers(0, 10**7))),
        str(draw(st.integers(0, 10**6))),
        str(draw(st.integers(0, 10**6))),
        str(draw(st.integers(-255, 255))),
        str(draw(st.integers(0, 4_000_000))),
    ]
    separator = draw(st.sampled_from([" ", "\t", "   "]))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return separator.join(fields) + ending


@st.composite
def junk_lines(draw) -> bytes:
    """Any bytes without a newline that are not a frame line (the property counts frames)."""
    junk = draw(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")))
    tokens = junk.decode("utf-8", "replace").split()
    assume(not tokens or tokens[0] != "p")
    return junk + b"\n"


# -- properties --------------------------------------------------------------------


def _read_cpu_acct(content: bytes):
    """One cold read of ``content`` by the real reader, from a real file."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "cpu.acct")
        with open(path, "wb") as handle:
            handle.write(content)
        config = parse("rush:\n  cpu_acct: ['%s']\n  breakdowns: {users: {enabled: true}, titles: {enabled: true}}\n"
                       % path).sources["rush"]
        reader = CpuAcctReader(config)
        try:
            snapshot = reader.sync(None)
            render_section(reader.families(snapshot))  # raises if a host, user or title cannot be rendered
            return snapshot, path
        finally:
            reader.close()


def cpu_acct_bytes_never_raise(content: bytes) -> None:
    """Arbitrary bytes: the reader neither raises nor loses count of the complete lines it consumed."""
    snapshot, path = _read_cpu_acct(content)
    (status,) = [f for f in snapshot.files if f.path == path]
    assert status.up
    assert status.lines_read_total == content.count(b"\n")  # an unfinished last line waits for its newline
    assert status.malformed_lines_total <= status.lines_read_total


#: Lines of a generated file: each is (True, a frame line) or (False, a junk line).
mixed_lines = st.lists(st.one_of(frame_lines().map(lambda line: (True, line.encode())),
                                 junk_lines().map(lambda line: (False, line))), max_size=40)


def frames_among_junk_are_counted_exactly(lines) -> None:
    """Every well-formed frame line counts once, whatever junk lines lie between them."""
    frames = [line for is_frame, line in lines if is_frame]
    for line in frames:
        assert isinstance(parse_line(line.decode().rstrip("\r\n")), Process), line
    snapshot, path = _read_cpu_acct(b"".join(line for _, line in lines))
    assert sum(snapshot.frames.values()) == len(frames)
    (status,) = [f for f in snapshot.files if f.path == path]
    assert status.lines_read_total == len(lines)
    assert status.malformed_lines_total <= len(lines) - len(frames)


def label_values_are_one_to_one(names) -> None:
    """Any names' bytes: each label value is UTF-8 and gives its bytes back, so no two names share one."""
    for name in names:
        value = label_value(os.fsdecode(name))
        value.encode("utf-8")
        assert name_of(value) == name, (name, value)


#: Names made of the bytes that matter to the escaping: backslashes, ``x``, hex digits, bytes that are not UTF-8.
names = st.lists(st.lists(st.sampled_from([b"\\", b"x", b"f", b"4", b"a", b"\xff", b"\xc3", b"\xa9", b"\xed",
                                           b"\xa0", b"\x80"]), max_size=12).map(b"".join)
                 | st.binary(max_size=30), max_size=10)


def config_text_never_raises(text: str) -> None:
    """Any text as the config file: a Config or a ConfigError, nothing else."""
    try:
        parse(text)
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_keys = st.sampled_from(["rush", "royalrender", "watch", "cpu_acct", "path", "host", "mode", "poll_interval",
                         "users", "enabled", "series_budget", "root", "kinds", "module_path", "read_timeout",
                         "host_from_path", "titles", "debounce", "x"])
documents = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(_keys, inner, max_size=5)),
                         max_leaves=20)


def config_structure_never_raises(document) -> None:
    """Config-shaped documents of the wrong types: rejected with a key path, never a crash."""
    config_text_never_raises(yaml.safe_dump(document))


_web_keys = st.sampled_from(["tls_server_config", "basic_auth_users", "http_server_config", "headers",
                             "cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
                             "prometheus", "X-Frame-Options", "http2"])
web_documents = st.recursive(_scalars, lambda inner: st.dictionaries(_web_keys, inner, max_size=4), max_leaves=12)


def web_config_never_raises(document) -> None:
    """Any web config document: settings or a ConfigError."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "web.yml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(document))
        try:
            webconfig.load(path)
        except ConfigError as exc:
            assert exc.problems
