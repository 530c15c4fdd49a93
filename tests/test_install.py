"""Putting the exporter into service: scripts/install against a scratch root, and the unit's sandbox.

The install test runs the real script into a scratch root (a real virtual
environment, the real pip), then checks the installed unit with the real
systemd-analyze. The sandbox test runs the exporter under the /proc mount
the unit's ProtectProc=/ProcSubset= settings give it (a private mount and
PID namespace made by unshare), and needs root, as CI has.
"""

import gzip
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
from conftest import REPO, free_port, parse_samples, value, wait_until

pytestmark = pytest.mark.inprocess

INSTALL = os.path.join(REPO, "scripts", "install")
UNIT_NAME = "renderfarm-exporter.service"
PREFIX = "/opt/renderfarm-exporter"
#: an interpreter the unit's sandbox can reach (the tests' own may be a pyenv one under /root: refused)
SYSTEM_PYTHON = "/usr/bin/python3"
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


def exec_commands(unit_text, key):
    """The command lines of every ``key=`` line (ExecReload= may be given several times), as systemd runs them:
    no ``-``/``@``/``+``/``!`` prefix is used, and ``$$`` is a literal ``$``."""
    commands = []
    for line in re.findall(r"^%s=(.*)$" % re.escape(key), unit_text, re.M):
        assert line[:1] not in "-@+!:", "a prefix changes how systemd runs %r" % line
        commands.append([word.replace("$$", "$") for word in shlex.split(line)])
    return commands


def for_the_scratch_root(unit_text, root):
    """The unit with its executables where the scratch root has them, so systemd-analyze verify finds them."""
    return re.sub(r"^(Exec\w+=)%s" % re.escape(PREFIX), lambda m: "%s%s%s" % (m.group(1), root, PREFIX),
                  unit_text, flags=re.M)


def system_python():
    assert os.access(SYSTEM_PYTHON, os.X_OK), "%s is missing: Debian's python3 and python3-venv" % SYSTEM_PYTHON
    return SYSTEM_PYTHON


@pytest.mark.ecosystem
def test_install_upgrade_and_uninstall_into_a_scratch_root(tmp_path):
    root = tmp_path / "root"
    first = run("bash", INSTALL, "--root", str(root), "--python", system_python())
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
    # reload: checked in the service's sandbox first, then SIGHUP by the shell's kill (no procps needed);
    # an invalid configuration (exit 2) ends the unit failed instead of restarting it every 5 s
    assert exec_commands(unit, "ExecReload") == [
        [PREFIX + "/venv/bin/renderfarm-exporter", "--check-config", "--config.file",
         "/etc/renderfarm-exporter/config.yml"],
        ["/bin/sh", "-c", 'kill -HUP "$MAINPID"']]
    assert unit_setting(unit, "RestartPreventExitStatus") == "2"
    # verify needs the host's units (sysinit.target, /bin/sh): check the installed unit with only the
    # scratch root put in front of its executables
    verify_folder = tmp_path / "verify"
    verify_folder.mkdir()
    copy = verify_folder / UNIT_NAME
    copy.write_text(for_the_scratch_root(unit, root))
    socket_unit = root / "etc" / "systemd" / "system" / "renderfarm-exporter.socket"
    shutil.copy(socket_unit, verify_folder / socket_unit.name)
    verified = run(tool("systemd-analyze"), "verify", str(copy), str(verify_folder / socket_unit.name))
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stdout + verified.stderr
    # and with the socket-activation drop-in installed beside the docs, as installation.md says
    dropin = root / PREFIX.lstrip("/") / "doc" / "socket-activation.conf"
    (verify_folder / (UNIT_NAME + ".d")).mkdir()
    (verify_folder / (UNIT_NAME + ".d") / dropin.name).write_text(for_the_scratch_root(dropin.read_text(), root))
    verified = run(tool("systemd-analyze"), "verify", str(copy), str(verify_folder / socket_unit.name))
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stdout + verified.stderr
    dropin_text = dropin.read_text()
    assert unit_setting(dropin_text, "Requires") == unit_setting(dropin_text, "After") == socket_unit.name
    assert unit_setting(dropin_text, "ExecStart") == unit_setting(unit, "ExecStart") + " --web.systemd-socket"
    # verify reads the drop-in: without the empty ExecStart= that clears the unit's own, it refuses the unit
    (verify_folder / (UNIT_NAME + ".d") / dropin.name).write_text(
        for_the_scratch_root(dropin_text.replace("\nExecStart=\n", "\n"), root))
    refused = run(tool("systemd-analyze"), "verify", str(copy), str(verify_folder / socket_unit.name))
    assert refused.returncode != 0 and "more than one ExecStart=" in refused.stderr, refused.stderr
    security = run(tool("systemd-analyze"), "security", "--offline=true", "--root=%s" % root, UNIT_NAME)
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout).group(1))
    assert exposure <= 1.5, security.stdout[-3000:]

    config.write_text(config.read_text() + "# edited by the administrator\n")
    # what `systemctl edit` and the running service leave beside the install: a drop-in, and the checkpoints
    # in StateDirectory= (DynamicUser=yes: /var/lib/private/NAME, and /var/lib/NAME a link to it)
    dropins = root / "etc" / "systemd" / "system" / (UNIT_NAME + ".d")
    dropins.mkdir()
    (dropins / "override.conf").write_text("[Service]\nSupplementaryGroups=render\n")
    state = root / "var" / "lib" / "private" / "renderfarm-exporter"
    state.mkdir(parents=True)
    (state / "rush.rush_cpu_acct.checkpoint").write_bytes(b"x")
    (root / "var" / "lib" / "renderfarm-exporter").symlink_to("private/renderfarm-exporter")
    upgrade = run("bash", INSTALL, "--root", str(root), "--python", system_python())
    assert upgrade.returncode == 0, upgrade.stderr
    assert "kept your /etc/renderfarm-exporter/config.yml" in upgrade.stdout
    assert config.read_text().endswith("# edited by the administrator\n")
    assert upgrade.stdout.splitlines()[-2:] == [
        "note: the drop-ins %s/etc/systemd/system/%s.d/ (override.conf) apply to this install" % (root, UNIT_NAME),
        "note: the service continues from the checkpoints in %s/var/lib/private/renderfarm-exporter/ "
        "(an earlier install's)" % root]

    removed = run("bash", INSTALL, "--root", str(root), "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not (root / PREFIX.lstrip("/")).exists() and not unit_path.exists() and not socket_unit.exists()
    assert config.read_text().endswith("# edited by the administrator\n")
    assert removed.stdout.splitlines()[1:] == [
        "kept the drop-ins %s/etc/systemd/system/%s.d/ (override.conf): a reinstall applies them; "
        "--uninstall --purge removes them" % (root, UNIT_NAME),
        "kept the checkpoints in %s/var/lib/private/renderfarm-exporter/: a reinstall continues from them; "
        "--uninstall --purge removes them" % root,
        "kept %s/etc/renderfarm-exporter (your configuration; rm -r %s/etc/renderfarm-exporter removes it)"
        % (root, root)]
    assert (dropins / "override.conf").is_file() and (state / "rush.rush_cpu_acct.checkpoint").is_file()

    purged = run("bash", INSTALL, "--root", str(root), "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert "removed %s/etc/systemd/system/%s.d\n" % (root, UNIT_NAME) in purged.stdout
    assert "removed %s/var/lib/private/renderfarm-exporter\n" % root in purged.stdout
    assert not dropins.exists() and not state.exists()
    assert not os.path.lexists(root / "var" / "lib" / "renderfarm-exporter")
    assert config.read_text().endswith("# edited by the administrator\n"), "the configuration is never removed"


@pytest.mark.ecosystem
@pytest.mark.needs_root
def test_offline_install_from_a_wheelhouse(tmp_path):
    """installation.md's offline install: a wheelhouse made where there is an index, the install made
    without any network (a network namespace of its own, no pip configuration)."""
    source = tmp_path / "source"  # a copy: pip wheel builds in the tree it is given
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache", ".ruff_cache"))
    wheelhouse = tmp_path / "wheelhouse"
    made = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir",
               str(wheelhouse), "-c", "constraints.txt", ".", "setuptools>=77", cwd=str(source))
    assert made.returncode == 0, made.stderr[-3000:]
    offline = {key: val for key, val in os.environ.items() if not key.startswith("PIP_")}
    offline["PIP_CONFIG_FILE"] = os.devnull  # no index, no find-links from this machine's pip.conf
    root = tmp_path / "root"
    installed = run(tool("unshare"), "--net", "bash", str(source / "scripts" / "install"), "--root", str(root),
                    "--python", system_python(), "--wheelhouse", str(wheelhouse), env=offline)
    assert installed.returncode == 0, installed.stdout + installed.stderr[-3000:]
    version = run(str(root / PREFIX.lstrip("/") / "venv" / "bin" / "python"), "-m", "exporter", "--version",
                  cwd=str(tmp_path))
    assert version.returncode == 0 and version.stdout.startswith("renderfarm-exporter ")


def test_the_documented_check_in_the_services_sandbox_matches_the_unit():
    """installation.md's systemd-run line: the unit's own sandbox settings and command, every property one
    systemd (252, Debian 12) accepts on a transient service (its TRANSIENT-SETTINGS.md marks them with a tick)."""
    with open(os.path.join(REPO, "docs", "installation.md")) as handle:
        page = handle.read()
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", page, re.S) if "systemd-run" in b]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:5] == ["sudo", "systemd-run", "--pipe", "--wait", "--collect"]
    properties = [words[i + 1] for i, word in enumerate(words) if word == "-p"]
    command = words[5 + 2 * len(properties):]
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        unit = handle.read()
    assert command == exec_commands(unit, "ExecReload")[0], "the reload's check, as the service runs it"
    settings = dict(p.split("=", 1) for p in properties)
    assert settings == {key: unit_setting(unit, key) for key in ("DynamicUser", "ProtectSystem", "ProtectHome",
                                                                 "PrivateTmp")}
    transient_doc = "/usr/share/doc/systemd/TRANSIENT-SETTINGS.md.gz"
    assert os.path.exists(transient_doc), "Debian's systemd package installs %s" % transient_doc
    with gzip.open(transient_doc, "rt") as handle:
        supported = set(re.findall(r"^✓ (\w+)=$", handle.read(), re.M))
    assert set(settings) | {"SupplementaryGroups", "RequiresMountsFor"} <= supported


def test_purge_goes_only_with_uninstall(tmp_path):
    result = run("bash", INSTALL, "--root", str(tmp_path / "root"), "--purge")
    assert (result.returncode, result.stderr) == (2, "install: --purge goes with --uninstall\n")
    assert not (tmp_path / "root").exists()


def test_install_refuses_an_old_or_missing_python(tmp_path):
    result = run("bash", INSTALL, "--root", str(tmp_path / "root"), "--python", str(tmp_path / "no-python"))
    assert result.returncode == 1 and "missing or older than 3.9" in result.stderr
    assert not (tmp_path / "root").exists()


@pytest.mark.ecosystem
@pytest.mark.parametrize("hidden, setting", [
    ("/tmp", "PrivateTmp"), ("/var/tmp", "PrivateTmp"),
    pytest.param("/root", "ProtectHome", marks=pytest.mark.needs_root),
    pytest.param("/home", "ProtectHome", marks=pytest.mark.needs_root)])
def test_install_refuses_an_interpreter_the_units_sandbox_hides(tmp_path, hidden, setting):
    """A Python under /tmp or /var/tmp (or /root, /home: pyenv, conda) is one the service cannot start.

    The interpreter is the system's, reached through a link in ``hidden`` (as a pyenv shim or a conda
    environment reaches one): the virtual environment would record the link's path, which the unit's
    PrivateTmp=yes (ProtectHome=yes for /root, /home) hides.
    """
    folder = tempfile.mkdtemp(dir=hidden)
    try:
        python = os.path.join(folder, "python3")
        os.symlink(system_python(), python)
        result = run("bash", INSTALL, "--root", str(tmp_path / "root"), "--python", python, timeout=60)
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "install: %s runs from %s, under %s, which the unit hides from the service (%s=yes): the service would "
        "fail to start (status 203/EXEC). Use a Python outside /root, /home, /run/user, /tmp and /var/tmp: "
        "--python /usr/bin/python3 (Debian/Ubuntu: apt install python3-venv), or a Python installed under /opt "
        "or /usr/local\n" % (python, python, hidden, setting))
    assert not (tmp_path / "root").exists()
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        unit = handle.read()
    assert unit_setting(unit, "PrivateTmp") == "yes" and unit_setting(unit, "ProtectHome") == "yes"


@pytest.mark.daemon
def test_an_invalid_configuration_exits_with_the_status_the_unit_does_not_restart_on(tmp_path):
    """RestartPreventExitStatus=2: a start on an invalid file ends `failed` instead of restarting every 5 s."""
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        unit = handle.read()
    prevented = {int(status) for status in unit_setting(unit, "RestartPreventExitStatus").split()}
    config = tmp_path / "config.yml"
    config.write_text("rush:\n  cpu_acct: ['%s/cpu.acct']\n  bogus: 1\n" % tmp_path)
    for extra in (["--check-config"], ["--web.listen-address", "127.0.0.1:%d" % free_port()]):
        result = run(sys.executable, "-m", "exporter", "--config.file", str(config), *extra, cwd=REPO, timeout=60)
        assert result.returncode in prevented, (extra, result.returncode, result.stderr)
        assert "rush.bogus (line 3): unknown key" in result.stderr
    # a start that fails for a reason a restart can cure (the port taken) is not among them
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        config.write_text("rush:\n  cpu_acct: ['%s/cpu.acct']\n" % tmp_path)
        result = run(sys.executable, "-m", "exporter", "--config.file", str(config),
                     "--web.listen-address", "127.0.0.1:%d" % taken, cwd=REPO, timeout=60)
    assert result.returncode not in prevented and result.returncode != 0, result.stderr


def run_exec_reload(commands, mainpid, path):
    """Runs the unit's ExecReload= lines as systemd does: in order, stopping at the first that fails, with
    $MAINPID set and nothing else on PATH than ``path``. Returns the results of the lines run."""
    results = []
    for command in commands:
        result = run(*command, env={"PATH": path, "MAINPID": str(mainpid)}, timeout=60)
        results.append(result)
        if result.returncode != 0:
            break
    return results


@pytest.mark.daemon
def test_reload_works_without_procps_and_refuses_an_invalid_file_visibly(tmp_path, start_daemon):
    """The unit's ExecReload= lines, with a PATH that has no kill (no procps), against the real daemon."""
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        unit = handle.read()
    empty = tmp_path / "bin"
    empty.mkdir()
    assert shutil.which("kill", path=str(empty)) is None
    builtin = run("/bin/sh", "-c", "command -v kill", env={"PATH": str(empty)})
    assert builtin.stdout.strip() == "kill", "the shell's own kill, not a program on PATH"
    exporter_script = os.path.join(os.path.dirname(sys.executable), "renderfarm-exporter")
    assert os.access(exporter_script, os.X_OK), "the test's virtualenv has the console script"
    config = tmp_path / "config.yml"
    commands = [[exporter_script if word == PREFIX + "/venv/bin/renderfarm-exporter" else
                 str(config) if word == "/etc/renderfarm-exporter/config.yml" else word for word in command]
                for command in exec_commands(unit, "ExecReload")]
    for command in commands:
        assert os.path.isabs(command[0]) and os.path.basename(command[0]) != "kill", command

    one, two = tmp_path / "one" / "cpu.acct", tmp_path / "two" / "cpu.acct"
    for acct, frames in ((one, 2), (two, 3)):
        acct.parent.mkdir()
        acct.write_text("".join("p 948300000 tahoe-1 T anna %d render%s 100 30 1 2 0 77\n" % (i, acct.parent.name)
                                for i in range(frames)))
    config.write_text("rush:\n  cpu_acct: ['%s']\n" % one)
    daemon = start_daemon("--config.file", str(config))
    daemon.wait_for_value("rush_frames_total", 2, host="renderone", status="done")

    def reloads(result):
        return value(daemon.samples(), "renderfarm_exporter_config_reloads_total", result=result) or 0

    # a valid change: checked, then SIGHUP; the daemon reads the second file
    config.write_text("rush:\n  cpu_acct: ['%s', '%s']\n" % (one, two))
    results = run_exec_reload(commands, daemon.proc.pid, str(empty))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert results[0].stdout.strip() == "%s is valid" % config
    daemon.wait_for_value("rush_frames_total", 3, host="rendertwo", status="done", timeout=15)
    wait_until(lambda: reloads("success") == 1, 15, "the reload to be counted")
    assert reloads("failure") == 0

    # an invalid file: the check fails (systemctl reload fails, the journal has why), no SIGHUP is sent,
    # the daemon keeps running the configuration it has
    config.write_text("rush:\n  cpu_acct: ['%s']\n  bogus: 1\n" % one)
    results = run_exec_reload(commands, daemon.proc.pid, str(empty))
    assert [r.returncode for r in results] == [2]
    assert "rush.bogus (line 3): unknown key" in results[0].stderr
    # fixed again: the next reload is the second the daemon ever saw, so the refused one never reached it
    config.write_text("rush:\n  cpu_acct: ['%s']\n" % two)
    results = run_exec_reload(commands, daemon.proc.pid, str(empty))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    wait_until(lambda: reloads("success") == 2, 15, "the second reload")
    assert reloads("failure") == 0 and daemon.proc.poll() is None
    assert value(daemon.samples(), "renderfarm_exporter_config_last_reload_successful") == 1


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


@pytest.mark.ecosystem
@pytest.mark.needs_root
def test_process_metrics_are_served_under_the_units_proc_restrictions():
    with open(os.path.join(REPO, "systemd", UNIT_NAME)) as handle:
        options = proc_mount_options(handle.read())
    assert "hidepid=invisible" in options
    assert set(PROCESS_METRICS) <= process_metrics_served(options)
    # the restriction is real: with ProcSubset=pid, /proc/stat is gone and so is the CPU and start time
    assert "process_start_time_seconds" not in process_metrics_served(options + ["subset=pid"])
