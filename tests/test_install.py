"""Putting the exporter into service: scripts/install against a scratch root, and the unit's sandbox.

The install test runs the real script into a scratch root (a real virtual
environment, the real pip), then checks the installed unit with the real
systemd-analyze. The sandbox test runs the exporter under the /proc mount
the unit's ProtectProc=/ProcSubset= settings give it (a private mount and
PID namespace made by unshare), and needs root, as CI has.
"""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import REPO, free_port, parse_samples, wait_until

INSTALL = os.path.join(REPO, "scripts", "install")
UNIT_NAME = "renderfarm-exporter.service"
PREFIX = "/opt/renderfarm-exporter"
PROCESS_METRICS = ("process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes",
                   "process_open_fds")


def run(*command, timeout=300, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def tool(name):
    path = shutil.which(name)
    assert path, "%s is missing: scripts/test installs it (Debian package)" % name
    return path


def unit_setting(unit_text, key):
    values = re.findall(r"^%s=(.*)$" % re.escape(key), unit_text, re.M)
    return values[-1] if values else None


def test_install_upgrade_and_uninstall_into_a_scratch_root(tmp_path):
    root = tmp_path / "root"
    first = run("bash", INSTALL, "--root", str(root))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installed the example config as /etc/renderfarm-exporter/config.yml" in first.stdout
    assert "systemctl enable --now renderfarm-exporter" in first.stdout
    config = root / "etc" / "renderfarm-exporter" / "config.yml"
    with open(os.path.join(REPO, "config", "renderfarm-exporter.yml")) as example:
        assert config.read_text() == example.read()
    venv_python = str(root / PREFIX.lstrip("/") / "venv" / "bin" / "python")
    version = run(venv_python, "-m", "exporter", "--version", cwd=str(tmp_path))
    assert version.returncode == 0 and version.stdout.startswith("renderfarm-exporter ")
    checked = run(venv_python, "-m", "exporter", "--check-config", "--config.file", str(config), cwd=str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "%s is valid" % config

    unit_path = root / "etc" / "systemd" / "system" / UNIT_NAME
    unit = unit_path.read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ProtectSystem=strict", "DynamicUser=yes",
                    "#RequiresMountsFor="):
        assert setting in unit
    assert unit_setting(unit, "ExecStart") == ("%s/venv/bin/renderfarm-exporter --config.file "
                                               "/etc/renderfarm-exporter/config.yml" % PREFIX)
    assert unit_setting(unit, "LimitNOFILE") == "65536"
    documentation = unit_setting(unit, "Documentation")
    assert documentation == "file://%s/doc/README.md" % PREFIX
    assert (root / PREFIX.lstrip("/") / "doc" / "README.md").is_file()
    # verify needs the host's units (sysinit.target, /bin/kill): check the installed unit with only the
    # scratch root put in front of its ExecStart
    copy = tmp_path / UNIT_NAME
    copy.write_text(unit.replace("ExecStart=" + PREFIX, "ExecStart=%s%s" % (root, PREFIX)))
    socket_unit = root / "etc" / "systemd" / "system" / "renderfarm-exporter.socket"
    shutil.copy(socket_unit, tmp_path / socket_unit.name)
    verified = run(tool("systemd-analyze"), "verify", str(copy), str(tmp_path / socket_unit.name))
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stdout + verified.stderr
    security = run(tool("systemd-analyze"), "security", "--offline=true", "--root=%s" % root, UNIT_NAME)
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
    assert exposure <= 1.5, security.stdout[-3000:]

    config.write_text(config.read_text() + "# edited by the administrator\n")
    upgrade = run("bash", INSTALL, "--root", str(root))
    assert upgrade.returncode == 0, upgrade.stderr
    assert "kept your /etc/renderfarm-exporter/config.yml" in upgrade.stdout
    assert config.read_text().endswith("# edited by the administrator\n")

    removed = run("bash", INSTALL, "--root", str(root), "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (root / PREFIX.lstrip("/")).exists() and not unit_path.exists() and not socket_unit.exists()
    assert config.read_text().endswith("# edited by the administrator\n")


def test_install_refuses_an_old_or_missing_python(tmp_path):
    result = run("bash", INSTALL, "--root", str(tmp_path / "root"), "--python", str(tmp_path / "no-python"))
    assert result.returncode == 1 and "missing or older than 3.9" in result.stderr
    assert not (tmp_path / "root").exists()


def proc_mount_options(unit_text):
    """The proc mount options systemd gives the service for ProtectProc= and ProcSubset=."""
    options = []
    protect = unit_setting(unit_text, "ProtectProc")
    if protect and protect != "default":
        options.append("hidepid=" + protect)
    if unit_setting(unit_text, "ProcSubset") == "pid":
        options.append("subset=pid")
    return options


def process_metrics_served(options):
    """Serves the demo under a /proc mounted with ``options``; the process_* metrics it exports."""
    port = free_port()
    mount = "mount -t proc -o %s proc /proc" % ",".join(options) if options else "mount -t proc proc /proc"
    script = '%s && exec "$0" -m exporter --demo --web.listen-address 127.0.0.1:%d' % (mount, port)
    daemon = subprocess.Popen([tool("unshare"), "--mount", "--pid", "--fork", "sh", "-c", script, sys.executable],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        import urllib.request

        def metrics():
            assert daemon.poll() is None, daemon.stderr.read().decode()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return None

        # the process section is rendered on demand: python_info (always there) says it is in
        wait_until(lambda: "python_info{" in (metrics() or ""), 30, "the process section under the unit's /proc")
        samples = parse_samples(metrics())
        return {name for (name, _labels) in samples if name.startswith("process_")}
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)  # unshare blocks SIGTERM itself; the exporter gets it
        daemon.wait(timeout=10)


@pytest.mark.needs_root
def test_process_metrics_are_served_under_the_units_proc_restrictions():
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        options = proc_mount_options(handle.read())
    assert "hidepid=invisible" in options
    assert set(PROCESS_METRICS) <= process_metrics_served(options)
    # the restriction is real: with ProcSubset=pid, /proc/stat is gone and so is the CPU and start time
    assert "process_start_time_seconds" not in process_metrics_served(options + ["subset=pid"])
