"""Command-line contract: --once, --check-config, --version, exit codes, config errors."""

import subprocess
import sys

import pytest
from conftest import REPO, parse_samples, value

from exporter import cli

pytestmark = pytest.mark.daemon


def run(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_once_prints_the_exposition_and_exits_zero(tmp_path, write_config):
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\nu 948300000 80\n")
    result = run("--config", write_config("rush:\n  cpu_acct: ['%s']\n" % path), "--once")
    assert result.returncode == 0, result.stderr
    samples = parse_samples(result.stdout)
    assert value(samples, "rush_frames_total", host="render01", status="done") == 1
    assert value(samples, "rush_frame_wall_seconds_total", host="render01") == 30
    assert value(samples, "rush_utilization_ratio", host="render01") == 0.8
    assert not any(name.startswith("renderfarm_exporter_watch") and name.endswith("info") for name, _ in samples)


def test_once_forks_its_worker_processes_from_itself(tmp_path, write_config):
    """A one-shot read runs no other thread, so the workers of a big backlog are forked from it, with everything
    imported, instead of from a forkserver started for them (BENCHMARKS.md, cold ingest)."""
    path = tmp_path / "cpu.acct"
    frames = 120000
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n" * frames)  # 6.5 MB: a pool reads it
    config = write_config("rush:\n  cpu_acct: ['%s']\n  read_processes: 2\n" % path)
    result = run("--config", config, "--once", "--log.level", "debug")
    assert result.returncode == 0, result.stderr
    started = [line for line in result.stderr.splitlines() if 'msg="starting worker processes"' in line]
    assert len(started) == 1 and "start_method=fork" in started[0].split(), result.stderr
    samples = parse_samples(result.stdout)
    assert value(samples, "rush_frames_total", host="render01", status="done") == frames
    assert value(samples, "rush_frame_wall_seconds_total", host="render01") == 30 * frames


#: Modules only serving uses: the daemon, its HTTP server and web config, the demo farm.
SERVING_ONLY = ("exporter.daemon", "exporter.web.httpserver", "exporter.web.webconfig", "exporter.simulation.demo")


@pytest.mark.parametrize("mode", ["--once", "--check-config"])
def test_one_shot_modes_do_not_import_what_only_serving_uses(tmp_path, write_config, mode):
    """Their start-up time is most of a one-shot read of a big file (BENCHMARKS.md, cold ingest)."""
    path = tmp_path / "cpu.acct"
    path.write_text("p 948300000 tahoe-1 T anna 1 render01 100 30 1 2 0 77\n")
    config = write_config("rush:\n  cpu_acct: ['%s']\n" % path)
    script = ("import sys\nfrom exporter import cli\ncode = cli.main(['--config', %r, %r])\n"
              "print('exit', code, 'imported', *sorted(m for m in %r if m in sys.modules), file=sys.stderr)"
              % (config, mode, SERVING_ONLY))
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].split() == ["exit", "0", "imported"]


def test_once_with_invalid_config_fails_with_message(write_config):
    result = run("--config", write_config("rush:\n  cpu_acct: 5\n"), "--once")
    assert result.returncode == 2
    assert "rush.cpu_acct (line 2): expected a list" in result.stderr
    assert result.stdout == ""


def test_check_config_lists_every_problem_by_key_path_and_line(write_config):
    config = write_config(
        "rush:\n"
        "  cpu_acct:\n"
        "    - path: /x\n"
        "      hots: a\n"
        "  breakdowns:\n"
        "    users: {enabled: maybe}\n"
        "watch:\n"
        "  mode: fast\n"
        "  poll_interval: 0s\n"
        "rr: {}\n"
    )
    result = run("--config", config, "--check-config")
    assert result.returncode == 2
    expected = [
        "rush.cpu_acct[0].hots (line 4): unknown key",
        "rush.breakdowns.users.enabled (line 6): expected true or false, got 'maybe'",
        "watch.mode (line 8): expected one of auto, events, poll, got 'fast'",
        "watch.poll_interval (line 9): expected a duration, got '0s' (must be positive)",
        "rr (line 10): unknown key",
    ]
    for line in expected:
        assert line in result.stderr, result.stderr


def test_check_config_accepts_a_valid_file(write_config):
    config = write_config(
        "rush:\n"
        "  cpu_acct:\n"
        "    - /var/rush/var/cpu.acct\n"
        "    - path: '/srv/rush/**/cpu.acct'\n"
        "      host_from_path: '/srv/rush/(?P<host>[^/]+)/'\n"
        "watch: {mode: poll, poll_interval: 5s, rescan_interval: 2m}\n"
    )
    result = run("--config", config, "--check-config")
    assert (result.returncode, result.stdout.strip()) == (0, "%s is valid" % config)


def test_example_config_in_the_repository_is_valid():
    result = run("--config", "config/renderfarm-exporter.yml", "--check-config")
    assert result.returncode == 0, result.stderr


def test_invalid_yaml_and_missing_file(write_config, tmp_path):
    result = run("--config", write_config("rush: [\n"), "--check-config")
    assert result.returncode == 2 and "invalid YAML" in result.stderr
    result = run("--config", str(tmp_path / "nope.yml"), "--check-config")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_regex_without_host_group_is_rejected(write_config):
    result = run("--config", write_config("rush:\n  host_from_path: '/srv/(.*)/'\n"), "--check-config")
    assert result.returncode == 2 and "rush.host_from_path (line 2)" in result.stderr
    assert "(?P<host>" in result.stderr


def test_version_and_usage_errors():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("renderfarm-exporter 0.")
    assert run().returncode == 2
    result = run("--config", "x.yml", "--web.listen-address", "nonsense")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


@pytest.mark.parametrize("command, parser", [((), cli.build_parser), (("probe",), cli.build_probe_parser),
                                             (("backfill",), cli.build_backfill_parser)])
def test_help_documents_every_flag(command, parser):
    """Every flag the parser knows is in the --help the binary prints, with a help text of its own."""
    result = run(*command, "--help")
    assert result.returncode == 0
    actions = [action for action in parser()._actions if action.option_strings and action.dest != "help"]
    assert len(actions) >= 3
    for action in actions:
        assert action.help and action.help.strip(), "%s has no help text" % action.option_strings
        for flag in action.option_strings:
            assert flag in result.stdout, flag


def test_config_file_flag_as_prometheus_tools_spell_it():
    for flag in ("--config.file", "--config"):
        result = run(flag, "config/renderfarm-exporter.yml", "--check-config")
        assert result.returncode == 0 and result.stdout.strip() == "config/renderfarm-exporter.yml is valid", flag
