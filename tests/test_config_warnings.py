"""Say what is wrong before it matters: warnings by key path, --strict, empty files, relative paths."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, parse_samples, value

pytestmark = pytest.mark.daemon

NO_RR_ROOT = {k: v for k, v in os.environ.items() if k != "RR_ROOT"}


def exporter(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=NO_RR_ROOT)


def test_check_config_warns_by_key_path_and_strict_makes_it_fail(tmp_path, write_config):
    config = write_config(
        "rush:\n  cpu_acct:\n    - logs/***/cpu.acct\n    - %s/share/*/cpu.acct\n    - '%s/[abc/cpu.acct'\n"
        "royalrender:\n  root: %s/rr\n  module: simulated\n  client_stats:\n    enabled: true\n"
        % (tmp_path, tmp_path, tmp_path))
    result = exporter("--check-config", "--config.file", config)
    assert result.returncode == 0 and result.stdout == "%s is valid\n" % config
    assert result.stderr.splitlines() == [
        "warning: royalrender.root: folder %s/rr does not exist (RR not mounted?)" % tmp_path,
        "warning: royalrender.client_stats.enabled: true, but no path: where RR keeps these files is not public; "
        "set royalrender.client_stats.path",
        "warning: rush.cpu_acct[0]: '***': *** is not a glob (* matches within a folder, ** any number of folders)",
        "warning: rush.cpu_acct[0]: folder %s/logs does not exist: nothing is read until it does "
        "(a share not mounted?)" % tmp_path,
        "warning: rush.cpu_acct[1]: folder %s/share does not exist: nothing is read until it does "
        "(a share not mounted?)" % tmp_path,
        "warning: rush.cpu_acct[2]: '[abc': unclosed '[' is taken literally",
        "warning: rush.cpu_acct[2]: %s/[abc/cpu.acct matches no file now: nothing is read until one appears (folder "
        "%s exists, on the file system mounted at /: if a share should be mounted on it, it is not)"
        % (tmp_path, tmp_path),
    ]
    strict = exporter("--check-config", "--strict", "--config.file", config)
    assert strict.returncode == 2 and "configuration warnings and --strict" in strict.stderr


def test_a_royalrender_section_without_root_says_nothing_can_be_read(write_config):
    result = exporter("--check-config", "--config", write_config("royalrender:\n  module: simulated\n"))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "warning: royalrender.root: no root and no $RR_ROOT: server_stats, daily_stats, client_info, client_groups "
        "have no path",
        "warning: royalrender: nothing to read: no file kind has a path",
    ]


def test_an_empty_config_file_is_an_error(write_config):
    result = exporter("--check-config", "--config", write_config("# only a comment\n"))
    assert result.returncode == 2
    assert "the file is empty: configure at least one source" in result.stderr


def test_relative_rush_paths_are_relative_to_the_config_file_not_the_working_folder(tmp_path):
    site = tmp_path / "site"
    (site / "logs" / "render07").mkdir(parents=True)
    (site / "logs" / "render07" / "cpu.acct").write_text("p 948300000 tahoe.1 T anna 1 render07 100 10 0 0 0 0\n")
    (site / "config.yml").write_text("rush:\n  cpu_acct: ['logs/*/cpu.acct']\n")
    result = exporter("--once", "--config", str(site / "config.yml"), cwd=str(tmp_path))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    samples = parse_samples(result.stdout)
    assert value(samples, "rush_frames_total", host="render07", status="done") == 1


def test_start_up_logs_each_warning(tmp_path, start_daemon, write_config):
    config = write_config("rush:\n  cpu_acct: ['%s/missing/*/cpu.acct']\n" % tmp_path)
    daemon = start_daemon("--config", config)
    assert ('msg="configuration will not work as written" problem="rush.cpu_acct[0]: folder %s/missing does not '
            'exist: nothing is read until it does (a share not mounted?)"' % tmp_path) in daemon.log()


def test_a_glob_that_cannot_compile_is_a_config_error_with_its_key(write_config, tmp_path):
    result = exporter("--check-config", "--config", write_config("rush:\n  cpu_acct: ['%s/[z-a].acct']\n" % tmp_path))
    assert result.returncode == 2
    assert "rush.cpu_acct[0] (line 2): expected a path or glob" in result.stderr
    assert "not a valid glob" in result.stderr


def test_kinds_with_their_own_absolute_paths_need_no_root(write_config, tmp_path):
    (tmp_path / "ss.db").write_text("")
    config = "royalrender:\n  module: simulated\n"
    for kind in ("server_stats", "daily_stats", "client_info", "client_groups"):
        config += "  %s:\n    path: '%s/ss.db'\n" % (kind, tmp_path)
    result = exporter("--check-config", "--strict", "--config", write_config(config))
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_paths_the_units_sandbox_hides_are_warnings_unless_a_drop_in_relaxes_them(tmp_path, write_config):
    """The unit's PrivateTmp=yes and ProtectHome=yes, read from the unit and its drop-ins as systemd applies them."""
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text((Path(REPO) / "systemd" / "renderfarm-exporter.service").read_text())
    config = write_config("rush:\n  cpu_acct: ['/home/render/acct/*/cpu.acct', '/var/tmp/acct/*/cpu.acct']\n")

    def sandbox_warnings(unit_file):
        result = exporter("--check-config", "--systemd.unit", unit_file, "--config.file", config)
        assert result.returncode == 0
        return [line for line in result.stderr.splitlines() if "hides from the service" in line]

    hidden = ("warning: rush.cpu_acct[%d]: %s lies under %s, which the unit renderfarm-exporter.service hides from "
              "the service (%s): the service sees an empty folder there; move it, or relax the setting with "
              "systemctl edit (docs/installation.md#the-sandbox-what-the-service-cannot-see)")
    assert sandbox_warnings(str(unit)) == [
        hidden % (0, "/home/render/acct/*/cpu.acct", "/home", "ProtectHome=yes"),
        hidden % (1, "/var/tmp/acct/*/cpu.acct", "/var/tmp", "PrivateTmp=yes")]
    (tmp_path / "renderfarm-exporter.service.d").mkdir()
    (tmp_path / "renderfarm-exporter.service.d" / "home.conf").write_text("[Service]\nProtectHome=read-only\n")
    assert sandbox_warnings(str(unit)) == [hidden % (1, "/var/tmp/acct/*/cpu.acct", "/var/tmp", "PrivateTmp=yes")]
    assert sandbox_warnings("") == [] and sandbox_warnings(str(tmp_path / "no.service")) == []


def test_a_unit_file_or_drop_in_that_cannot_be_read_is_a_warning_not_a_sandbox_that_hides_nothing(
        tmp_path, write_config):
    """What an unread drop-in sets is unknown (it may hide /home): the check says it could not look."""
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    unreadable = tmp_path / "renderfarm-exporter.service.d" / "hardening.conf"
    unreadable.mkdir(parents=True)  # root reads any file; a folder where a drop-in should be cannot be read
    config = write_config("rush:\n  cpu_acct: ['/home/render/acct/*/cpu.acct']\n")
    result = exporter("--check-config", "--systemd.unit", str(unit), "--config.file", config)
    assert result.returncode == 0
    assert [line for line in result.stderr.splitlines() if "systemd unit" in line] == [
        "warning: systemd unit: cannot read %s (Is a directory): which folders it hides from the service is not "
        "checked; run the check as a user who can read it (docs/installation.md#the-sandbox-what-the-service-cannot-"
        "see)" % unreadable]
    strict = exporter("--check-config", "--strict", "--systemd.unit", str(unit), "--config.file", config)
    assert strict.returncode != 0, "a check that could not look does not pass --strict"
    under_a_file = exporter("--check-config", "--systemd.unit", str(unit) + "/x.service", "--config.file", config)
    assert "cannot read %s/x.service (Not a directory)" % unit in under_a_file.stderr
    unreadable.rmdir()
    assert "systemd unit" not in exporter("--check-config", "--systemd.unit", str(unit), "--config.file",
                                          config).stderr


def test_royalrender_module_folders_that_are_missing_are_warnings(tmp_path, write_config):
    (tmp_path / "rr").mkdir()
    config = write_config("royalrender:\n  root: %s/rr\n  module_path: ['%s/lib']\n" % (tmp_path, tmp_path))
    result = exporter("--check-config", "--config.file", config)
    assert result.returncode == 0
    assert ("warning: royalrender.module_path[0]: folder %s/lib does not exist: RR's module cannot be imported from "
            "it (a share not mounted? a typo?)" % tmp_path) in result.stderr.splitlines()
    assert ("warning: royalrender.module: auto, but RR's lib folder %s/rr/bin/lx64/lib does not exist and no "
            "module_path does: the worker cannot find RR's module (libpyRR3X_datafiles); set royalrender.module_path "
            "to the folder that holds it" % tmp_path) in result.stderr.splitlines()
    (tmp_path / "lib").mkdir()
    fixed = exporter("--check-config", "--config.file", config)
    assert "royalrender.module" not in fixed.stderr, fixed.stderr


def test_a_hidden_royalrender_root_is_said_once_not_again_for_each_kind_below_it(tmp_path, write_config):
    unit = tmp_path / "renderfarm-exporter.service"
    unit.write_text("[Service]\nProtectHome=yes\n")
    config = write_config("royalrender:\n  root: /home/rr\n  module: simulated\n")
    result = exporter("--check-config", "--systemd.unit", str(unit), "--config.file", config)
    assert [line for line in result.stderr.splitlines() if "hides from the service" in line] == [
        "warning: royalrender.root: /home/rr lies under /home, which the unit renderfarm-exporter.service hides from "
        "the service (ProtectHome=yes): the service sees an empty folder there; move it, or relax the setting with "
        "systemctl edit (docs/installation.md#the-sandbox-what-the-service-cannot-see)"]
