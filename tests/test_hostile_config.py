"""Hostile configuration and web config files: not a regular file, too big, hostile YAML.

Each is a clear error with no traceback: ``--check-config`` exits 2 listing
it, a start exits 2, and at run time a reload is refused, counted and
logged while the previous configuration keeps running.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, value, wait_until

pytestmark = pytest.mark.daemon

LINE = "p 948300000 tahoe-1 T anna %d render01 100 30 1 2 0 77\n"
BILLION_LAUGHS = 'a0: &a0 ["lol"]\n' + "".join(
    "a%d: &a%d [%s]\n" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 10))

#: name -> (document, what the error says, its line)
HOSTILE_YAML = {
    "nested 1,000 deep": ("rush: " + "[" * 1000 + "]" * 1000 + "\n",
                          "invalid YAML: refused: nested deeper than 64 levels", 1),
    "python tag": ("rush:\n  cpu_acct: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
                   "invalid YAML: refused: tag !!python/object/apply:os.system is not plain data", 2),
    "complex key": ("rush:\n  ? [a, b]\n  : 1\n",
                    "invalid YAML: refused: a mapping key must be a plain value, not a list", 2),
    "billion laughs": (BILLION_LAUGHS, "invalid YAML: refused: more than 100000 values once its aliases are "
                                       "expanded (an alias bomb?)", 6),
}


def exporter(*args, timeout=30):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "exporter", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - started


def reloads(daemon, result):
    return value(daemon.samples(), "renderfarm_exporter_config_reloads_total", result=result)


@pytest.fixture
def not_regular(tmp_path):
    """name -> (path, the refusal): a FIFO, a symlink to /dev/zero, a 2 MB YAML file."""
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yml"
    os.symlink("/dev/zero", zero)
    big = tmp_path / "big.yml"
    big.write_text("rush:\n  cpu_acct: []\n" + ("#" * 79 + "\n") * 25_000)
    return {"fifo": (str(fifo), "cannot read: refused: a FIFO, not a regular file"),
            "dev/zero": (str(zero), "cannot read: refused: a character device, not a regular file"),
            "2 MB": (str(big), "cannot read: refused: larger than 1048576 bytes")}


def test_a_config_path_that_is_no_small_regular_file_is_refused_at_check_and_start(not_regular, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("rush:\n  cpu_acct: []\n")
    for name, (path, refusal) in not_regular.items():
        for mode in (("--check-config",), ("--web.listen-address", "127.0.0.1:0")):
            result, took = exporter(*mode, "--config.file", path)
            assert (result.returncode, result.stdout) == (2, ""), (name, mode, result)
            assert result.stderr == "%s is invalid:\n  (top level): %s\n" % (path, refusal), (name, mode)
            assert took < 10, (name, mode, took)
        result, _ = exporter("--check-config", "--config.file", str(config), "--web.config.file", path)
        refusal = refusal.replace("1048576", "65536")
        assert (result.returncode, result.stderr) == (2, "%s is invalid:\n  (top level): %s\n" % (path, refusal))


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_yaml_is_a_clear_error_at_check_and_start(name, tmp_path):
    document, message, line = HOSTILE_YAML[name]
    config = tmp_path / "config.yml"
    config.write_text(document)
    expected = "%s is invalid:\n  (top level) (line %d): %s" % (config, line, message)
    for mode in (("--check-config",), ("--web.listen-address", "127.0.0.1:0")):
        result, _ = exporter(*mode, "--config.file", str(config))
        assert result.returncode == 2 and result.stderr.startswith(expected), (mode, result.stderr)
        assert "Traceback" not in result.stderr and not os.path.exists("/tmp/pwned")
    web = tmp_path / "web.yml"
    web.write_text(document)
    config.write_text("rush:\n  cpu_acct: []\n")
    result, _ = exporter("--check-config", "--config.file", str(config), "--web.config.file", str(web))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("%s is invalid:\n  (top level) (line %d): %s" % (web, line, message))
    assert "Traceback" not in result.stderr


def test_hostile_yaml_at_run_time_is_refused_counted_and_logged(tmp_path, start_daemon, write_config):
    acct = tmp_path / "cpu.acct"
    acct.write_text(LINE % 1)
    good = "rush:\n  cpu_acct: ['%s']\n" % acct
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    daemon = start_daemon("--config", write_config(good), "--web.config.file", str(web))
    for count, name in enumerate(sorted(HOSTILE_YAML), 1):
        document, message, line = HOSTILE_YAML[name]
        write_config(document)
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda count=count: reloads(daemon, "failure") == count, 15, "the refusal of " + name)
        assert "(line %d): %s" % (line, message) in daemon.log(), name
        web.write_text(document)
        wait_until(lambda count=count: value(daemon.samples(), "renderfarm_exporter_web_config_reload_failures_total")
                   == count, 15, "the web config refusal of " + name)
        assert daemon.log().count("web config change REFUSED") == count
    samples = daemon.samples()
    assert reloads(daemon, "success") == 0
    assert value(samples, "renderfarm_exporter_config_last_reload_successful") == 0
    assert value(samples, "renderfarm_exporter_web_config_last_reload_successful") == 0
    assert daemon.get("/-/healthy")[1]["X-Frame-Options"] == "deny"
    assert "Traceback" not in daemon.log() and not os.path.exists("/tmp/pwned")
    with open(acct, "a") as handle:
        handle.write(LINE % 2)
    daemon.wait_for_value("rush_frames_total", 2, host="render01", status="done")
