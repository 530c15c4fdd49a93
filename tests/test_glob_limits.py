"""Globs that would walk a whole file system: warned about by --check-config, bounded at run time."""

import logging

import pytest
from conftest import parse_samples, value, wait_until
from test_config_warnings import exporter

from exporter import paths
from exporter.config import load
from exporter.core import Parts, build_readers
from exporter.paths import PathPattern
from exporter.web import statuspage

pytestmark = pytest.mark.inprocess

LINE = "p 948300000 tahoe-1 T anna 1 %s 100 30 1 2 0 77\n"


def whole_fs_warning(key, pattern, root):
    return ("warning: %s: %r: ** below %s walks and watches every folder of the file system under it, at each "
            "rescan (at most 100000 matching files are read): start the pattern at least 2 folders deep, e.g. "
            "/srv/rush/**/cpu.acct" % (key, pattern, root))


@pytest.mark.daemon
def test_a_glob_over_a_whole_file_system_is_a_warning_and_strict_makes_it_an_error(write_config, tmp_path):
    (tmp_path / "logs").mkdir()
    config = write_config("rush:\n  cpu_acct:\n    - '/**/*'\n    - /usr/**/cpu.acct\n    - /*/**\n"
                          "    - '%s/logs/**/cpu.acct'\n    - /home/*/cpu.acct\n" % tmp_path)
    result = exporter("--check-config", "--config.file", config)
    assert result.returncode == 0 and result.stdout == "%s is valid\n" % config
    assert [line for line in result.stderr.splitlines() if "matches no file now" not in line] == [
        whole_fs_warning("rush.cpu_acct[0]", "/**/*", "/"),
        whole_fs_warning("rush.cpu_acct[1]", "/usr/**/cpu.acct", "/usr"),
        whole_fs_warning("rush.cpu_acct[2]", "/*/**", "/"),
    ]
    # the globs over a whole file system are not walked to see whether they match a file now; the others are
    assert "rush.cpu_acct[3]: %s/logs/**/cpu.acct matches no file now" % tmp_path in result.stderr
    assert not [line for line in result.stderr.splitlines() if "matches no file now" in line
                and line.split(":")[1].strip() in ("rush.cpu_acct[0]", "rush.cpu_acct[1]", "rush.cpu_acct[2]")]
    strict = exporter("--check-config", "--strict", "--config.file", config)
    assert strict.returncode == 2
    assert strict.stderr.splitlines()[-1] == "renderfarm-exporter: configuration warnings and --strict: exiting"


def test_a_pattern_matching_more_than_the_limit_is_cut_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(paths, "MAX_MATCHES", 3)
    for host in range(5):
        folder = tmp_path / ("render%02d" % host)
        folder.mkdir()
        (folder / "cpu.acct").write_text(LINE % ("render%02d" % host))
    pattern = PathPattern(str(tmp_path / "**" / "cpu.acct"))
    with caplog.at_level(logging.INFO, logger="exporter.paths"):
        assert len(list(pattern.scan())) == 3
        assert len(list(pattern.scan())) == 3
        assert paths.capped_patterns() == {pattern.pattern}
        (tmp_path / "render00" / "cpu.acct").unlink()
        (tmp_path / "render01" / "cpu.acct").unlink()
        assert len(list(pattern.scan())) == 3
        assert paths.capped_patterns() == frozenset()
    assert [r.getMessage() for r in caplog.records] == [
        "pattern matches more files than the limit: only the first found are read; narrow it",
        "pattern matches fewer files than the limit again"]
    assert caplog.records[0].fields == {"pattern": pattern.pattern, "limit": 3}


def test_the_cut_is_a_self_metric_and_a_status_page_line(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "MAX_MATCHES", 3)
    for host in range(5):
        folder = tmp_path / "logs" / ("render%02d" % host)
        folder.mkdir(parents=True)
        (folder / "cpu.acct").write_text(LINE % ("render%02d" % host))
    config_path = tmp_path / "config.yml"
    config_path.write_text("rush:\n  cpu_acct: ['logs/**/cpu.acct']\n")
    config = load(str(config_path))
    parts = Parts(build_readers(config), config.watch)
    parts.start()
    try:
        assert parts.renderer.wait_ready(20)
        pattern = str(tmp_path / "logs" / "**" / "cpu.acct")

        def limit_reached():
            samples = parse_samples(parts.renderer.exposition_for_scrape().text.decode())
            return value(samples, "renderfarm_exporter_pattern_match_limit_reached", kind="rush_cpu_acct",
                         pattern=pattern)

        wait_until(lambda: limit_reached() == 1, 10, "the limit gauge")
        samples = parse_samples(parts.renderer.exposition_for_scrape().text.decode())
        assert sum(v for (name, _), v in samples.items() if name == "rush_frames_total") == 3
        page = statuspage.render(parts.status(), parts.renderer.sections(), "/metrics", True).decode()
        assert ("<td>rush_cpu_acct</td><td>%s</td><td class='down'>LIMIT</td><td></td><td></td><td>the pattern "
                "matches more than 3 files: only the first found are read; narrow it</td>" % pattern) in page
        assert "Needs attention" in page
    finally:
        parts.stop()
